//! A node's local replica store: Strata versions on the LSM engine.
//!
//! Keys are stored under the engine key `token || user key`
//! (`strata_cluster::encode_engine_key`), so every token range is one
//! contiguous scan. The value is the key's sibling set (`codec.rs`). A
//! replica write is an engine *merge* of the incoming sibling set
//! (`merge.rs`): one WAL append and one memtable insert, never a read;
//! sets are joined on reads and in compaction.

mod codec;
mod gc;
mod merge;
mod quarantine;
mod writer;

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use strata_cluster::{Siblings, Token, TokenRange, decode_engine_key, encode_engine_key};
use strata_engine::{Db, Durability, Options, WalRecovery};
use strata_proto::v1::{KeyVersions, KeyVersionsBatch, StoredVersions};

pub use codec::{
    CodecError, MAX_CLOCK_ENTRIES, MAX_VERSIONS, check_clock_entries, clock_from_proto,
    clock_to_proto, decode, decode_owned, encode, siblings_from_proto, validate,
    version_from_proto, version_to_proto,
};
pub use gc::{GcGate, TombstoneGc, gate_open};
pub use merge::SiblingsMerge;

/// Why a storage operation failed.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// A background thread (a scan or load for streaming) could not run.
    #[error(transparent)]
    Background(#[from] crate::background::BackgroundError),
}

/// What to do about a damaged store, for its failure message: reopening
/// reads the same damaged bytes.
pub(crate) const REBUILD: &str = "a restart finds the damage again: stop the node, delete its data \
     directory and start it under the same --node-id; it copies its ranges back from the \
     other replicas (docs/failures.md, \"A damaged table\")";

/// How long tombstones are kept by default: 10 days, as Cassandra's
/// `gc_grace_seconds`, far above the default anti-entropy interval.
pub const DEFAULT_TOMBSTONE_GRACE: std::time::Duration =
    std::time::Duration::from_secs(10 * 24 * 3600);

/// Merge operands a key may pile up in a memtable before the writer folds
/// them into one value (`Options::max_successive_merges`, 16 by default).
/// Every write here is a merge of a whole sibling set and every read folds
/// the chain it finds, so short chains make reads cheaper than the rare
/// extra fold costs writes: on a 3-node cluster, YCSB A ran at 11-15K ops/s
/// with 16, 15-17K with 4 and 16-17K with 2 (docs/benchmarks.md).
const MAX_MERGE_CHAIN: usize = 2;

/// How a node's store is opened: what it keeps and how much memory the
/// engine may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Compaction drops keys whose versions are all tombstones older than
    /// this.
    pub tombstone_grace: std::time::Duration,
    /// What opening does with a log damaged in the middle.
    pub wal_recovery: WalRecovery,
    /// Size of one memtable; the engine holds up to three (one being
    /// written, two being flushed).
    pub memtable_bytes: usize,
    /// Capacity of the block cache.
    pub block_cache_bytes: u64,
    /// Whether tombstone GC starts paused ([`Storage::tombstone_gate`]):
    /// a node's store does, until it knows every member is up; a store on
    /// its own (tests, tools) does not.
    pub tombstone_gc_paused: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        let engine = Options::default();
        Self {
            tombstone_grace: DEFAULT_TOMBSTONE_GRACE,
            wal_recovery: WalRecovery::Strict,
            memtable_bytes: engine.memtable_bytes,
            block_cache_bytes: engine.block_cache_bytes,
            tombstone_gc_paused: false,
        }
    }
}

/// One key of a range scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeEntry {
    /// `token || key`, the order of the scan.
    pub engine_key: Vec<u8>,
    /// The user key.
    pub key: Vec<u8>,
    /// Its merged versions.
    pub siblings: Siblings,
}

impl RangeEntry {
    /// The key's token.
    #[must_use]
    pub fn token(&self) -> Token {
        decode_engine_key(&self.engine_key).map_or(Token(0), |(t, _)| t)
    }
}

