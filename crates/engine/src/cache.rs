//! The block cache: decoded data blocks keyed by (table number, offset),
//! bounded in bytes, with hit and miss counters for the stats.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::table::block::Block;

#[derive(Debug, Clone, Copy, Default)]
struct BlockWeighter;

impl quick_cache::Weighter<(u64, u64), Arc<Block>> for BlockWeighter {
    fn weight(&self, _key: &(u64, u64), block: &Arc<Block>) -> u64 {
        block.size() as u64 + 64
    }
}

#[derive(Debug)]
pub(crate) struct BlockCache {
    cache: quick_cache::sync::Cache<(u64, u64), Arc<Block>, BlockWeighter>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl BlockCache {
    pub(crate) fn new(capacity_bytes: u64) -> Self {
        let estimated_items = usize::try_from(capacity_bytes / 4096)
            .unwrap_or(1 << 20)
            .max(16);
        Self {
            cache: quick_cache::sync::Cache::with_weighter(
                estimated_items,
                capacity_bytes.max(1),
                BlockWeighter,
            ),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub(crate) fn get(&self, key: &(u64, u64)) -> Option<Arc<Block>> {
        let found = self.cache.get(key);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub(crate) fn insert(&self, key: (u64, u64), block: Arc<Block>) {
        self.cache.insert(key, block);
    }

    /// Fraction of lookups served from the cache; 0 before any lookup.
    pub(crate) fn hit_rate(&self) -> f64 {
        let hits = self.hits.load(Ordering::Relaxed) as f64;
        let total = hits + self.misses.load(Ordering::Relaxed) as f64;
        if total == 0.0 { 0.0 } else { hits / total }
    }
}
