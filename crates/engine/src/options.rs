//! Engine configuration. Each default is documented next to its field and
//! checked against the code by a test.

use std::sync::Arc;
use std::time::Duration;

use crate::{CompactionFilter, Error, MergeOperator, Result};

/// When an acknowledged write has reached stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every write group is fsynced before its writers return (group commit).
    /// The default: acknowledged means durable.
    SyncEachGroup,
    /// The log is fsynced in the background at this interval; a crash loses
    /// at most that much acknowledged data.
    Periodic(Duration),
    /// Never fsync the log, and buffer up to 64 KiB of it in the process
    /// (written out when full, at a memtable switch, flush and close). A
    /// process crash can lose that buffer; a power cut, whatever the OS had
    /// not written. For bulk loads and benchmarks, like fjall's default.
    None,
}

/// What to do when a WAL is damaged in the middle (not a torn tail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WalRecovery {
    /// Refuse to open with [`Error::WalCorruption`]. The default: nothing is
    /// dropped without the operator deciding so.
    #[default]
    Strict,
    /// Keep every record before the damage, discard the rest of that log and
    /// rename it to `<name>.corrupt`. Acknowledged writes after the damage
    /// are lost; use it to recover a database that `Strict` refuses.
    TruncateAtCorruption,
}

/// Options for opening a database.
#[derive(Debug, Clone)]
pub struct Options {
    /// WAL durability. Defaults to [`Durability::SyncEachGroup`].
    pub durability: Durability,
    /// Memtable size at which it becomes immutable and is flushed.
    /// Defaults to 64 MiB.
    pub memtable_bytes: usize,
    /// Bloom filter bits per key. Defaults to 10 (about 1% false positives).
    pub bloom_bits_per_key: u32,
    /// Target uncompressed size of an SSTable data block. Defaults to 4 KiB.
    pub block_bytes: usize,
    /// Compress data blocks with LZ4 on levels 2 and deeper. Levels 0 and 1
    /// are never compressed: their tables are rewritten soon, so compressing
    /// them costs CPU for little space. Defaults to `true`.
    pub compression: bool,
    /// Write the tables of bulk loads ([`ingest_behind`](crate::Db::ingest_behind))
    /// with `O_DIRECT`, past the page cache, where the file system allows
    /// it (elsewhere they are written as usual). A bulk load is large and
    /// read later, if at all: copying it into page-cache pages costs as
    /// much CPU as the rest of the load, and would evict the pages reads
    /// use. Flushes and compactions always use the page cache. Defaults to
    /// `true`.
    pub direct_io_for_ingest: bool,
    /// Number of level-0 files that triggers a compaction into level 1.
    /// Defaults to 4.
    pub l0_compaction_trigger: usize,
    /// Maximum number of levels. Defaults to 7.
    pub num_levels: usize,
    /// Capacity of the block cache in bytes. Defaults to 64 MiB.
    pub block_cache_bytes: u64,
    /// Tables kept open (index and bloom filter in memory). Defaults to 1000.
    pub max_open_tables: usize,
    /// Full memtables waiting for flush before writes stall. Defaults to 2.
    pub max_immutable_memtables: usize,
    /// Level-0 file count at which each write group is delayed by 1 ms.
    /// Defaults to 20 (RocksDB's default). Under sustained random writes a
    /// level-0 compaction that takes more files at once rewrites level 1
    /// less often: with 8 (LevelDB's) a 10 GB ingest spent 10-20% of its
    /// time delayed and ran 6-7% slower (crates/engine/BENCHMARKS.md). Reads
    /// probe one more bloom filter per level-0 table.
    pub l0_slowdown_trigger: usize,
    /// Level-0 file count at which writes wait for compaction. Defaults to
    /// 36 (RocksDB's default).
    pub l0_stop_trigger: usize,
    /// Target size of level 1; each deeper level is 10 times larger.
    /// Defaults to 256 MiB.
    pub level_base_bytes: u64,
    /// Size at which compaction starts a new output table. Defaults to 64 MiB.
    pub target_file_bytes: u64,
    /// Combines merge operands; required to use [`merge`](crate::Db::merge).
    /// Defaults to none.
    pub merge_operator: Option<Arc<dyn MergeOperator>>,
    /// Drops dead values during compaction (e.g. expired tombstones).
    /// Defaults to none.
    pub compaction_filter: Option<Arc<dyn CompactionFilter>>,
    /// Handling of a WAL damaged in the middle. Defaults to
    /// [`WalRecovery::Strict`].
    pub wal_recovery: WalRecovery,
    /// When a merge would extend a chain of this many merge operands for
    /// one key in the memtable, the operands are folded at write time and
    /// stored as one value (RocksDB's `max_successive_merges`), so reads of
    /// hot keys stay short. 0 disables it. Defaults to 16.
    pub max_successive_merges: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            durability: Durability::SyncEachGroup,
            memtable_bytes: 64 << 20,
            bloom_bits_per_key: 10,
            block_bytes: 4 << 10,
            compression: true,
            direct_io_for_ingest: true,
            l0_compaction_trigger: 4,
            num_levels: 7,
            block_cache_bytes: 64 << 20,
            max_open_tables: 1000,
            max_immutable_memtables: 2,
            l0_slowdown_trigger: 20,
            l0_stop_trigger: 36,
            level_base_bytes: 256 << 20,
            target_file_bytes: 64 << 20,
            merge_operator: None,
            compaction_filter: None,
            wal_recovery: WalRecovery::Strict,
            max_successive_merges: 16,
        }
    }
}

