//! Engine statistics: per-level sizes, write amplification, stalls, cache.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::db::Inner;
use crate::stall::{StallLog, StallTotal};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) user_bytes: AtomicU64,
    pub(crate) flush_bytes: AtomicU64,
    pub(crate) compaction_bytes: AtomicU64,
    pub(crate) compaction_bytes_read: AtomicU64,
    pub(crate) stalls: StallLog,
    pub(crate) ingested_bytes: AtomicU64,
}

/// Files and bytes on one level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LevelStats {
    /// Number of table files.
    pub files: usize,
    /// Total size of those files.
    pub bytes: u64,
}

/// A snapshot of the engine's counters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Stats {
    /// Files and bytes per level, level 0 first.
    pub levels: Vec<LevelStats>,
    /// Bytes of keys and values written by users since open.
    pub user_bytes_written: u64,
    /// Bytes written to level 0 by flushes since open.
    pub flush_bytes_written: u64,
    /// Bytes written by compactions since open.
    pub compaction_bytes_written: u64,
    /// Bytes read by compactions since open.
    pub compaction_bytes_read: u64,
    /// Table bytes written (flush plus compaction) per user byte written,
    /// since open; the WAL is not counted. 0 before any write.
    pub write_amplification: f64,
    /// Time writers spent delayed or stalled, in microseconds.
    pub stall_micros: u64,
    /// Stall events dropped from the log before anyone drained them
    /// ([`Db::drain_stalls`](crate::Db::drain_stalls)).
    pub stall_events_dropped: u64,
    /// Stall count and time per cause since open, one entry per
    /// [`StallCause::ALL`](crate::StallCause::ALL).
    pub stalls_by_cause: Vec<StallTotal>,
    /// Table bytes added by `ingest_behind` since open.
    pub ingested_bytes: u64,
    /// Fraction of block lookups served from the block cache.
    pub block_cache_hit_rate: f64,
    /// Bytes in the mutable memtable.
    pub memtable_bytes: usize,
    /// Immutable memtables waiting for flush.
    pub immutable_memtables: usize,
    /// Bytes in the immutable memtables waiting for flush.
    pub immutable_memtable_bytes: usize,
    /// Sequence number of the last acknowledged write.
    pub last_sequence: u64,
    /// Why the database refuses writes until it is reopened (a WAL append,
    /// flush or compaction failed: a full disk, an IO error); `None` while
    /// it accepts writes.
    pub failure: Option<String>,
    /// The failure is a damaged file ([`Error::is_damage`](crate::Error::is_damage)):
    /// reopening finds it again, so the store must be rebuilt.
    pub failure_is_damage: bool,
}

pub(crate) fn collect(inner: &Inner) -> Stats {
    let state = inner.state();
    let c = &inner.counters;
    let user = c.user_bytes.load(Ordering::Relaxed);
    let flush = c.flush_bytes.load(Ordering::Relaxed);
    let compaction = c.compaction_bytes.load(Ordering::Relaxed);
    Stats {
        levels: state
            .version
            .levels
            .iter()
            .map(|files| LevelStats {
                files: files.len(),
                bytes: files.iter().map(|f| f.size).sum(),
            })
            .collect(),
        user_bytes_written: user,
        flush_bytes_written: flush,
        compaction_bytes_written: compaction,
        compaction_bytes_read: c.compaction_bytes_read.load(Ordering::Relaxed),
        write_amplification: if user == 0 {
            0.0
        } else {
            (flush + compaction) as f64 / user as f64
        },
        stall_micros: c.stalls.total_micros(),
        stall_events_dropped: c.stalls.dropped(),
        stalls_by_cause: c.stalls.totals(),
        ingested_bytes: c.ingested_bytes.load(Ordering::Relaxed),
        block_cache_hit_rate: inner.tables.blocks().hit_rate(),
        memtable_bytes: state.mem.approximate_bytes(),
        immutable_memtables: state.imms.len(),
        immutable_memtable_bytes: state.imms.iter().map(|m| m.approximate_bytes()).sum(),
        last_sequence: inner.last_seq.load(Ordering::Relaxed),
        failure: inner.background_error().map(|e| e.to_string()),
        failure_is_damage: inner.failed.load(Ordering::Acquire)
            && inner.bg.lock().expect("bg lock").damaged,
    }
}
