//! The memtable: a concurrent skiplist of internal keys.
//!
//! Writers insert without locking each other (crossbeam's lock-free
//! skiplist); readers see an insert once the database publishes its sequence
//! number. A memtable is mutable until it reaches its size limit, then
//! immutable until a background flush turns it into a level-0 table.

use std::ops::{Bound, ControlFlow};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_skiplist::SkipMap;

use crate::key::{InternalKey, Kind, SeqNo};
use crate::memtable_filter::KeyFilter;

/// Per-entry overhead counted toward the size limit (skiplist node, lengths).
const ENTRY_OVERHEAD: usize = 48;
/// Memtable bytes per byte of key filter: a 64 MiB memtable gets 4 MiB.
const BYTES_PER_FILTER_BYTE: usize = 16;

#[derive(Debug)]
pub(crate) struct Memtable {
    map: SkipMap<InternalKey, ()>,
    /// Every user key inserted (see `memtable_filter`).
    filter: KeyFilter,
    bytes: AtomicUsize,
    /// The WAL file holding this memtable's writes.
    wal_number: u64,
}

impl Memtable {
    /// A memtable for up to about `limit_bytes` of entries (sizes its key
    /// filter; a memtable filled past it stays correct).
    pub(crate) fn new(wal_number: u64, limit_bytes: usize) -> Self {
        Self {
            map: SkipMap::new(),
            filter: KeyFilter::with_bytes(limit_bytes / BYTES_PER_FILTER_BYTE),
            bytes: AtomicUsize::new(0),
            wal_number,
        }
    }

    /// Inserts an entry; `user_key_hash` is [`crate::table::bloom::hash`] of the key
    /// (computed once per write by the caller, which probes with it too).
    pub(crate) fn insert(
        &self,
        seq: SeqNo,
        kind: Kind,
        user_key: &[u8],
        user_key_hash: u64,
        value: &[u8],
    ) {
        let entry = InternalKey::with_value(user_key, seq, kind, value);
        // Before the entry: whoever can find the entry finds its bits.
        self.filter.insert(user_key_hash);
        self.bytes
            .fetch_add(entry.len() + ENTRY_OVERHEAD, Ordering::Relaxed);
        self.map.insert(entry, ());
    }

    /// False means no entry for the user key with this hash
    /// ([`crate::table::bloom::hash`]) is in the memtable: lookups can skip it.
    pub(crate) fn may_contain(&self, user_key_hash: u64) -> bool {
        self.filter.may_contain(user_key_hash)
    }

    pub(crate) fn approximate_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn wal_number(&self) -> u64 {
        self.wal_number
    }

    /// The first entry at or after `target` in internal order.
    pub(crate) fn seek(&self, target: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        let target = InternalKey::probe(target);
        self.map
            .lower_bound(Bound::Included(&target))
            .map(|e| (e.key().ikey().to_vec(), e.key().value().to_vec()))
    }

    /// Calls `f` with each entry at or after `target` in internal order
    /// until it breaks, following the skiplist's links (one search in
    /// all, no copies).
    pub(crate) fn walk_from(
        &self,
        target: &[u8],
        mut f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) {
        let target = InternalKey::probe(target);
        for entry in self.map.range(target..) {
            if f(entry.key().ikey(), entry.key().value()).is_break() {
                break;
            }
        }
    }

    /// The first entry strictly after `current`.
    pub(crate) fn next_after(&self, current: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        let current = InternalKey::probe(current);
        self.map
            .lower_bound(Bound::Excluded(&current))
            .map(|e| (e.key().ikey().to_vec(), e.key().value().to_vec()))
    }

    /// How many merge operands for `user_key` sit on top of its newest
    /// non-merge entry in this memtable, counting up to `limit`.
    pub(crate) fn merge_chain(&self, user_key: &[u8], user_key_hash: u64, limit: usize) -> usize {
        if !self.may_contain(user_key_hash) {
            return 0;
        }
        let start = InternalKey::probe(&crate::key::seek_key(user_key, crate::key::MAX_SEQ));
        self.map
            .range(start..)
            .take_while(|e| crate::key::user_key(e.key().ikey()) == user_key)
            .take(limit)
            .take_while(|e| {
                crate::key::parse(e.key().ikey()).is_some_and(|p| p.kind == Kind::Merge)
            })
            .count()
    }

