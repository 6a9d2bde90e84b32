//! Point lookups: newest source first (memtable, immutable memtables,
//! level-0 tables newest first, then one table per deeper level), stopping
//! at the first put or delete; merge operands found on the way are folded
//! onto it.

use std::ops::ControlFlow;

use crate::iter::InternalIterator;
use crate::key::{self, Kind, SeqNo};
use crate::memtable::Memtable;
use crate::{Error, Result, merge};

use super::Inner;

/// Operands gathered so far (newest first), and whether a base was found.
#[derive(Debug, Default)]
struct Lookup {
    operands: Vec<Vec<u8>>,
    base: Option<Option<Vec<u8>>>,
}

/// What one entry did to a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// An operand (or nothing yet): read on.
    More,
    /// A put or delete settled the value, or the entry is another key's.
    Stop,
}

impl Lookup {
    /// Takes the entry `ikey` / `value` met while reading `user_key`.
    fn step(&mut self, ikey: &[u8], value: &[u8], user_key: &[u8]) -> Step {
        let p = key::parse(ikey).expect("sources yield valid keys");
        if p.user_key != user_key {
            return Step::Stop;
        }
        match p.kind {
            Kind::Put => self.base = Some(Some(value.to_vec())),
            Kind::Delete => self.base = Some(None),
            Kind::Merge => {
                self.operands.push(value.to_vec());
                return Step::More;
            }
        }
        Step::Stop
    }

    /// Reads the entries for `user_key` at the iterator's position; true
    /// once a base (put or delete) settles the value.
    fn visit(&mut self, it: &mut dyn InternalIterator, user_key: &[u8]) -> Result<bool> {
        while it.valid() {
            if self.step(it.key(), it.value(), user_key) == Step::Stop {
                break;
            }
            it.next()?;
        }
        Ok(self.base.is_some())
    }

    /// Reads the entries for `user_key` from `target` on in `mem`, walking
    /// the skiplist in place (no search or copy per entry); true once a
    /// base settles the value.
    fn visit_memtable(&mut self, mem: &Memtable, target: &[u8], user_key: &[u8]) -> bool {
        mem.walk_from(target, |ikey, value| {
            match self.step(ikey, value, user_key) {
                Step::More => ControlFlow::Continue(()),
                Step::Stop => ControlFlow::Break(()),
            }
        });
        self.base.is_some()
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
    lookup(inner, user_key, seq, Lookup::default())
}

/// The value of `user_key` as of `seq` with `operand` applied on top, in
/// one merge of every operand (for folding a long merge chain at write
/// time).
pub(crate) fn get_and_merge(
    inner: &Inner,
    user_key: &[u8],
    seq: SeqNo,
    operand: &[u8],
) -> Result<Vec<u8>> {
    let start = Lookup {
        operands: vec![operand.to_vec()],
        base: None,
    };
    Ok(lookup(inner, user_key, seq, start)?.unwrap_or_default())
}

fn lookup(
    inner: &Inner,
    user_key: &[u8],
    seq: SeqNo,
    mut lookup: Lookup,
) -> Result<Option<Vec<u8>>> {
    let state = inner.state();
    let target = key::seek_key(user_key, seq);
    let hash = crate::table::bloom::hash(user_key);
    for mem in std::iter::once(&state.mem).chain(&state.imms) {
        if mem.may_contain(hash) && lookup.visit_memtable(mem, &target, user_key) {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use crate::merge::tests::Counting;
    use crate::{Db, Durability, Options};

    #[test]
    fn a_read_folds_its_operands_from_memtable_and_tables_in_one_merge_call() {
        let dir = tempfile::tempdir().expect("tempdir");
        let op = Arc::new(Counting::default());
        let options = Options {
            durability: Durability::None,
            merge_operator: Some(Arc::clone(&op) as Arc<dyn crate::MergeOperator>),
            max_successive_merges: 0,
            ..Options::default()
        };
        let db = Db::open(dir.path(), options).expect("open");
        // One operand in a table (a flush folds chains it holds whole, so
        // a base and an operand flushed together would be one put).
        db.merge(b"k", b"1").expect("merge");
        db.flush().expect("flush");
        for operand in [b"2", b"3", b"4"] {
            db.merge(b"k", operand).expect("merge");
        }
        db.put(b"other", b"x").expect("put");
        assert_eq!(db.get(b"k").expect("get"), Some(b"1,2,3,4".to_vec()));
        assert_eq!(op.merge_alls.load(Ordering::Relaxed), 1);
        assert_eq!(db.get(b"other").expect("get"), Some(b"x".to_vec()));
        assert_eq!(
            op.merge_alls.load(Ordering::Relaxed),
            1,
            "no operands, no merge"
        );
    }
}
