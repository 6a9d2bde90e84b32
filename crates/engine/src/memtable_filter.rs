//! A memtable's filter over the user keys written to it (RocksDB's
//! `memtable_whole_key_filtering`): a point lookup of a key the memtable
//! does not hold skips the skiplist search, a chain of cache misses that
//! costs microseconds in a full memtable. Blind writes of new keys look
//! up every key first (the node reads its sibling set; the merge-chain
//! limit probes the memtable), so for them the filter removes most of the
//! memtable's read cost.
//!
//! A blocked bloom filter: each key sets [`PROBES`] bits within one
//! 64-byte block, so a probe touches one cache line. Bits are only ever set
//! (`fetch_or`), so concurrent writers need no lock; a key's bits are set
//! before its entry is inserted, and readers find entries only after the
//! database publishes their sequence number (release/acquire), so a reader
//! that can see an entry also sees its bits. The filter can only answer
//! "maybe" wrongly: a memtable filled past its sizing (a WAL replay) just
//! gets more false positives.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bits set per key. With the default sizing (one filter byte per 16
/// memtable bytes, >= 64 bits per entry of 100-byte values) false
/// positives stay far below 1%.
const PROBES: u32 = 6;
/// Words per block: 8 × 64 bits = one cache line.
const BLOCK_WORDS: usize = 8;

#[derive(Debug)]
pub(crate) struct KeyFilter {
    words: Box<[AtomicU64]>,
}

impl KeyFilter {
    /// A filter of about `bytes` bytes (at least one block).
    pub(crate) fn with_bytes(bytes: usize) -> Self {
        let blocks = (bytes / (BLOCK_WORDS * 8)).max(1);
        Self {
            words: (0..blocks * BLOCK_WORDS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    /// Records a key by its hash ([`crate::table::bloom::hash`]).
    pub(crate) fn insert(&self, hash: u64) {
        for (word, bit) in self.positions(hash) {
            if self.words[word].load(Ordering::Relaxed) & bit == 0 {
                self.words[word].fetch_or(bit, Ordering::Relaxed);
            }
        }
    }

    /// False means no key with this hash was inserted.
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        self.positions(hash)
            .all(|(word, bit)| self.words[word].load(Ordering::Relaxed) & bit != 0)
    }

    /// The (word index, bit mask) pairs of a hash: the block from the low
    /// 32 bits, the bits within it by double hashing of the high 32.
    fn positions(&self, hash: u64) -> impl Iterator<Item = (usize, u64)> {
        let blocks = (self.words.len() / BLOCK_WORDS) as u64;
        let block = usize::try_from((hash & 0xffff_ffff) % blocks).expect("below the block count");
        let (mut h, step) = ((hash >> 32) as u32, ((hash >> 41) as u32) | 1);
        (0..PROBES).map(move |_| {
            let bit = (h % 512) as usize;
            h = h.wrapping_add(step);
            (block * BLOCK_WORDS + bit / 64, 1u64 << (bit % 64))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::bloom::hash;

    #[test]
    fn inserted_keys_always_match_and_others_rarely() {
        let filter = KeyFilter::with_bytes(64 << 10);
        let keys: Vec<Vec<u8>> = (0..20_000u32)
            .map(|i| format!("key-{i}").into_bytes())
            .collect();
        for k in &keys {
            filter.insert(hash(k));
        }
        assert!(
            keys.iter().all(|k| filter.may_contain(hash(k))),
            "no false negatives"
        );
        let false_positives = (0..20_000u32)
            .filter(|i| filter.may_contain(hash(format!("other-{i}").as_bytes())))
            .count();
        // 26 bits per key, six probes in one block: about 0.1% expected.
        assert!(
            false_positives < 100,
            "false positives: {false_positives} of 20000"
        );
    }

    #[test]
    fn an_empty_filter_matches_nothing_and_a_tiny_one_still_never_misses() {
        let empty = KeyFilter::with_bytes(4096);
        assert!(!(0..1000u32).any(|i| empty.may_contain(hash(&i.to_le_bytes()))));
        let tiny = KeyFilter::with_bytes(0);
        for i in 0..5000u32 {
            tiny.insert(hash(&i.to_le_bytes()));
        }
        assert!((0..5000u32).all(|i| tiny.may_contain(hash(&i.to_le_bytes()))));
    }
}