    /// Calls `f` with the entries of each user key in turn (newest first),
    /// in key order (for flushing).
    pub(crate) fn for_each_key(&self, mut f: impl FnMut(&[MemEntry<'_>])) {
        let mut group: Vec<MemEntry<'_>> = Vec::new();
        for entry in &self.map {
            let entry = MemEntry(entry);
            if group
                .first()
                .is_some_and(|first| !first.0.key().same_user_key(entry.0.key()))
            {
                f(&group);
                group.clear();
            }
            group.push(entry);
        }
        if !group.is_empty() {
            f(&group);
        }
    }
}

/// One entry of a memtable, borrowed in place.
pub(crate) struct MemEntry<'a>(crossbeam_skiplist::map::Entry<'a, InternalKey, ()>);

impl MemEntry<'_> {
    /// The encoded internal key.
    pub(crate) fn ikey(&self) -> &[u8] {
        self.0.key().ikey()
    }

    /// The value stored with the key.
    pub(crate) fn value(&self) -> &[u8] {
        self.0.key().value()
    }
}

/// An iterator over a memtable that owns a reference to it.
#[derive(Debug)]
pub(crate) struct MemtableIter {
    table: Arc<Memtable>,
    current: Option<(Vec<u8>, Vec<u8>)>,
}

impl MemtableIter {
    pub(crate) fn new(table: Arc<Memtable>) -> Self {
        Self {
            table,
            current: None,
        }
    }
}

impl crate::iter::InternalIterator for MemtableIter {
    fn valid(&self) -> bool {
        self.current.is_some()
    }

    fn key(&self) -> &[u8] {
        &self.current.as_ref().expect("valid iterator").0
    }

    fn value(&self) -> &[u8] {
        &self.current.as_ref().expect("valid iterator").1
    }

    fn next(&mut self) -> crate::Result<()> {
        if let Some((key, _)) = &self.current {
            self.current = self.table.next_after(key);
        }
        Ok(())
    }

    fn seek(&mut self, target: &[u8]) -> crate::Result<()> {
        self.current = self.table.seek(target);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iter::InternalIterator as _;
    use crate::key;
    use crate::table::bloom;

    #[test]
    fn iterates_newest_version_first_and_tracks_size() {
        let mem = Arc::new(Memtable::new(1, 4096));
        mem.insert(1, Kind::Put, b"b", bloom::hash(b"b"), b"old");
        mem.insert(2, Kind::Put, b"b", bloom::hash(b"b"), b"new");
        mem.insert(3, Kind::Delete, b"a", bloom::hash(b"a"), b"");
        assert!(mem.approximate_bytes() > 3 * ENTRY_OVERHEAD);

        let mut it = MemtableIter::new(mem);
        it.seek(&key::seek_key(b"", key::MAX_SEQ)).expect("seek");
        let mut seen = Vec::new();
        while it.valid() {
            let p = key::parse(it.key()).expect("valid key");
            seen.push((p.user_key.to_vec(), p.seq, it.value().to_vec()));
            it.next().expect("next");
        }
        assert_eq!(
            seen,
            vec![
                (b"a".to_vec(), 3, vec![]),
                (b"b".to_vec(), 2, b"new".to_vec()),
                (b"b".to_vec(), 1, b"old".to_vec()),
            ]
        );
    }

    #[test]
    fn walks_from_the_target_in_order_until_told_to_stop() {
        let mem = Memtable::new(1, 4096);
        for (seq, key) in [(1, b"a"), (2, b"b"), (3, b"b"), (4, b"c"), (5, b"d")] {
            mem.insert(seq, Kind::Put, key, bloom::hash(key), b"v");
        }
        let mut seen = Vec::new();
        mem.walk_from(&key::seek_key(b"b", 2), |ikey, _| {
            let p = key::parse(ikey).expect("valid key");
            seen.push((p.user_key.to_vec(), p.seq));
            if p.user_key == b"c" {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(seen, vec![(b"b".to_vec(), 2), (b"c".to_vec(), 4)]);
    }

    #[test]
    fn seek_respects_snapshot_sequence() {
        let mem = Memtable::new(1, 4096);
        mem.insert(5, Kind::Put, b"k", bloom::hash(b"k"), b"v5");
        mem.insert(9, Kind::Put, b"k", bloom::hash(b"k"), b"v9");
        let (ikey, value) = mem.seek(&key::seek_key(b"k", 7)).expect("found");
        assert_eq!(key::parse(&ikey).expect("valid").seq, 5);
        assert_eq!(value, b"v5");
    }
}
