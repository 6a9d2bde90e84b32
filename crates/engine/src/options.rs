//! Engine configuration. Each default is documented next to its field and
//! checked against the code by a test.

use std::time::Duration;

use crate::{Error, Result};

/// When an acknowledged write has reached stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every write group is fsynced before its writers return (group commit).
    /// The default: acknowledged means durable.
    SyncEachGroup,
    /// The log is fsynced in the background at this interval; a crash loses
    /// at most that much acknowledged data.
    Periodic(Duration),
    /// Never fsync the log; the OS decides. For bulk loads and benchmarks.
    None,
}

/// Options for opening a database.
#[derive(Debug, Clone, PartialEq)]
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
    /// Compress data blocks with LZ4. Defaults to `true`.
    pub compression: bool,
    /// Number of level-0 files that triggers a compaction into level 1.
    /// Defaults to 4.
    pub l0_compaction_trigger: usize,
    /// Maximum number of levels. Defaults to 7.
    pub num_levels: usize,
    /// Capacity of the block cache in bytes. Defaults to 64 MiB.
    pub block_cache_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            durability: Durability::SyncEachGroup,
            memtable_bytes: 64 << 20,
            bloom_bits_per_key: 10,
            block_bytes: 4 << 10,
            compression: true,
            l0_compaction_trigger: 4,
            num_levels: 7,
            block_cache_bytes: 64 << 20,
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
        assert_eq!(o.l0_compaction_trigger, 4);
        assert_eq!(o.num_levels, 7);
        assert_eq!(o.block_cache_bytes, 64 * 1024 * 1024);
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