/// One key of a `StreamRange` batch, in either form.
enum Streamed {
    Stored(StoredVersions),
    Versions(KeyVersions),
}

/// What [`Storage::ingest`] did with a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Keys loaded as a table.
    pub ingested: u64,
    /// Keys merged through the write path instead.
    pub merged: u64,
    /// Size of the table written.
    pub table_bytes: u64,
}

/// The replica store of one node.
#[derive(Debug)]
pub struct Storage {
    db: Arc<Db>,
    gate: Arc<GcGate>,
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
    /// Opens (or creates) the store in `dir` with the default
    /// [`StoreOptions`].
    ///
    /// # Errors
    /// Engine errors from opening the database.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self, StorageError> {
        Self::open_with(dir, durability, StoreOptions::default())
    }

    /// Opens (or creates) the store in `dir` as `store` says.
    ///
    /// # Errors
    /// Engine errors from opening the database (also an invalid size).
    pub fn open_with(
        dir: &Path,
        durability: Durability,
        store: StoreOptions,
    ) -> Result<Self, StorageError> {
        let gate = Arc::new(GcGate::new(store.tombstone_gc_paused));
        let options = Options {
            durability,
            wal_recovery: store.wal_recovery,
            memtable_bytes: store.memtable_bytes,
            block_cache_bytes: store.block_cache_bytes,
            merge_operator: Some(Arc::new(SiblingsMerge)),
            max_successive_merges: MAX_MERGE_CHAIN,
            compaction_filter: Some(Arc::new(TombstoneGc {
                grace: store.tombstone_grace,
                gate: Arc::clone(&gate),
            })),
            ..Options::default()
        };
        let db = Arc::new(Db::open(dir, options)?);
        let (queue, writer) =
            writer::spawn(Arc::clone(&db)).map_err(|e| StorageError::Writer(e.to_string()))?;
        Ok(Self {
            db,
            gate,
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

    /// Passes `result` on. Damage a read found (a checksum that does not
    /// match) stops the store from taking writes, as a failed compaction
    /// over it soon would: nothing more is written over it, coordinators
    /// forward this node's clients' writes and keep hints for it, and
    /// health checks fail, until the node is rebuilt ([`Storage::failure`]
    /// says how).
    fn checked<T>(&self, result: Result<T, strata_engine::Error>) -> Result<T, StorageError> {
        result.map_err(|e| {
            if e.is_damage() && !self.db.refuses_writes() {
                tracing::error!(error = %e, "the store is damaged and refuses writes from now on; {REBUILD}");
                self.db.refuse_writes(&e);
            }
            StorageError::Engine(e)
        })
    }

    /// Why the store refuses writes, if it does; for damage, with what to
    /// do about it (a restart does not clear it).
    #[must_use]
    pub fn failure(&self) -> Option<String> {
        let stats = self.db.stats();
        let failure = stats.failure?;
        Some(if stats.failure_is_damage {
            format!("{failure}; {REBUILD}")
        } else {
            format!(
                "{failure}; a restart reopens the store once the cause is gone (space freed, the volume grown)"
            )
        })
    }

    /// The store refuses writes because its bytes are damaged: a restart
    /// meets the damage again.
    #[must_use]
    pub fn damaged(&self) -> bool {
        self.db.stats().failure_is_damage
    }

    /// The replica's sibling set for `key` (empty if it holds none).
    ///
    /// # Errors
    /// Engine errors, or [`StorageError::Codec`] for an unreadable value.
    pub fn read(&self, key: &[u8]) -> Result<Siblings, StorageError> {
        match self.checked(self.db.get(&encode_engine_key(key)))? {
            Some(bytes) => Ok(decode_owned(bytes)?),
            None => Ok(Siblings::new()),
        }
    }

    /// Visits every readable key in `range` in token order, starting after
    /// the engine key `start_after` (empty: from the start), until `visit`
    /// breaks. A key whose versions are unreadable (quarantined) is
    /// skipped with an error log: repair cannot merge what it cannot read.
    ///
    /// # Errors
    /// Engine errors while scanning.
    pub fn scan(
        &self,
        range: TokenRange,
        start_after: &[u8],
        mut visit: impl FnMut(RangeEntry) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        self.scan_stored(range, start_after, |engine_key, key, value| {
            let siblings = match decode(&value) {
                Ok(siblings) => siblings,
                Err(e) => {
                    tracing::error!(key = ?String::from_utf8_lossy(key), error = %e, "unreadable versions skipped by a range scan");
                    return ControlFlow::Continue(());
                }
            };
            visit(RangeEntry {
                key: key.to_vec(),
                engine_key,
                siblings,
            })
        })
    }

    /// [`Storage::scan`] without decoding: `visit` gets the engine key, the
    /// user key and the stored value of every key in `range` whose value
    /// is a sibling set (quarantined values are skipped with an error log;
    /// the rest is not checked).
    ///
    /// # Errors
    /// Engine errors while scanning.
    pub fn scan_stored(
        &self,
        range: TokenRange,
        start_after: &[u8],
        mut visit: impl FnMut(Vec<u8>, &[u8], Vec<u8>) -> ControlFlow<()>,
    ) -> Result<(), StorageError> {
        let intervals = range.intervals();
        // Resume inside the interval holding `start_after`; earlier ones
        // are done (a wrapping range's second interval has smaller tokens).
        let resume = decode_engine_key(start_after).ok().map(|(t, _)| t);
        let first = resume.map_or(0, |t| {
            intervals
                .iter()
                .position(|(lo, hi)| (lo.0..=hi.0).contains(&t.0))
                .unwrap_or(intervals.len())
        });
        for (i, (lo, hi)) in intervals.iter().enumerate().skip(first) {
            let lower = lo.0.to_be_bytes();
            let upper = hi.0.checked_add(1).map(u64::to_be_bytes);
            for item in self.checked(
                self.db
                    .iter_bulk(Some(&lower), upper.as_ref().map(<[u8; 8]>::as_slice)),
            )? {
                let (engine_key, value) = self.checked(item)?;
                if i == first && resume.is_some() && engine_key.as_slice() <= start_after {
                    continue;
                }
                let Ok((_, key)) = decode_engine_key(&engine_key) else {
                    continue;
                };
                if !codec::is_sibling_set(&value) {
                    tracing::error!(key = ?String::from_utf8_lossy(key), "unreadable versions skipped by a range scan");
                    continue;
                }
                let key = key.to_vec();
                if visit(engine_key, &key, value).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Every readable key of `range` after `start_after`, as batches of
    /// about `limit` encoded bytes, from a blocking scan feeding a
    /// two-batch channel: memory stays bounded and a slow reader slows the
    /// scan. The scan stops when the receiver is dropped. It runs on a
    /// background thread (`background.rs`): client requests go first.
    /// With `stored_form`, keys go in `KeyVersionsBatch::stored` as stored
    /// (no decoding), otherwise in `entries`.
    #[must_use]
    pub fn batches(
        self: &Arc<Self>,
        range: TokenRange,
        start_after: Vec<u8>,
        limit: usize,
        stored_form: bool,
    ) -> tokio::sync::mpsc::Receiver<Result<KeyVersionsBatch, StorageError>> {
        let storage = Arc::clone(self);
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let refused = tx.clone();
        let started = crate::background::spawn("strata-scan", move || {
            let mut batch = KeyVersionsBatch::default();
            let mut bytes = 0;
            let mut receiver_gone = false;
            // Appends one key; sends the batch once it reaches `limit`.
            let mut add = |key: Streamed| {
                bytes += match key {
                    Streamed::Stored(entry) => {
                        let len = prost::Message::encoded_len(&entry);
                        batch.stored.push(entry);
                        len
                    }
                    Streamed::Versions(entry) => {
                        let len = prost::Message::encoded_len(&entry);
                        batch.entries.push(entry);
                        len
                    }
                };
                if bytes >= limit {
                    bytes = 0;
                    if tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                        receiver_gone = true;
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            };
            let scanned = if stored_form {
                storage.scan_stored(range, &start_after, |_, key, value| {
                    add(Streamed::Stored(StoredVersions {
                        key: key.to_vec().into(),
                        value: value.into(),
                    }))
                })
            } else {
                storage.scan(range, &start_after, |entry| {
                    add(Streamed::Versions(KeyVersions {
                        key: entry.key.into(),
                        versions: entry
                            .siblings
                            .versions()
                            .iter()
                            .map(version_to_proto)
                            .collect(),
                    }))
                })
            };
            if receiver_gone {
                return;
            }
            let last = match scanned {
                Ok(()) if batch.entries.is_empty() && batch.stored.is_empty() => return,
                Ok(()) => Ok(batch),
                Err(e) => Err(e),
            };
            let _ = tx.blocking_send(last);
        });
        if let Err(e) = started {
            // The channel is empty: the reader gets the error first.
            let _ = refused.try_send(Err(e.into()));
        }
        rx
    }

    /// Loads `run` (engine keys strictly ascending, stored values) under
    /// everything the store holds, as one engine table (ingest-behind): no
    /// WAL, memtable or compaction work. Keys that have a put stored (a
    /// folded merge chain, or a compaction's result, which would hide
    /// them), and whole runs the engine cannot place (a table on its last
    /// level overlaps, or a write raced the commit), are merged through the
    /// write path instead. Merging is a join of sibling
    /// sets, so where the versions end up does not change what reads see.
    /// Durable when this returns. Blocking: run it off the async workers.
    ///
    /// # Errors
    /// Engine errors.
    pub fn ingest<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        run: &[(K, V)],
    ) -> Result<Ingested, StorageError> {
        match self.db.ingest_behind(run) {
            Ok(done) => {
                self.merge_all(done.shadowed.iter().map(|&i| &run[i]))?;
                Ok(Ingested {
                    ingested: done.entries,
                    merged: done.shadowed.len() as u64,
                    table_bytes: done.table_bytes,
                })
            }
            Err(
                e @ (strata_engine::Error::IngestOverlap { .. }
                | strata_engine::Error::IngestConflict { .. }),
            ) => {
                tracing::debug!(error = %e, keys = run.len(), "run merged instead of ingested");
                self.merge_all(run.iter())?;
                Ok(Ingested {
                    ingested: 0,
                    merged: run.len() as u64,
                    table_bytes: 0,
                })
            }
            Err(e) => self.checked(Err(e)),
        }
    }

    /// Merges engine-key/stored-value pairs (through the write path) in
    /// batches of about 4 MiB. Blocking: run it off the async workers.
    ///
    /// # Errors
    /// Engine errors.
    pub(crate) fn merge_all<'a, K: AsRef<[u8]> + 'a, V: AsRef<[u8]> + 'a>(
        &self,
        entries: impl Iterator<Item = &'a (K, V)>,
    ) -> Result<(), StorageError> {
        let mut batch = strata_engine::WriteBatch::new();
        let mut bytes = 0;
        for (key, value) in entries {
            let (key, value) = (key.as_ref(), value.as_ref());
            batch.merge(key, value);
            bytes += key.len() + value.len();
            if bytes >= 4 << 20 {
                self.db.write(std::mem::take(&mut batch))?;
                bytes = 0;
            }
        }
        self.db.write(batch)?;
        Ok(())
    }

    /// Deletes every key of `range` (its engine keys, readable or not);
    /// returns how many. Stops early, between batches of 1000 keys, once
    /// `stop` is set (a range can hold millions of keys). Blocking: run it
    /// off the async workers.
    ///
    /// # Errors
    /// Engine errors.
    pub fn delete_range(
        &self,
        range: TokenRange,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<u64, StorageError> {
        let mut deleted = 0u64;
        for (lo, hi) in range.intervals() {
            let lower = lo.0.to_be_bytes();
            let upper = hi.0.checked_add(1).map(u64::to_be_bytes);
            let mut batch = strata_engine::WriteBatch::new();
            let mut in_batch = 0;
            for item in self.checked(
                self.db
                    .iter_bulk(Some(&lower), upper.as_ref().map(<[u8; 8]>::as_slice)),
            )? {
                let (engine_key, _) = self.checked(item)?;
                batch.delete(&engine_key);
                in_batch += 1;
                if in_batch == 1000 {
                    self.db.write(std::mem::take(&mut batch))?;
                    deleted += in_batch;
                    in_batch = 0;
                    if stop.load(std::sync::atomic::Ordering::Acquire) {
                        return Ok(deleted);
                    }
                }
            }
            if in_batch > 0 {
                self.db.write(batch)?;
                deleted += in_batch;
            }
        }
        Ok(deleted)
    }

    /// Every readable key in `range`.
    ///
    /// # Errors
    /// Engine errors while scanning.
    pub fn entries(&self, range: TokenRange) -> Result<Vec<RangeEntry>, StorageError> {
        let mut out = Vec::new();
        self.scan(range, &[], |e| {
            out.push(e);
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// Bytes of data this node holds: its table files plus its memtables
    /// (written to the WAL, not yet flushed to tables). The load a node
    /// gossips and reports; without the memtables a node holding up to
    /// three memtables of recent writes would report nothing.
    #[must_use]
    pub fn load_bytes(&self) -> u64 {
        let stats = self.db.stats();
        let tables: u64 = stats.levels.iter().map(|l| l.bytes).sum();
        let memtables = stats.memtable_bytes + stats.immutable_memtable_bytes;
        tables + memtables as u64
    }

    /// What decides whether tombstone GC runs (see [`GcGate`]).
    #[must_use]
    pub fn tombstone_gate(&self) -> &Arc<GcGate> {
        &self.gate
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
            value: Some(value.as_bytes().to_vec().into()),
            timestamp_micros: counter,
            request_id: 0,
        }
    }

    /// Writes still in the memtable count toward the load: a node that has
    /// flushed nothing yet does not report itself empty.
    #[test]
    fn the_load_counts_what_the_memtables_hold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Storage::open(dir.path(), Durability::SyncEachGroup).expect("open");
        let before = store.load_bytes();
        let value = "x".repeat(1000);
        let v = Siblings::from_versions([version("n1", 1, VersionVector::new(), &value)]);
        for i in 0..200 {
            store
                .apply(format!("k{i:03}").as_bytes(), &v)
                .expect("apply");
        }
        let tables: u64 = store.db().stats().levels.iter().map(|l| l.bytes).sum();
        assert_eq!(tables, 0, "nothing flushed yet");
        let grown = store.load_bytes() - before;
        assert!(
            (200_000..2_000_000).contains(&grown),
            "200 values of 1000 bytes: load grew by {grown}"
        );
    }

    /// Damage met by a scan (as by a read, `faults.rs`) stops the store's
    /// writes, and its failure says a restart does not clear it.
    #[test]
    fn a_scan_that_meets_damage_stops_writes_and_says_to_rebuild() {
        use strata_cluster::{Token, TokenRange};
        let dir = tempfile::tempdir().expect("tempdir");
        let v = Siblings::from_versions([version("n1", 1, VersionVector::new(), "v")]);
        {
            let store = Storage::open(dir.path(), Durability::SyncEachGroup).expect("open");
            for i in 0..100 {
                store.apply(format!("k{i}").as_bytes(), &v).expect("apply");
            }
            store.db().flush().expect("flush");
        }
        let table = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .find(|p| p.extension().is_some_and(|e| e == "sst"))
            .expect("a table");
        let mut bytes = std::fs::read(&table).expect("read");
        bytes[10] ^= 0x5a;
        std::fs::write(&table, bytes).expect("write");

        let store = Storage::open(dir.path(), Durability::SyncEachGroup).expect("open");
        assert_eq!(store.failure(), None);
        let whole = TokenRange {
            start: Token(0),
            end: Token(0),
        };
        let scanned = store.scan(whole, &[], |_| ControlFlow::Continue(()));
        assert!(
            matches!(&scanned, Err(StorageError::Engine(e)) if e.is_damage()),
            "{scanned:?}"
        );
        assert!(store.db().refuses_writes());
        assert!(store.apply(b"k0", &v).is_err(), "writes are refused");
        let failure = store.failure().expect("a failure");
        assert!(
            failure.contains("corrupt") && failure.contains("delete its data directory"),
            "{failure}"
        );
    }

    /// A range delete stops between batches once asked, and deletes
    /// everything when not.
    #[test]
    fn a_range_delete_stops_when_asked() {
        use std::sync::atomic::AtomicBool;
        use strata_cluster::{Token, TokenRange};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Storage::open(dir.path(), Durability::SyncEachGroup).expect("open");
        let v = Siblings::from_versions([version("n1", 1, VersionVector::new(), "v")]);
        for i in 0..2500 {
            store
                .apply(format!("k{i:04}").as_bytes(), &v)
                .expect("apply");
        }
        let whole = TokenRange {
            start: Token(0),
            end: Token(0),
        };
        let stopped = store
            .delete_range(whole, &AtomicBool::new(true))
            .expect("delete");
        assert_eq!(stopped, 1000, "one batch, then it stops");
        let rest = store
            .delete_range(whole, &AtomicBool::new(false))
            .expect("delete");
        assert_eq!(rest, 1500, "the rest");
    }

    /// A WAL damaged in the middle: `Strict` refuses to open, `Truncate`
    /// opens with what precedes the damage.
    #[test]
    fn a_damaged_log_is_refused_or_truncated_as_asked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = |recovery| {
            Storage::open_with(
                dir.path(),
                Durability::SyncEachGroup,
                StoreOptions {
                    wal_recovery: recovery,
                    ..StoreOptions::default()
                },
            )
        };
        {
            let store = open(WalRecovery::Strict).expect("open");
            let v = Siblings::from_versions([version("n1", 1, VersionVector::new(), "v")]);
            for i in 0..200 {
                store
                    .apply(format!("k{i:03}").as_bytes(), &v)
                    .expect("apply");
            }
        }
        let wal = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .find(|p| p.extension().is_some_and(|e| e == "log"))
            .expect("a log");
        let mut bytes = std::fs::read(&wal).expect("read log");
        let end = bytes.iter().rposition(|b| *b != 0).expect("records");
        bytes[end / 2] ^= 0xff;
        std::fs::write(&wal, &bytes).expect("damage");

        assert!(
            matches!(
                open(WalRecovery::Strict),
                Err(StorageError::Engine(
                    strata_engine::Error::WalCorruption { .. }
                ))
            ),
            "a damaged log must not open strictly"
        );
        let store = open(WalRecovery::TruncateAtCorruption).expect("truncated");
        assert_eq!(store.read(b"k000").expect("read").live_values().count(), 1);
        assert!(
            store.read(b"k199").expect("read").is_empty(),
            "the last write followed the damage"
        );
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

    #[test]
    fn folding_short_merge_chains_keeps_every_concurrent_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Storage::open(dir.path(), Durability::None).expect("open");
        let writes = 4 * MAX_MERGE_CHAIN + 1;
        for i in 0..writes {
            let node = format!("n{i}");
            let value = i.to_string();
            let set = Siblings::from_versions([version(&node, 1, VersionVector::new(), &value)]);
            store.apply(b"k", &set).expect("apply");
        }
        let read = store.read(b"k").expect("read");
        let mut values: Vec<String> = read
            .live_values()
            .map(|v| String::from_utf8(v.to_vec()).expect("utf-8"))
            .collect();
        values.sort_by_key(|v| v.parse::<usize>().expect("number"));
        let expected: Vec<String> = (0..writes).map(|i| i.to_string()).collect();
        assert_eq!(
            values, expected,
            "every write stays a sibling through the folds"
        );
    }

    #[test]
    fn ingested_runs_join_with_what_the_store_holds_or_fall_back_to_merges() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Storage::open(dir.path(), Durability::SyncEachGroup).expect("open");
        let streamed = |i: u32| {
            Siblings::from_versions([version("src", 1, VersionVector::new(), &format!("old{i}"))])
        };
        let run: Vec<_> = (0..50u32)
            .map(|i| (format!("k{i}").into_bytes(), i))
            .map(|(k, i)| (encode_engine_key(&k), encode(&streamed(i))))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .collect();
        // A concurrent write to k3 before the load, and a key whose chain
        // was folded into a put (which would hide an ingested value).
        let newer = Siblings::from_versions([version("me", 1, VersionVector::new(), "new")]);
        store.apply(b"k3", &newer).expect("apply");
        for i in 0..20 {
            let v = Siblings::from_versions([version("me", 10 + i, VersionVector::new(), "hot")]);
            store.apply(b"k4", &v).expect("apply");
        }
        let done = store.ingest(&run).expect("ingest");
        assert_eq!(done.ingested + done.merged, 50);
        assert_eq!(done.merged, 1, "only k4 has a put stored");
        assert!(done.table_bytes > 0);
        let k3 = store.read(b"k3").expect("read");
        assert_eq!(k3.live_values().collect::<Vec<_>>(), [&b"new"[..], b"old3"]);
        let k4 = store.read(b"k4").expect("read");
        assert!(
            k4.live_values().any(|v| v == b"old4"),
            "merged on top of the put"
        );
        assert_eq!(
            store
                .read(b"k7")
                .expect("read")
                .live_values()
                .collect::<Vec<_>>(),
            [&b"old7"[..]]
        );
        // The same run again (a retried range) goes under the first copy;
        // joining sibling sets is idempotent.
        let again = store.ingest(&run).expect("ingest again");
        assert_eq!((again.ingested, again.merged), (49, 1));
        let k3 = store.read(b"k3").expect("read");
        assert_eq!(k3.versions().len(), 2);
        assert_eq!(
            store
                .entries(TokenRange {
                    start: Token(0),
                    end: Token(0)
                })
                .expect("scan")
                .len(),
            50
        );
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

    #[test]
    fn range_scans_follow_token_order_and_resume_across_the_wrap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Storage::open(dir.path(), Durability::SyncEachGroup).expect("open");
        let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
        for (i, key) in keys.iter().enumerate() {
            let v = version("n1", i as u64 + 1, VersionVector::new(), key);
            store
                .apply(key.as_bytes(), &Siblings::from_versions([v]))
                .expect("apply");
        }
        let mut tokens: Vec<u64> = keys.iter().map(|k| Token::of(k.as_bytes()).0).collect();
        tokens.sort_unstable();
        // A wrapping range from the 150th token around to the 50th.
        let range = TokenRange {
            start: Token(tokens[150]),
            end: Token(tokens[50]),
        };
        let all = store.entries(range).expect("scan");
        assert_eq!(all.len(), 49 + 51);
        assert!(all.iter().all(|e| range.contains(e.token())));
        assert_eq!(all[0].token(), Token(tokens[151]), "starts past the start");
        assert_eq!(all.last().expect("some").token(), Token(tokens[50]));
        // Resuming after any entry yields exactly the rest.
        for cut in [0, 30, 48, 49, 70, 99] {
            let mut rest = Vec::new();
            store
                .scan(range, &all[cut].engine_key, |e| {
                    rest.push(e);
                    ControlFlow::Continue(())
                })
                .expect("scan");
            assert_eq!(rest, all[cut + 1..], "resumed after {cut}");
        }
        let whole = TokenRange {
            start: Token(7),
            end: Token(7),
        };
        assert_eq!(store.entries(whole).expect("scan").len(), 200);
    }

    #[test]
    fn the_memtable_size_decides_when_writes_are_flushed() {
        let written = |memtable_bytes| {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Storage::open_with(
                dir.path(),
                Durability::None,
                StoreOptions {
                    memtable_bytes,
                    ..StoreOptions::default()
                },
            )
            .expect("open");
            let value = "x".repeat(1000);
            for i in 0..2000 {
                let v = Siblings::from_versions([version("n1", i, VersionVector::new(), &value)]);
                store.apply(format!("k{i}").as_bytes(), &v).expect("apply");
            }
            store.db().stats().flush_bytes_written
        };
        assert!(written(64 << 10) > 0, "2 MB through 64 KiB memtables flush");
        assert_eq!(written(64 << 20), 0, "2 MB fit in one 64 MiB memtable");
    }

    #[test]
    fn compaction_drops_only_tombstones_past_the_grace_period() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Storage::open_with(
            dir.path(),
            Durability::SyncEachGroup,
            StoreOptions {
                tombstone_grace: std::time::Duration::from_secs(3600),
                ..StoreOptions::default()
            },
        )
        .expect("open");
        let now = u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_micros(),
        )
        .expect("micros fit");
        let tombstone = |counter, timestamp_micros| Version {
            dot: Dot {
                node: NodeId::new("n1").expect("id"),
                counter,
            },
            context: VersionVector::new(),
            value: None,
            timestamp_micros,
            request_id: 0,
        };
        let live = version("n1", 1, VersionVector::new(), "v");
        // An old value, then an old tombstone superseding it.
        store
            .apply(b"old", &Siblings::from_versions([live.clone()]))
            .expect("apply");
        store.db().flush().expect("flush");
        let mut covering = tombstone(2, now - 7_200_000_000);
        covering.context = Siblings::from_versions([live.clone()]).context();
        store
            .apply(b"old", &Siblings::from_versions([covering]))
            .expect("apply");
        store
            .apply(
                b"young",
                &Siblings::from_versions([tombstone(3, now - 60_000_000)]),
            )
            .expect("apply");
        store
            .apply(b"value", &Siblings::from_versions([live]))
            .expect("apply");
        store.db().flush().expect("flush");
        store.db().compact_range(None, None).expect("compact");

        let keys: Vec<Vec<u8>> = store
            .entries(TokenRange {
                start: Token(0),
                end: Token(0),
            })
            .expect("scan")
            .into_iter()
            .map(|e| e.key)
            .collect();
        assert!(
            !keys.contains(&b"old".to_vec()),
            "expired tombstone dropped"
        );
        assert!(
            keys.contains(&b"young".to_vec()),
            "tombstone within grace kept"
        );
        assert!(keys.contains(&b"value".to_vec()));
        assert!(
            store.read(b"old").expect("read").is_empty(),
            "and nothing older resurfaces"
        );
    }

    /// While the gate is closed (a member is down), compaction keeps even
    /// the oldest tombstone; once it opens, the next compaction drops it.
    #[test]
    fn a_closed_gate_keeps_expired_tombstones_through_compaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Storage::open_with(
            dir.path(),
            Durability::SyncEachGroup,
            StoreOptions {
                tombstone_grace: std::time::Duration::from_secs(1),
                tombstone_gc_paused: true,
                ..StoreOptions::default()
            },
        )
        .expect("open");
        let mut old = version("n1", 1, VersionVector::new(), "unused");
        old.value = None;
        old.timestamp_micros = 1_000_000;
        let has = |key: &[u8]| {
            store
                .entries(TokenRange {
                    start: Token(0),
                    end: Token(0),
                })
                .expect("scan")
                .iter()
                .any(|e| e.key == key)
        };
        // Each round writes the tombstone again into a table that overlaps
        // the older ones, so the compaction merges them through the filter
        // (a lone table would move down a level unread).
        let write_and_compact = || {
            for _ in 0..2 {
                store
                    .apply(b"a", &Siblings::from_versions([old.clone()]))
                    .expect("apply");
                store.db().flush().expect("flush");
            }
            store.db().compact_range(None, None).expect("compact");
        };
        write_and_compact();
        assert!(has(b"a"), "dropped while the gate was closed");
        let gate = store.tombstone_gate();
        gate.observe(true, crate::clock::now_micros());
        gate.repaired(crate::clock::now_micros());
        write_and_compact();
        assert!(!has(b"a"), "kept after the gate opened");
    }
}
