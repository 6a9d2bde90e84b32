//! Internal iterators over internal keys, and the merging iterator that
//! combines memtables and tables into one ordered stream.

use std::cmp::Ordering;

use crate::Result;
use crate::key;

/// A positioned cursor over `(internal key, value)` entries in internal-key
/// order. `key` and `value` may only be called while `valid()`.
pub(crate) trait InternalIterator: Send {
    fn valid(&self) -> bool;
    fn key(&self) -> &[u8];
    fn value(&self) -> &[u8];
    fn next(&mut self) -> Result<()>;
    /// Positions at the first entry `>= target` in internal order.
    fn seek(&mut self, target: &[u8]) -> Result<()>;
    /// Positions at the first entry.
    fn seek_to_first(&mut self) -> Result<()> {
        self.seek(&key::seek_key(&[], key::MAX_SEQ))
    }
}

/// Merges children into one stream. Children are few (memtables, level-0
/// tables, one per deeper level), so the smallest is found by a linear scan.
pub(crate) struct MergingIterator {
    children: Vec<Box<dyn InternalIterator>>,
    current: Option<usize>,
}

impl std::fmt::Debug for MergingIterator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergingIterator")
            .field("children", &self.children.len())
            .field("current", &self.current)
            .finish()
    }
}

impl MergingIterator {
    pub(crate) fn new(children: Vec<Box<dyn InternalIterator>>) -> Self {
        Self {
            children,
            current: None,
        }
    }

    fn find_smallest(&mut self) {
        let mut best: Option<usize> = None;
        for (i, child) in self.children.iter().enumerate() {
            if !child.valid() {
                continue;
            }
            best = match best {
                Some(b)
                    if key::compare(self.children[b].key(), child.key()) != Ordering::Greater =>
                {
                    Some(b)
                }
                _ => Some(i),
            };
        }
        self.current = best;
    }
}

impl InternalIterator for MergingIterator {
    fn valid(&self) -> bool {
        self.current.is_some()
    }

    fn key(&self) -> &[u8] {
        self.children[self.current.expect("valid iterator")].key()
    }

    fn value(&self) -> &[u8] {
        self.children[self.current.expect("valid iterator")].value()
    }

    fn next(&mut self) -> Result<()> {
        if let Some(i) = self.current {
            self.children[i].next()?;
            self.find_smallest();
        }
        Ok(())
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        for child in &mut self.children {
            child.seek(target)?;
        }
        self.find_smallest();
        Ok(())
    }

    fn seek_to_first(&mut self) -> Result<()> {
        for child in &mut self.children {
            child.seek_to_first()?;
        }
        self.find_smallest();
        Ok(())
    }
}

/// An in-memory iterator over sorted entries, for tests and small sources.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct VecIter {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    pos: usize,
}

#[cfg(test)]
impl VecIter {
    pub(crate) fn new(mut entries: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        entries.sort_by(|a, b| key::compare(&a.0, &b.0));
        let pos = entries.len();
        Self { entries, pos }
    }
}

#[cfg(test)]
impl InternalIterator for VecIter {
    fn valid(&self) -> bool {
        self.pos < self.entries.len()
    }
    fn key(&self) -> &[u8] {
        &self.entries[self.pos].0
    }
    fn value(&self) -> &[u8] {
        &self.entries[self.pos].1
    }
    fn next(&mut self) -> Result<()> {
        self.pos += 1;
        Ok(())
    }
    fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.pos = self
            .entries
            .partition_point(|(k, _)| key::compare(k, target) == Ordering::Less);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Kind;

    #[test]
    fn merges_children_in_internal_order() {
        let e = |k: &[u8], seq| (key::encode(k, seq, Kind::Put), seq.to_le_bytes().to_vec());
        let a = VecIter::new(vec![e(b"a", 1), e(b"c", 5)]);
        let b = VecIter::new(vec![e(b"a", 7), e(b"b", 2)]);
        let mut m = MergingIterator::new(vec![Box::new(a), Box::new(b)]);
        m.seek_to_first().expect("seek");
        let mut seen = Vec::new();
        while m.valid() {
            let p = key::parse(m.key()).expect("valid");
            seen.push((p.user_key.to_vec(), p.seq));
            m.next().expect("next");
        }
        assert_eq!(
            seen,
            vec![
                (b"a".to_vec(), 7),
                (b"a".to_vec(), 1),
                (b"b".to_vec(), 2),
                (b"c".to_vec(), 5)
            ]
        );
        m.seek(&key::seek_key(b"b", 100)).expect("seek");
        assert_eq!(key::parse(m.key()).expect("valid").user_key, b"b");
    }
}
