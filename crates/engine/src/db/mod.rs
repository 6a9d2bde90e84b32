//! The database: the public [`Db`] handle and the state its parts share.
//!
//! `recovery.rs` opens a directory (MANIFEST, WAL replay, garbage
//! collection), `write.rs` is the group-commit write path, `read.rs` point
//! lookups, `iter.rs` range iterators, `background.rs` the flush and
//! compaction threads, `flush.rs` memtable-to-table writing.

mod background;
mod flush;
mod ingest;
mod iter;
mod read;
mod recovery;
mod write;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;

pub use ingest::Ingested;
pub use iter::DbIter;

use crate::key::SeqNo;
use crate::memtable::Memtable;
use crate::record::RecordWriter;
use crate::stats::{Counters, Stats};
use crate::table_cache::TableCache;
use crate::version::{Version, VersionSet};
use crate::{Error, Options, Result, WriteBatch};

/// What readers need, swapped atomically as memtables fill and flush.
#[derive(Debug, Clone)]
pub(crate) struct State {
    pub(crate) mem: Arc<Memtable>,
    /// Immutable memtables, newest first.
    pub(crate) imms: Vec<Arc<Memtable>>,
    pub(crate) version: Arc<Version>,
}

/// The live WAL and a buffer the group-commit leader reuses for framing.
#[derive(Debug)]
pub(crate) struct Wal {
    pub(crate) writer: RecordWriter,
    pub(crate) scratch: Vec<u8>,
}

/// Signals between writers, the background threads and callers that wait
/// for them.
#[derive(Debug, Default)]
pub(crate) struct Background {
    pub(crate) shutdown: bool,
    /// Set when a flush, compaction or WAL write fails; writes then fail.
    pub(crate) error: Option<String>,
    /// `error` is a damaged file (a checksum that does not match): unlike a
    /// full disk, reopening does not clear it.
    pub(crate) damaged: bool,
    /// A manual compaction waiting for the compaction thread.
    pub(crate) manual: Option<(Vec<u8>, Option<Vec<u8>>)>,
    /// Incremented each time the compaction thread finishes a manual request.
    pub(crate) manual_done: u64,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) options: Options,
    pub(crate) state: RwLock<State>,
    pub(crate) versions: Mutex<VersionSet>,
    pub(crate) next_file: Arc<AtomicU64>,
    /// Largest sequence number visible to readers.
    pub(crate) last_seq: AtomicU64,
    pub(crate) writers: Mutex<write::Queue>,
    /// Held by the compaction thread from picking a compaction to
    /// installing it, and by an ingest from its first probe to its commit.
    pub(crate) compaction: Mutex<()>,
    pub(crate) wal: Mutex<Wal>,
    pub(crate) bg: Mutex<Background>,
    /// Mirrors `bg.error.is_some()` so the write path checks it without a lock.
    pub(crate) failed: AtomicBool,
    pub(crate) bg_cv: Condvar,
    pub(crate) snapshots: Mutex<BTreeMap<SeqNo, usize>>,
    pub(crate) tables: TableCache,
    pub(crate) counters: Counters,
    /// Held for the life of the database: an OS lock on `LOCK`.
    _lock: std::fs::File,
}

impl Inner {
    pub(crate) fn state(&self) -> State {
        self.state.read().expect("state lock").clone()
    }

    pub(crate) fn background_error(&self) -> Option<Error> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        let bg = self.bg.lock().expect("bg lock");
        bg.error.clone().map(Error::Background)
    }

    pub(crate) fn set_background_error(&self, error: &Error) {
        let mut bg = self.bg.lock().expect("bg lock");
        record_failure(&mut bg, &self.failed, error);
        self.bg_cv.notify_all();
    }

    /// The oldest sequence number some reader may still read at.
    pub(crate) fn oldest_snapshot(&self) -> SeqNo {
        let snapshots = self.snapshots.lock().expect("snapshots lock");
        snapshots
            .keys()
            .next()
            .copied()
            .unwrap_or_else(|| self.last_seq.load(Ordering::Acquire))
    }
}

/// Records the first background failure; later writes see it.
pub(crate) fn record_failure(bg: &mut Background, failed: &AtomicBool, error: &Error) {
    if bg.error.is_none() {
        bg.damaged = error.is_damage();
    }
    bg.error.get_or_insert_with(|| error.to_string());
    failed.store(true, Ordering::Release);
}

/// An open database. Share it between threads with `Arc<Db>`; dropping it
/// (or [`close`](Db::close)) stops the background threads.
#[derive(Debug)]
pub struct Db {
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
}

