//! Range iterators over the whole database at one sequence number.

use std::sync::Arc;

use crate::iter::{InternalIterator, MergingIterator};
use crate::key::{self, Kind, SeqNo};
use crate::memtable::MemtableIter;
use crate::table::TableIter;
use crate::table_cache::TableCache;
use crate::version::FileMeta;
use crate::{Error, MergeOperator, Result, merge};

use super::Inner;

/// Iterates over `(key, value)` pairs in key order, with deletes applied
/// and merge operands folded. Holds the memtables and version it started
/// with, so compaction never deletes a file under it.
pub struct DbIter {
    inner: MergingIterator,
    seq: SeqNo,
    end: Option<Vec<u8>>,
    merge_op: Option<Arc<dyn MergeOperator>>,
    done: bool,
}

impl std::fmt::Debug for DbIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbIter")
            .field("seq", &self.seq)
            .field("done", &self.done)
            .finish()
    }
}

impl DbIter {
    /// `bulk`: tables are read ahead and bypass the block cache (see
    /// `Table::iter_bulk`).
    pub(crate) fn new(
        db: &Arc<Inner>,
        seq: SeqNo,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
        bulk: bool,
    ) -> Result<Self> {
        let state = db.state();
        let mut children: Vec<Box<dyn InternalIterator>> = Vec::new();
        for mem in std::iter::once(&state.mem).chain(&state.imms) {
            children.push(Box::new(MemtableIter::new(Arc::clone(mem))));
        }
        for file in &state.version.levels[0] {
            children.push(Box::new(db.tables.get(file)?.iter_for(bulk)));
        }
        for files in state
            .version
            .levels
            .iter()
            .skip(1)
            .filter(|f| !f.is_empty())
        {
            children.push(Box::new(LevelIter::new(
                files.clone(),
                Arc::clone(db),
                bulk,
            )));
        }
        let mut it = Self {
            inner: MergingIterator::new(children),
            seq,
            end: end.map(<[u8]>::to_vec),
            merge_op: db.options.merge_operator.clone(),
            done: false,
        };
        it.seek(start.unwrap_or_default())?;
        Ok(it)
    }

    /// Repositions at the first key `>= key`.
    ///
    /// # Errors
    /// IO errors or corruption.
    pub fn seek(&mut self, user_key: &[u8]) -> Result<()> {
        self.done = false;
        self.inner.seek(&key::seek_key(user_key, self.seq))
    }

    /// The next visible `(key, value)`, resolving deletes and merges.
    fn advance(&mut self) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        loop {
            if !self.inner.valid() {
                return Ok(None);
            }
            let p = key::parse(self.inner.key()).expect("iterators yield valid keys");
            if p.seq > self.seq {
                self.inner.next()?;
                continue;
            }
            let user_key = p.user_key.to_vec();
            if self
                .end
                .as_deref()
                .is_some_and(|end| user_key.as_slice() >= end)
            {
                return Ok(None);
            }
            // The newest visible entry decides; merges read further down.
            let mut operands: Vec<Vec<u8>> = Vec::new();
            let mut base: Option<Vec<u8>> = None;
            let mut settled = false;
            while self.inner.valid() {
                let p = key::parse(self.inner.key()).expect("iterators yield valid keys");
                if p.user_key != user_key.as_slice() {
                    break;
                }
                if !settled && p.seq <= self.seq {
                    match p.kind {
                        Kind::Put => {
                            base = Some(self.inner.value().to_vec());
                            settled = true;
                        }
                        Kind::Delete => settled = true,
                        Kind::Merge => operands.push(self.inner.value().to_vec()),
                    }
                }
                self.inner.next()?;
            }
            let value = if operands.is_empty() {
                base
            } else {
                let op = self.merge_op.as_deref().ok_or(Error::NoMergeOperator)?;
                merge::fold(op, &user_key, base.as_deref(), operands.iter().rev())
            };
            if let Some(value) = value {
                return Ok(Some((user_key, value)));
            }
        }
    }
}

impl Iterator for DbIter {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.advance() {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Concatenates the sorted, non-overlapping tables of one level, opening
/// each only when reached.
struct LevelIter {
    files: Vec<Arc<FileMeta>>,
    db: Arc<Inner>,
    index: usize,
    current: Option<TableIter>,
    bulk: bool,
}

impl LevelIter {
    fn new(files: Vec<Arc<FileMeta>>, db: Arc<Inner>, bulk: bool) -> Self {
        Self {
            files,
            db,
            index: 0,
            current: None,
            bulk,
        }
    }

    fn tables(&self) -> &TableCache {
        &self.db.tables
    }

    fn open(&mut self, index: usize) -> Result<()> {
        self.index = index;
        self.current = match self.files.get(index) {
            Some(file) => Some(self.tables().get(file)?.iter_for(self.bulk)),
            None => None,
        };
        Ok(())
    }

    fn skip_exhausted(&mut self) -> Result<()> {
        while self.current.as_ref().is_some_and(|c| !c.valid()) {
            self.open(self.index + 1)?;
            if let Some(c) = &mut self.current {
                c.seek_to_first()?;
            }
        }
        Ok(())
    }
}

impl InternalIterator for LevelIter {
    fn valid(&self) -> bool {
        self.current.as_ref().is_some_and(TableIter::valid)
    }

    fn key(&self) -> &[u8] {
        self.current.as_ref().expect("valid iterator").key()
    }

    fn value(&self) -> &[u8] {
        self.current.as_ref().expect("valid iterator").value()
    }

    fn next(&mut self) -> Result<()> {
        if let Some(c) = &mut self.current {
            c.next()?;
        }
        self.skip_exhausted()
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        let index = self
            .files
            .partition_point(|f| key::compare(&f.largest, target) == std::cmp::Ordering::Less);
        self.open(index)?;
        if let Some(c) = &mut self.current {
            c.seek(target)?;
        }
        self.skip_exhausted()
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.open(0)?;
        if let Some(c) = &mut self.current {
            c.seek_to_first()?;
        }
        self.skip_exhausted()
    }
}
