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
mod writer;

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
    /// The writer thread could not be started or has stopped.
    #[error("the store's writer thread is not running: {0}")]
    Writer(String),
}

/// The replica store of one node.
#[derive(Debug)]
pub struct Storage {
    db: Arc<Db>,
    queue: Option<tokio::sync::mpsc::Sender<writer::Merge>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Storage {
    fn drop(&mut self) {
        // Closing the queue stops the writer after what it holds; join it
        // so the engine is closed when the store is gone.
        drop(self.queue.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
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
        let db = Arc::new(Db::open(dir, options)?);
        let (queue, writer) =
            writer::spawn(Arc::clone(&db)).map_err(|e| StorageError::Writer(e.to_string()))?;
        Ok(Self {
            db,
            queue: Some(queue),
            writer: Some(writer),
        })
    }

    /// [`Storage::apply`] for async callers: the merge joins the writer
    /// thread's next batch (one fsync for everything queued).
    ///
    /// # Errors
    /// Engine errors, or [`StorageError::Writer`] if the writer stopped.
    pub async fn apply_queued(&self, key: &[u8], siblings: &Siblings) -> Result<(), StorageError> {
        let stopped = || StorageError::Writer("stopped".into());
        let queue = self.queue.as_ref().ok_or_else(stopped)?;
        let (done, result) = tokio::sync::oneshot::channel();
        queue
            .send(writer::Merge {
                key: encode_engine_key(key),
                operand: encode(siblings),
                done,
            })
            .await
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
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

    /// Bytes of table files on disk: the load a node gossips and reports.
    #[must_use]
    pub fn load_bytes(&self) -> u64 {
        self.db.stats().levels.iter().map(|l| l.bytes).sum()
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_writes_are_batched_and_all_land() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(Storage::open(dir.path(), Durability::SyncEachGroup).expect("open"));
        let writers: Vec<_> = (0..200u32)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let key = format!("k{i}");
                    let v = Siblings::from_versions([version(
                        "n1",
                        u64::from(i) + 1,
                        VersionVector::new(),
                        &key,
                    )]);
                    store.apply_queued(key.as_bytes(), &v).await
                })
            })
            .collect();
        for w in writers {
            w.await.expect("task").expect("queued write");
        }
        for i in 0..200u32 {
            let key = format!("k{i}");
            let got = store.read(key.as_bytes()).expect("read");
            assert_eq!(got.live_values().collect::<Vec<_>>(), [key.as_bytes()]);
        }
        drop(store);
        let store = Storage::open(dir.path(), Durability::SyncEachGroup).expect("reopen");
        assert!(
            !store.read(b"k199").expect("read").is_empty(),
            "durable across reopen"
        );
    }
}
