//! A node's local replica store: Strata versions on the LSM engine.
//!
//! Keys are stored under the engine key `token || user key`
//! (`strata_cluster::encode_engine_key`), so every token range is one
//! contiguous scan. The value is the key's sibling set (`codec.rs`). A
//! replica write is an engine *merge* of the incoming sibling set
//! (`merge.rs`): one WAL append and one memtable insert, never a read;
//! sets are joined on reads and in compaction.

mod codec;
mod merge;

use std::path::Path;
use std::sync::Arc;

use strata_cluster::{Siblings, encode_engine_key};
use strata_engine::{Db, Durability, Options};

pub use codec::{
    CodecError, clock_from_proto, clock_to_proto, decode, encode, version_from_proto,
    version_to_proto,
};
pub use merge::SiblingsMerge;

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The engine failed (IO, corruption, a background error).
    #[error(transparent)]
    Engine(#[from] strata_engine::Error),
    /// The stored value for a key could not be decoded.
    #[error("stored versions of a key are unreadable: {0}")]
    Codec(#[from] CodecError),
}

/// The replica store of one node.
#[derive(Debug)]
pub struct Storage {
    db: Db,
}

impl Storage {
    /// Opens (or creates) the store in `dir`.
    ///
    /// # Errors
    /// Engine errors from opening the database.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self, StorageError> {
        let options = Options {
            durability,
            merge_operator: Some(Arc::new(SiblingsMerge)),
            ..Options::default()
        };
        Ok(Self {
            db: Db::open(dir, options)?,
        })
    }

    /// Merges `siblings` into what the replica holds for `key`, without
    /// reading it. Durable at the store's durability when this returns.
    ///
    /// # Errors
    /// Engine errors.
    pub fn apply(&self, key: &[u8], siblings: &Siblings) -> Result<(), StorageError> {
        Ok(self.db.merge(&encode_engine_key(key), &encode(siblings))?)
    }

    /// The replica's sibling set for `key` (empty if it holds none).
    ///
    /// # Errors
    /// Engine errors, or [`StorageError::Codec`] for an unreadable value.
    pub fn read(&self, key: &[u8]) -> Result<Siblings, StorageError> {
        match self.db.get(&encode_engine_key(key))? {
            Some(bytes) => Ok(decode(&bytes)?),
            None => Ok(Siblings::new()),
        }
    }

    /// The engine, for stats and range scans.
    #[must_use]
    pub fn db(&self) -> &Db {
        &self.db
    }
}

#[cfg(test)]
mod tests {
    use strata_cluster::{Dot, NodeId, Version, VersionVector};

    use super::*;

    fn version(node: &str, counter: u64, context: VersionVector, value: &str) -> Version {
        Version {
            dot: Dot {
                node: NodeId::new(node).expect("id"),
                counter,
            },
            context,
            value: Some(value.as_bytes().to_vec()),
            timestamp_micros: counter,
        }
    }

    #[test]
    fn replica_writes_merge_into_siblings_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Storage::open(dir.path(), Durability::SyncEachGroup).expect("open");
            let a = Siblings::from_versions([version("n1", 1, VersionVector::new(), "a")]);
            let b = Siblings::from_versions([version("n2", 1, VersionVector::new(), "b")]);
            store.apply(b"k", &a).expect("apply");
            store.apply(b"k", &b).expect("apply");
            let both = store.read(b"k").expect("read");
            assert_eq!(both.live_values().collect::<Vec<_>>(), [&b"a"[..], b"b"]);

            let resolved = version("n1", 2, both.context(), "c");
            store
                .apply(b"k", &Siblings::from_versions([resolved]))
                .expect("apply");
            store.db().flush().expect("flush");
        }
        let store = Storage::open(dir.path(), Durability::SyncEachGroup).expect("reopen");
        let now = store.read(b"k").expect("read");
        assert_eq!(now.live_values().collect::<Vec<_>>(), [&b"c"[..]]);
        assert!(store.read(b"other").expect("read").is_empty());
    }
}