/// A consistent point-in-time view: reads through it see exactly the
/// writes acknowledged before it was taken. Compaction keeps every version
/// a live snapshot can see.
#[derive(Debug)]
pub struct Snapshot {
    seq: SeqNo,
    inner: Arc<Inner>,
}

impl Snapshot {
    /// The snapshot's sequence number.
    #[must_use]
    pub fn seq(&self) -> SeqNo {
        self.seq
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let mut snapshots = self.inner.snapshots.lock().expect("snapshots lock");
        if let Some(count) = snapshots.get_mut(&self.seq) {
            *count -= 1;
            if *count == 0 {
                snapshots.remove(&self.seq);
            }
        }
    }
}

impl Db {
    /// Opens (creating if needed) the database in directory `path`.
    ///
    /// Replays the WAL: a torn tail (a crash mid-write) is the end of the
    /// log; damage in the middle is [`Error::WalCorruption`] unless
    /// `options.wal_recovery` says to truncate.
    ///
    /// # Errors
    /// Invalid options, IO errors, corruption, or [`Error::Locked`] when
    /// another handle has the directory open.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Self> {
        options.validate()?;
        let inner = Arc::new(recovery::open(path.as_ref(), options)?);
        let threads = background::start(&inner)?;
        Ok(Self { inner, threads })
    }

    /// The value of `key`, or `None`.
    ///
    /// # Errors
    /// IO errors, corruption, or [`Error::NoMergeOperator`].
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        read::get(
            &self.inner,
            key,
            self.inner.last_seq.load(Ordering::Acquire),
        )
    }

    /// The value of `key` as of `snapshot`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    pub fn get_at(&self, key: &[u8], snapshot: &Snapshot) -> Result<Option<Vec<u8>>> {
        read::get(&self.inner, key, snapshot.seq)
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    /// IO errors, or a background error that made the database read-only.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(key, value);
        self.write(batch)
    }

    /// Deletes `key`.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.delete(key);
        self.write(batch)
    }

    /// Appends a merge operand for `key` without reading it.
    ///
    /// # Errors
    /// [`Error::NoMergeOperator`] when none is configured; otherwise as
    /// [`put`](Self::put).
    pub fn merge(&self, key: &[u8], operand: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.merge(key, operand);
        self.write(batch)
    }

    /// Applies `batch` atomically. Returns once the batch is durable at the
    /// configured [`Durability`](crate::Durability).
    ///
    /// # Errors
    /// As [`put`](Self::put), or [`Error::WriteTooLarge`].
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        write::write(&self.inner, Some(batch))
    }

    /// Writes `entries` (keys strictly ascending) as merge operands into one
    /// new table beneath every version already stored: they read as the
    /// oldest versions of their keys. No WAL, memtable or compaction work;
    /// the table is fsynced and recorded in the MANIFEST before this
    /// returns. Entries whose key has a put or delete stored (which would
    /// hide them) are left out and listed in [`Ingested::shadowed`].
    /// Requires a merge operator. See `db/ingest.rs` for the placement and
    /// why concurrent writes and compactions are safe.
    ///
    /// # Errors
    /// [`Error::IngestUnsorted`]; [`Error::IngestOverlap`] when a table on
    /// the last level overlaps the run's key range; [`Error::IngestConflict`]
    /// when a put or delete of an ingested key was written meanwhile (in
    /// both cases nothing changed: write the entries normally instead);
    /// [`Error::NoMergeOperator`], [`Error::WriteTooLarge`] for one entry
    /// above the write limit; IO errors.
    pub fn ingest_behind<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        entries: &[(K, V)],
    ) -> Result<Ingested> {
        ingest::ingest_behind(&self.inner, entries)
    }

    /// Iterates over keys in `[start, end)` (`None`: unbounded) at the
    /// current sequence number.
    ///
    /// # Errors
    /// IO errors or corruption while positioning.
    pub fn iter(&self, start: Option<&[u8]>, end: Option<&[u8]>) -> Result<DbIter> {
        let seq = self.inner.last_seq.load(Ordering::Acquire);
        DbIter::new(&self.inner, seq, start, end, false)
    }

    /// [`iter`](Self::iter) for reading a large range once (a range
    /// streamed to another node, a bulk delete): tables are read 256 KiB
    /// at a time rather than block by block, and blocks read are not put
    /// in the block cache, so the scan neither pays a read per block nor
    /// evicts what point reads need.
    ///
    /// # Errors
    /// As [`iter`](Self::iter).
    pub fn iter_bulk(&self, start: Option<&[u8]>, end: Option<&[u8]>) -> Result<DbIter> {
        let seq = self.inner.last_seq.load(Ordering::Acquire);
        DbIter::new(&self.inner, seq, start, end, true)
    }

    /// Iterates over keys in `[start, end)` as of `snapshot`.
    ///
    /// # Errors
    /// As [`iter`](Self::iter).
    pub fn iter_at(
        &self,
        snapshot: &Snapshot,
        start: Option<&[u8]>,
        end: Option<&[u8]>,
    ) -> Result<DbIter> {
        DbIter::new(&self.inner, snapshot.seq, start, end, false)
    }

    /// A snapshot of the current state.
    #[must_use]
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshots = self.inner.snapshots.lock().expect("snapshots lock");
        let seq = self.inner.last_seq.load(Ordering::Acquire);
        *snapshots.entry(seq).or_insert(0) += 1;
        Snapshot {
            seq,
            inner: Arc::clone(&self.inner),
        }
    }

    /// Writes the memtable to a level-0 table and waits until every
    /// immutable memtable is flushed.
    ///
    /// # Errors
    /// IO errors or a background error.
    pub fn flush(&self) -> Result<()> {
        write::write(&self.inner, None)?;
        background::wait_for_flushes(&self.inner)
    }

    /// Compacts every level's files overlapping user keys `[start, end]`
    /// (`None`: unbounded) down the levels, after flushing the memtable.
    ///
    /// # Errors
    /// IO errors or a background error.
    pub fn compact_range(&self, start: Option<&[u8]>, end: Option<&[u8]>) -> Result<()> {
        self.flush()?;
        background::manual_compaction(&self.inner, start, end)
    }

    /// Whether the database refuses writes until it is reopened (a WAL
    /// append, flush or compaction failed); [`Stats::failure`] says why.
    /// Cheap: one atomic load.
    #[must_use]
    pub fn refuses_writes(&self) -> bool {
        self.inner.failed.load(Ordering::Acquire)
    }

    /// Stops taking writes until the database is reopened, as a failed
    /// flush or compaction does, with `error` as the reason
    /// ([`Stats::failure`]; the first reason recorded stays). For a caller
    /// whose read found damage and that wants nothing more written over it
    /// until the data is rebuilt. Reads go on.
    pub fn refuse_writes(&self, error: &Error) {
        self.inner.set_background_error(error);
    }

    /// Counters and per-level sizes.
    #[must_use]
    pub fn stats(&self) -> Stats {
        crate::stats::collect(&self.inner)
    }

    /// Takes the write stalls recorded since the last call, oldest first:
    /// each wait of a writer for flush or compaction with its cause and
    /// length ([`crate::StallEvent`]). The engine keeps the newest 4096
    /// undrained events; older ones are counted in
    /// [`Stats::stall_events_dropped`].
    pub fn drain_stalls(&self) -> Vec<crate::StallEvent> {
        self.inner.counters.stalls.drain()
    }

    /// Stops the background threads and syncs the WAL.
    ///
    /// The directory stays locked while a [`Snapshot`] or [`DbIter`] of this
    /// database is alive (they read its files); `close` then says so with
    /// [`Error::InUse`] after stopping everything else, and the lock is
    /// released when the last of them is dropped.
    ///
    /// # Errors
    /// The first background error, a failure to sync the WAL, or
    /// [`Error::InUse`].
    pub fn close(mut self) -> Result<()> {
        self.shutdown()?;
        let handles = Arc::strong_count(&self.inner) - 1;
        if handles > 0 {
            return Err(Error::InUse {
                path: self.inner.dir.clone(),
                handles,
            });
        }
        Ok(())
    }

    fn shutdown(&mut self) -> Result<()> {
        {
            let mut bg = self.inner.bg.lock().expect("bg lock");
            bg.shutdown = true;
            self.inner.bg_cv.notify_all();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.inner.wal.lock().expect("wal lock").writer.sync()?;
        self.inner.background_error().map_or(Ok(()), Err)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            let _ = self.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Db, Error, Options};

    /// `refuses_writes` and `Stats::failure` (stats.rs), tested here for
    /// access to the database's state.
    #[test]
    fn a_database_that_refuses_writes_says_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path(), Options::default()).expect("open");
        db.put(b"k", b"v").expect("put");
        assert_eq!(db.stats().failure, None);
        assert!(!db.refuses_writes());
        let full = std::io::Error::from_raw_os_error(28);
        db.inner
            .set_background_error(&Error::io(dir.path().join("000001.log"))(full));
        let failure = db.stats().failure.expect("a failure");
        assert!(
            failure.contains("read-only until reopened") && failure.contains("000001.log"),
            "{failure}"
        );
        assert!(db.refuses_writes());
        assert!(!db.stats().failure_is_damage, "a full disk is not damage");
        assert!(db.put(b"k", b"w").is_err(), "writes are refused");
    }
}
