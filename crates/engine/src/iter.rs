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

/// Merges children into one stream, smallest key first; of equal keys the
/// child given first comes first.
///
/// The valid children sit in a binary min-heap keyed by their current
/// entry, so a step costs O(log children) comparisons: a level-0
/// compaction or a scan merges one child per level-0 table, up to
/// `l0_stop_trigger` of them.
pub(crate) struct MergingIterator {
    children: Vec<Box<dyn InternalIterator>>,
    /// Indices of the valid children; `heap[0]` is the current one.
    heap: Vec<usize>,
}

impl std::fmt::Debug for MergingIterator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MergingIterator")
            .field("children", &self.children.len())
            .field("heap", &self.heap)
            .finish()
    }
}

impl MergingIterator {
    pub(crate) fn new(children: Vec<Box<dyn InternalIterator>>) -> Self {
        let heap = Vec::with_capacity(children.len());
        Self { children, heap }
    }

    /// Whether child `a`'s entry comes before child `b`'s.
    fn before(&self, a: usize, b: usize) -> bool {
        match key::compare(self.children[a].key(), self.children[b].key()) {
            Ordering::Less => true,
            Ordering::Equal => a < b,
            Ordering::Greater => false,
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        let len = self.heap.len();
        loop {
            let left = 2 * at + 1;
            if left >= len {
                return;
            }
            let right = left + 1;
            let smaller = if right < len && self.before(self.heap[right], self.heap[left]) {
                right
            } else {
                left
            };
            if !self.before(self.heap[smaller], self.heap[at]) {
                return;
            }
            self.heap.swap(at, smaller);
            at = smaller;
        }
    }

    /// Rebuilds the heap from every valid child (after a seek).
    fn rebuild(&mut self) {
        self.heap.clear();
        self.heap
            .extend((0..self.children.len()).filter(|&i| self.children[i].valid()));
        for at in (0..self.heap.len() / 2).rev() {
            self.sift_down(at);
        }
    }
}

impl InternalIterator for MergingIterator {
    fn valid(&self) -> bool {
        !self.heap.is_empty()
    }

    fn key(&self) -> &[u8] {
        self.children[self.heap[0]].key()
    }

    fn value(&self) -> &[u8] {
        self.children[self.heap[0]].value()
    }

    fn next(&mut self) -> Result<()> {
        let Some(&top) = self.heap.first() else {
            return Ok(());
        };
        self.children[top].next()?;
        if !self.children[top].valid() {
            self.heap.swap_remove(0);
        }
        self.sift_down(0);
        Ok(())
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        for child in &mut self.children {
            child.seek(target)?;
        }
        self.rebuild();
        Ok(())
    }

    fn seek_to_first(&mut self) -> Result<()> {
        for child in &mut self.children {
            child.seek_to_first()?;
        }
        self.rebuild();
        Ok(())
    }
}

/// Concatenates children whose entries are sorted and do not overlap (the
/// tables of one level, in key order), already open: one child to compare
/// in a merge instead of one per table.
pub(crate) struct ConcatIterator {
    children: Vec<Box<dyn InternalIterator>>,
    index: usize,
}

impl std::fmt::Debug for ConcatIterator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConcatIterator")
            .field("children", &self.children.len())
            .field("index", &self.index)
            .finish()
    }
}

impl ConcatIterator {
    /// `children` in key order, each child's entries before the next's.
    pub(crate) fn new(children: Vec<Box<dyn InternalIterator>>) -> Self {
        let index = children.len();
        Self { children, index }
    }

    /// Moves past exhausted children, positioning each one reached at its
    /// first entry.
    fn skip_exhausted(&mut self) -> Result<()> {
        while self.children.get(self.index).is_some_and(|c| !c.valid()) {
            self.index += 1;
            if let Some(c) = self.children.get_mut(self.index) {
                c.seek_to_first()?;
            }
        }
        Ok(())
    }
}

impl InternalIterator for ConcatIterator {
    fn valid(&self) -> bool {
        self.children.get(self.index).is_some_and(|c| c.valid())
    }

    fn key(&self) -> &[u8] {
        self.children[self.index].key()
    }

    fn value(&self) -> &[u8] {
        self.children[self.index].value()
    }