impl Options {
    /// Checks that every option is in its valid range.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] naming the first option out of range.
    pub fn validate(&self) -> Result<()> {
        let invalid = |name, reason: &str| {
            Err(Error::InvalidOption {
                name,
                reason: reason.to_owned(),
            })
        };
        if self.memtable_bytes < 4096 {
            return invalid("memtable_bytes", "must be at least 4096");
        }
        if self.bloom_bits_per_key > 64 {
            return invalid("bloom_bits_per_key", "must be at most 64");
        }
        if !(256..=(1 << 20)).contains(&self.block_bytes) {
            return invalid("block_bytes", "must be between 256 B and 1 MiB");
        }
        if self.l0_compaction_trigger == 0 {
            return invalid("l0_compaction_trigger", "must be at least 1");
        }
        if !(2..=7).contains(&self.num_levels) {
            return invalid("num_levels", "must be between 2 and 7");
        }
        if self.max_immutable_memtables == 0 {
            return invalid("max_immutable_memtables", "must be at least 1");
        }
        if !(self.l0_compaction_trigger <= self.l0_slowdown_trigger
            && self.l0_slowdown_trigger <= self.l0_stop_trigger)
        {
            return invalid(
                "l0_stop_trigger",
                "needs l0_compaction_trigger <= l0_slowdown_trigger <= l0_stop_trigger",
            );
        }
        if self.level_base_bytes == 0 || self.target_file_bytes == 0 || self.max_open_tables == 0 {
            return invalid("level_base_bytes", "sizes and counts must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_their_documentation() {
        let o = Options::default();
        assert_eq!(o.durability, Durability::SyncEachGroup);
        assert_eq!(o.memtable_bytes, 64 * 1024 * 1024);
        assert_eq!(o.bloom_bits_per_key, 10);
        assert_eq!(o.block_bytes, 4096);
        assert!(o.compression);
        assert!(o.direct_io_for_ingest);
        assert_eq!(o.l0_compaction_trigger, 4);
        assert_eq!(o.num_levels, 7);
        assert_eq!(o.block_cache_bytes, 64 * 1024 * 1024);
        assert_eq!(o.max_open_tables, 1000);
        assert_eq!(o.max_immutable_memtables, 2);
        assert_eq!((o.l0_slowdown_trigger, o.l0_stop_trigger), (20, 36));
        assert_eq!(o.level_base_bytes, 256 * 1024 * 1024);
        assert_eq!(o.target_file_bytes, 64 * 1024 * 1024);
        assert!(o.merge_operator.is_none());
        assert_eq!(o.wal_recovery, WalRecovery::Strict);
        assert_eq!(o.max_successive_merges, 16);
        o.validate().expect("defaults are valid");
    }

    #[test]
    fn out_of_range_options_name_the_field() {
        let bad = Options {
            num_levels: 9,
            ..Options::default()
        };
        match bad.validate() {
            Err(Error::InvalidOption { name, .. }) => assert_eq!(name, "num_levels"),
            other => panic!("expected InvalidOption, got {other:?}"),
        }
        let tiny = Options {
            memtable_bytes: 10,
            ..Options::default()
        };
        assert!(matches!(
            tiny.validate(),
            Err(Error::InvalidOption {
                name: "memtable_bytes",
                ..
            })
        ));
    }
}
