//! Point lookups: newest source first (memtable, immutable memtables,
//! level-0 tables newest first, then one table per deeper level), stopping
//! at the first put or delete; merge operands found on the way are folded
//! onto it.

use crate::iter::InternalIterator;
use crate::key::{self, Kind, SeqNo};
use crate::memtable::MemtableIter;
use crate::{Error, Result, merge};

use super::Inner;

/// Operands gathered so far (newest first), and whether a base was found.
#[derive(Debug, Default)]
struct Lookup {
    operands: Vec<Vec<u8>>,
    base: Option<Option<Vec<u8>>>,
}

impl Lookup {
    /// Reads the entries for `user_key` at the iterator's position; true
    /// once a base (put or delete) settles the value.
    fn visit(&mut self, it: &mut dyn InternalIterator, user_key: &[u8]) -> Result<bool> {
        while it.valid() {
            let p = key::parse(it.key()).expect("iterators yield valid keys");
            if p.user_key != user_key {
                break;
            }
            match p.kind {
                Kind::Put => {
                    self.base = Some(Some(it.value().to_vec()));
                    return Ok(true);
                }
                Kind::Delete => {
                    self.base = Some(None);
                    return Ok(true);
                }
                Kind::Merge => self.operands.push(it.value().to_vec()),
            }
            it.next()?;
        }
        Ok(false)
    }

    fn finish(self, inner: &Inner, user_key: &[u8]) -> Result<Option<Vec<u8>>> {
        let base = self.base.flatten();
        if self.operands.is_empty() {
            return Ok(base);
        }
        let op = inner
            .options
            .merge_operator
            .as_deref()
            .ok_or(Error::NoMergeOperator)?;
        Ok(merge::fold(
            op,
            user_key,
            base.as_deref(),
            self.operands.iter().rev(),
        ))
    }
}

pub(crate) fn get(inner: &Inner, user_key: &[u8], seq: SeqNo) -> Result<Option<Vec<u8>>> {
    let state = inner.state();
    let target = key::seek_key(user_key, seq);
    let mut lookup = Lookup::default();
    let hash = crate::table::bloom::hash(user_key);
    for mem in std::iter::once(&state.mem).chain(&state.imms) {
        if !mem.may_contain(hash) {
            continue;
        }
        let mut it = MemtableIter::new(std::sync::Arc::clone(mem));
        it.seek(&target)?;
        if lookup.visit(&mut it, user_key)? {
            return lookup.finish(inner, user_key);
        }
    }
    let version = &state.version;
    for file in version.files_for(user_key, version.levels.len()) {
        let table = inner.tables.get(file)?;
        if !table.may_contain(hash) {
            continue;
        }
        let mut it = table.iter();
        it.seek(&target)?;
        if lookup.visit(&mut it, user_key)? {
            break;
        }
    }
    lookup.finish(inner, user_key)
}