    fn next(&mut self) -> Result<()> {
        if let Some(c) = self.children.get_mut(self.index) {
            c.next()?;
        }
        self.skip_exhausted()
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        // The first child with an entry >= target holds the answer; earlier
        // ones end before it.
        self.index = 0;
        while let Some(c) = self.children.get_mut(self.index) {
            c.seek(target)?;
            if c.valid() {
                return Ok(());
            }
            self.index += 1;
        }
        Ok(())
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.index = 0;
        if let Some(c) = self.children.first_mut() {
            c.seek_to_first()?;
        }
        self.skip_exhausted()
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

    /// The same, positioned at its first entry.
    pub(crate) fn positioned(mut self) -> Self {
        self.pos = 0;
        self
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

    /// Entries `(user key, seq)` in internal order, as a reference.
    fn drain(it: &mut dyn InternalIterator) -> Vec<(Vec<u8>, u64)> {
        let mut seen = Vec::new();
        while it.valid() {
            let p = key::parse(it.key()).expect("valid");
            seen.push((p.user_key.to_vec(), p.seq));
            it.next().expect("next");
        }
        seen
    }

    proptest::proptest! {
        /// Any number of children, overlapping or empty, merge into the
        /// sorted union, from the start and from any seek target.
        #[test]
        fn merging_matches_sorting(
            children in proptest::collection::vec(
                proptest::collection::btree_set((0u8..40, 1u64..1000), 0..30), 0..25),
            target in (0u8..45, 0u64..1100),
        ) {
            let mut all: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            let mut boxed: Vec<Box<dyn InternalIterator>> = Vec::new();
            // Sequence numbers unique across children, as in a database.
            let mut seq = 0;
            for child in &children {
                let entries: Vec<_> = child
                    .iter()
                    .map(|&(k, _)| {
                        seq += 1;
                        (key::encode(&[k], seq, Kind::Put), Vec::new())
                    })
                    .collect();
                all.extend(entries.iter().cloned());
                boxed.push(Box::new(VecIter::new(entries)));
            }
            all.sort_by(|a, b| key::compare(&a.0, &b.0));
            let expected = drain(&mut VecIter::new(all.clone()).positioned());
            let mut m = MergingIterator::new(boxed);
            m.seek_to_first().expect("seek");
            proptest::prop_assert_eq!(drain(&mut m), expected);

            let target = key::encode(&[target.0], target.1, Kind::Put);
            let mut reference = VecIter::new(all);
            reference.seek(&target).expect("seek");
            m.seek(&target).expect("seek");
            proptest::prop_assert_eq!(drain(&mut m), drain(&mut reference));
        }

        /// Sorted, disjoint children (some empty) concatenate in order.
        #[test]
        fn concat_matches_sorting(
            keys in proptest::collection::btree_set(0u16..2000, 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..12),
            target in 0u16..2100,
        ) {
            let entries: Vec<_> = keys
                .iter()
                .map(|k| (key::encode(&k.to_be_bytes(), 1, Kind::Put), Vec::new()))
                .collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(entries.len())).collect();
            cuts.push(0);
            cuts.push(entries.len());
            cuts.sort_unstable();
            let children: Vec<Box<dyn InternalIterator>> = cuts
                .windows(2)
                .map(|w| Box::new(VecIter::new(entries[w[0]..w[1]].to_vec())) as Box<dyn InternalIterator>)
                .collect();
            let mut c = ConcatIterator::new(children);
            c.seek_to_first().expect("seek");
            let expected = drain(&mut VecIter::new(entries.clone()).positioned());
            proptest::prop_assert_eq!(drain(&mut c), expected);

            let target = key::encode(&target.to_be_bytes(), 1, Kind::Put);
            let mut reference = VecIter::new(entries);
            reference.seek(&target).expect("seek");
            c.seek(&target).expect("seek");
            proptest::prop_assert_eq!(drain(&mut c), drain(&mut reference));
        }
    }

    #[test]
    fn equal_keys_come_in_child_order() {
        let children: Vec<Box<dyn InternalIterator>> = [b"x", b"y", b"z"]
            .iter()
            .map(|v| {
                let entry = (key::encode(b"k", 5, Kind::Put), v.to_vec());
                Box::new(VecIter::new(vec![entry])) as Box<dyn InternalIterator>
            })
            .collect();
        let mut m = MergingIterator::new(children);
        m.seek_to_first().expect("seek");
        let mut seen = Vec::new();
        while m.valid() {
            seen.push(m.value().to_vec());
            m.next().expect("next");
        }
        assert_eq!(seen, vec![b"x".to_vec(), b"y".to_vec(), b"z".to_vec()]);
    }
}
