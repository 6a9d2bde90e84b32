//! Hinted handoff: writes held for replicas that were down or failed.
//!
//! A hint is the key and the sibling set the coordinator replicated,
//! stored for one target node. Hints live in append-only segment files
//! (`segment.rs`) under `<data_dir>/hints/<target>/`; a writer thread
//! (`writer.rs`) appends everything queued and fsyncs each touched segment
//! once before any caller hears "stored" (group commit, as the replica
//! store does). The state mutex guards bookkeeping only: no file is
//! written or synced while it is held, so async callers that read sizes
//! or seal segments never wait for the disk.
//!
//! Bounds: bytes per target and in total (`HintLimits`); an append past
//! either is refused with [`HintError::Full`] and counted as dropped, so
//! a long outage costs bounded disk, and the write that needed the hint
//! fails at its consistency level instead. Hints older than the hint
//! window expire: anti-entropy is responsible for them after that.
//! Hints waiting for the writer thread are bounded in count and in bytes
//! (`QUEUE`, `HintLimits::queued_bytes`): past either an append is refused
//! at once with [`HintError::Overloaded`], so a disk slower than the hints
//! arriving (a replica falling behind under large values) costs bounded
//! memory.
//!
//! `replay.rs` delivers hints when gossip sees their target alive (after
//! a failed delivery, a few ticks later: `backoff.rs`). It
//! seals the target's open segment (new hints start a new one), delivers
//! sealed segments oldest first and deletes each once delivered. A damaged
//! segment is delivered up to the damage, then renamed `*.corrupt` and
//! logged; it never stops the node. Hints for a member that has left the
//! ring go to their keys' current replicas instead (`departed.rs`), both
//! in the replay and in a decommission's hand-over.
//!
//! One delivery at a time ([`HintStore::delivery`]): the replay, a
//! decommission handing its hints over and expiry each take sealed
//! segments, read them and delete them, so two at once would read a file
//! the other just deleted (a decommission under faults failed so).

mod backoff;
mod departed;
mod hand_over;
mod replay;
mod segment;
mod take;
mod writer;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use strata_cluster::{NodeId, Siblings};
use strata_proto::v1::KeyVersions;
use tokio::sync::{mpsc, oneshot};

pub(crate) use hand_over::hand_over_all;
pub use replay::{ReplayError, ReplaySettings, replay_loop};
pub use segment::{Damage, HintRecord, parse};
pub use take::TakeError;

use crate::byte_budget::ByteBudget;
use crate::clock::now_micros;
use crate::metrics::HintMetrics;
use crate::storage::version_to_proto;

/// A segment is sealed and a new one started past this size.
const SEGMENT_BYTES: u64 = 8 << 20;
/// Appends waiting for the writer thread at most; more are dropped.
const QUEUE: usize = 4096;

/// How much the store may hold and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintLimits {
    /// Bytes of hints held for one target at most.
    pub per_target_bytes: u64,
    /// Bytes of hints held in total at most.
    pub total_bytes: u64,
    /// Hints older than this are dropped undelivered.
    pub window: Duration,
    /// Encoded bytes of hints waiting for the writer thread at most; more
    /// are dropped (4096 queued hints of 1 MiB values would be 4 GiB).
    pub queued_bytes: usize,
}

impl Default for HintLimits {
    fn default() -> Self {
        Self {
            per_target_bytes: 256 << 20,
            total_bytes: 1 << 30,
            window: Duration::from_secs(3 * 3600),
            queued_bytes: 64 << 20,
        }
    }
}

/// Why a hint was not stored.
#[derive(Debug, thiserror::Error)]
pub enum HintError {
    /// Storing it would pass a bound.
    #[error(
        "hint store full: {held} bytes held for {target}, {total} in total (limits {per_target} per node, {limit} in total)"
    )]
    Full {
        /// The hint's target.
        target: NodeId,
        /// Bytes held for it.
        held: u64,
        /// Bytes held in total.
        total: u64,
        /// Per-target limit.
        per_target: u64,
        /// Total limit.
        limit: u64,
    },
    /// More hints (or bytes of hints) are queued than the writer keeps up
    /// with.
    #[error("hint store overloaded: more hints wait for the disk than it may queue")]
    Overloaded,
    /// The writer thread is not running.
    #[error("hint store stopped")]
    Stopped,
    /// The disk failed.
    #[error("hint store IO: {0}")]
    Io(String),
}

/// A sealed segment, ready for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSegment {
    /// Its file.
    pub path: PathBuf,
    /// Records it holds (as counted when written or opened).
    pub records: u64,
}

/// What happened to a segment the replay took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentFate {
    /// Every readable record was delivered (or had expired): delete it.
    Delivered,
    /// It is damaged past what was delivered: set it aside as `*.corrupt`.
    Damaged,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    bytes: u64,
    records: u64,
    newest_micros: u64,
    /// The writer thread is appending to it right now (outside the lock):
    /// it is not handed to replay, expired or deleted until that is done.
    writing: bool,
}

#[derive(Debug, Default)]
struct TargetHints {
    sealed: VecDeque<Segment>,
    active: Option<Segment>,
}

impl TargetHints {
    fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.sealed.iter().chain(self.active.as_ref())
    }

    fn bytes(&self) -> u64 {
        self.segments().map(|s| s.bytes).sum()
    }
}

#[derive(Debug, Default)]
struct State {
    targets: BTreeMap<NodeId, TargetHints>,
    next_segment: u64,
}

impl State {
    /// See [`HintStore::seal`].
    fn seal(&mut self, target: &NodeId) -> Vec<SealedSegment> {
        let Some(hints) = self.targets.get_mut(target) else {
            return Vec::new();
        };
        if let Some(active) = hints.active.take() {
            hints.sealed.push_back(active);
        }
        hints
            .sealed
            .iter()
            .filter(|s| !s.writing)
            .map(|s| SealedSegment {
                path: s.path.clone(),
                records: s.records,
            })
            .collect()
    }

    fn totals(&self) -> (u64, u64) {
        self.targets
            .values()
            .flat_map(TargetHints::segments)
            .fold((0, 0), |(r, b), s| (r + s.records, b + s.bytes))
    }
}

pub(super) struct Append {
    target: NodeId,
    record: Vec<u8>,
    stored_at_micros: u64,
    done: oneshot::Sender<Result<(), HintError>>,
}

/// The node's hint store.
#[derive(Debug)]
pub struct HintStore {
    dir: PathBuf,
    limits: HintLimits,
    state: Arc<Mutex<State>>,
    metrics: HintMetrics,
    queue: Option<mpsc::Sender<Append>>,
    /// Bytes of records queued for the writer thread.
    queued: ByteBudget,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Held by whoever takes sealed segments to deliver or expire them.
    delivering: tokio::sync::Mutex<()>,
}

impl Drop for HintStore {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl std::fmt::Debug for Append {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Append")
            .field("target", &self.target)
            .finish()
    }
}

impl HintStore {
    /// Opens the store in `dir`, finding the segments a previous run left.
    /// Unreadable segments are logged and counted, not fatal.
    ///
    /// # Errors
    /// [`HintError::Io`] when the directory cannot be created or listed.
    pub fn open(dir: &Path, limits: HintLimits, metrics: HintMetrics) -> Result<Self, HintError> {
        let io = |e: std::io::Error| HintError::Io(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut state = State::default();
        for target_dir in std::fs::read_dir(dir).map_err(io)? {
            let target_dir = target_dir.map_err(io)?.path();
            let Some(target) = target_dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| NodeId::new(n).ok())
            else {
                continue;
            };
            let mut found = Vec::new();
            for file in std::fs::read_dir(&target_dir).map_err(io)? {
                let path = file.map_err(io)?.path();
                let Some(seq) = segment_number(&path) else {
                    continue;
                };
                found.push((seq, path));
            }
            found.sort();
            let hints = state.targets.entry(target).or_default();
            for (seq, path) in found {
                state.next_segment = state.next_segment.max(seq + 1);
                let bytes = std::fs::read(&path).map_err(io)?;
                let (records, damage) = parse(&bytes);
                if let Some(damage) = damage {
                    tracing::error!(segment = %path.display(), offset = damage.offset, reason = %damage.reason,
                        readable = records.len(), "damaged hint segment: its readable hints will be delivered, the rest is left to anti-entropy");
                }
                hints.sealed.push_back(Segment {
                    path,
                    bytes: bytes.len() as u64,
                    records: records.len() as u64,
                    newest_micros: records
                        .iter()
                        .map(|r| r.stored_at_micros)
                        .max()
                        .unwrap_or(0),
                    writing: false,
                });
            }
        }
        let state = Arc::new(Mutex::new(state));
        let (queue, rx) = mpsc::channel(QUEUE);
        let writer = {
            let (state, dir, metrics) = (Arc::clone(&state), dir.to_path_buf(), metrics.clone());
            std::thread::Builder::new()
                .name("strata-hints".into())
                .spawn(move || writer::run(&dir, limits, &state, &metrics, rx))
                .map_err(io)?
        };
        let store = Self {
            dir: dir.to_path_buf(),
            limits,
            state,
            metrics,
            queue: Some(queue),
            queued: ByteBudget::new(limits.queued_bytes),
            writer: Some(writer),
            delivering: tokio::sync::Mutex::new(()),
        };
        store.publish(&store.lock());
        Ok(store)
    }

    /// The limits the store runs with.
    #[must_use]
    pub fn limits(&self) -> HintLimits {
        self.limits
    }

    /// Stores a hint for `target`: durable when this returns `Ok`.
    ///
    /// # Errors
    /// [`HintError::Full`] past a bound, [`HintError::Overloaded`] when too
    /// many hints are queued, IO errors. Each counts as a dropped hint.
    pub async fn store(
        &self,
        target: &NodeId,
        key: &[u8],
        siblings: &Siblings,
    ) -> Result<(), HintError> {
        let stored_at_micros = now_micros();
        let record = segment::encode(&HintRecord {
            stored_at_micros,
            entry: KeyVersions {
                key: key.to_vec().into(),
                versions: siblings.versions().iter().map(version_to_proto).collect(),
            },
        });
        let queue = self.queue.as_ref().ok_or(HintError::Stopped)?;
        // Held until the writer thread is done with the record. A record
        // larger than the whole bound is taken only into an empty queue.
        let Ok(_share) = self.queued.take(record.len()) else {
            self.metrics.dropped.inc();
            return Err(HintError::Overloaded);
        };
        let (done, result) = oneshot::channel();
        let append = Append {
            target: target.clone(),
            record,
            stored_at_micros,
            done,
        };
        if let Err(e) = queue.try_send(append) {
            self.metrics.dropped.inc();
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => HintError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => HintError::Stopped,
            });
        }
        result.await.map_err(|_| HintError::Stopped)?
    }

    /// Hints held now and their bytes.
    #[must_use]
    pub fn pending(&self) -> (u64, u64) {
        self.lock().totals()
    }

    /// Targets with hints held, and how many each.
    #[must_use]
    pub fn targets(&self) -> Vec<(NodeId, u64)> {
        self.lock()
            .targets
            .iter()
            .map(|(id, t)| (id.clone(), t.segments().map(|s| s.records).sum()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Waits for the sole right to take sealed segments (to deliver,
    /// hand over or expire them) and holds it until the guard drops: a
    /// segment [`HintStore::seal`] returned to the holder is read and
    /// removed by it alone.
    pub async fn delivery(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.delivering.lock().await
    }

    /// Seals `target`'s open segment (later hints go to a new one) and
    /// returns its sealed segments, oldest first, except one the writer is
    /// still appending to (the next call returns it).
    #[must_use]
    pub fn seal(&self, target: &NodeId) -> Vec<SealedSegment> {
        self.lock().seal(target)
    }

    /// Reads a sealed segment.
    ///
    /// # Errors
    /// IO errors reading the file.
    pub fn read(path: &Path) -> std::io::Result<(Vec<HintRecord>, Option<Damage>)> {
        Ok(parse(&std::fs::read(path)?))
    }

    /// Removes a segment the replay finished with: deleted when delivered,
    /// renamed `*.corrupt` (kept for inspection) when damaged.
    pub fn finish(&self, target: &NodeId, path: &Path, fate: SegmentFate) {
        {
            let mut state = self.lock();
            if let Some(hints) = state.targets.get_mut(target) {
                hints.sealed.retain(|s| s.path != path);
            }
            self.publish(&state);
        }
        let result = match fate {
            SegmentFate::Delivered => std::fs::remove_file(path),
            SegmentFate::Damaged => {
                self.metrics.corrupt_segments.inc();
                std::fs::rename(path, path.with_extension("corrupt"))
            }
        };
        if let Err(e) = result {
            tracing::warn!(segment = %path.display(), error = %e, "could not remove a finished hint segment");
        }
    }

    /// Drops every segment whose newest hint is older than the hint window
    /// (all its hints expired), counting them as expired.
    pub fn expire(&self, now_micros: u64) -> u64 {
        let window = u64::try_from(self.limits.window.as_micros()).unwrap_or(u64::MAX);
        let mut state = self.lock();
        let mut expired = 0;
        let mut removed = Vec::new();
        for hints in state.targets.values_mut() {
            let old =
                |s: &Segment| !s.writing && s.newest_micros.saturating_add(window) < now_micros;
            if hints.active.as_ref().is_some_and(old) {
                let active = hints.active.take().expect("checked");
                hints.sealed.push_back(active);
            }
            let (gone, kept): (Vec<_>, Vec<_>) = hints.sealed.drain(..).partition(old);
            hints.sealed = kept.into();
            for s in gone {
                expired += s.records;
                removed.push(s.path);
            }
        }
        state
            .targets
            .retain(|_, t| t.active.is_some() || !t.sealed.is_empty());
        self.metrics.expired.inc_by(expired);
        self.publish(&state);
        drop(state);
        for path in removed {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(segment = %path.display(), error = %e, "could not remove an expired hint segment");
            }
        }
        expired
    }

    /// Whether a hint stored at `stored_at_micros` is past the window.
    #[must_use]
    pub fn is_expired(&self, stored_at_micros: u64, now_micros: u64) -> bool {
        let window = u64::try_from(self.limits.window.as_micros()).unwrap_or(u64::MAX);
        stored_at_micros.saturating_add(window) < now_micros
    }

    /// The counters the store updates.
    #[must_use]
    pub fn metrics(&self) -> &HintMetrics {
        &self.metrics
    }

    /// The store's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn publish(&self, state: &State) {
        publish(&self.metrics, state);
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves sizes that are at worst stale.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn publish(metrics: &HintMetrics, state: &State) {
    let (records, bytes) = state.totals();
    metrics
        .pending
        .set(i64::try_from(records).unwrap_or(i64::MAX));
    metrics
        .pending_bytes
        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
}

fn segment_number(path: &Path) -> Option<u64> {
    if path.extension().and_then(|e| e.to_str()) != Some("hint") {
        return None;
    }
    u64::from_str_radix(path.file_stem()?.to_str()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use strata_cluster::{Dot, Version, VersionVector};

    use super::*;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).expect("id")
    }

    fn siblings(value: &str) -> Siblings {
        Siblings::from_versions([Version {
            dot: Dot {
                node: id("n1"),
                counter: 1,
            },
            context: VersionVector::new(),
            value: Some(value.as_bytes().to_vec().into()),
            timestamp_micros: 1,
            request_id: 0,
        }])
    }

    fn open(dir: &Path, limits: HintLimits) -> (HintStore, HintMetrics) {
        let metrics = HintMetrics::default();
        (
            HintStore::open(dir, limits, metrics.clone()).expect("open"),
            metrics,
        )
    }

    fn delivered_keys(store: &HintStore, target: &NodeId) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        for s in store.seal(target) {
            let (records, damage) = HintStore::read(&s.path).expect("read");
            assert_eq!(damage, None);
            keys.extend(records.into_iter().map(|r| r.entry.key.to_vec()));
            store.finish(target, &s.path, SegmentFate::Delivered);
        }
        keys
    }

    #[tokio::test]
    async fn hints_survive_reopen_and_are_removed_once_delivered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (b, c) = (id("node-b"), id("node-c"));
        {
            let (store, metrics) = open(dir.path(), HintLimits::default());
            for i in 0..10 {
                store
                    .store(&b, format!("k{i}").as_bytes(), &siblings("v"))
                    .await
                    .expect("store");
            }
            store.store(&c, b"kc", &siblings("v")).await.expect("store");
            assert_eq!(metrics.stored.get(), 11);
            assert_eq!(store.pending().0, 11);
        }
        let (store, metrics) = open(dir.path(), HintLimits::default());
        assert_eq!(store.targets(), [(b.clone(), 10), (c.clone(), 1)]);
        assert_eq!(metrics.pending.get(), 11);
        let keys = delivered_keys(&store, &b);
        assert_eq!(
            keys,
            (0..10)
                .map(|i| format!("k{i}").into_bytes())
                .collect::<Vec<_>>()
        );
        assert_eq!(store.targets(), [(c, 1)]);
        // A hint stored after the seal goes to a new segment.
        store
            .store(&b, b"later", &siblings("v"))
            .await
            .expect("store");
        assert_eq!(delivered_keys(&store, &b), [b"later".to_vec()]);
        assert_eq!(metrics.pending.get(), 1);
    }

    #[tokio::test]
    async fn bounds_refuse_hints_instead_of_growing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = HintLimits {
            per_target_bytes: 400,
            total_bytes: 600,
            ..HintLimits::default()
        };
        let (store, metrics) = open(dir.path(), limits);
        let (b, c) = (id("node-b"), id("node-c"));
        let mut stored = 0;
        let err = loop {
            match store.store(&b, b"key", &siblings("value")).await {
                Ok(()) => stored += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(err, HintError::Full { .. }), "{err}");
        assert!(stored > 3, "stored {stored}");
        assert!(store.pending().1 <= 400);
        // The total bound stops another target too.
        let err = loop {
            match store.store(&c, b"key", &siblings("value")).await {
                Ok(()) => {}
                Err(e) => break e,
            }
        };
        assert!(matches!(err, HintError::Full { .. }), "{err}");
        assert!(store.pending().1 <= 600);
        assert_eq!(metrics.dropped.get(), 2);
    }

    #[tokio::test]
    async fn hints_past_the_queue_byte_bound_are_refused_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let value = "v".repeat(1000);
        let record = segment::encode(&HintRecord {
            stored_at_micros: 1,
            entry: KeyVersions {
                key: b"k0".to_vec().into(),
                versions: siblings(&value)
                    .versions()
                    .iter()
                    .map(version_to_proto)
                    .collect(),
            },
        });
        let limits = HintLimits {
            queued_bytes: 3 * record.len() + 10,
            ..HintLimits::default()
        };
        let (store, metrics) = open(dir.path(), limits);
        let b = id("node-b");
        let hints = siblings(&value);
        // Each first poll queues its record and holds its room until it is
        // polled again after the writer is done.
        let keys: Vec<String> = (0..3).map(|i| format!("k{i}")).collect();
        let mut queued: Vec<_> = keys
            .iter()
            .map(|key| Box::pin(store.store(&b, key.as_bytes(), &hints)))
            .collect();
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        for q in &mut queued {
            assert!(q.as_mut().poll(&mut cx).is_pending());
        }
        let refused = store.store(&b, b"k3", &hints).await;
        assert!(matches!(refused, Err(HintError::Overloaded)), "{refused:?}");
        assert_eq!(metrics.dropped.get(), 1);
        for q in queued {
            q.await.expect("stored within the bound");
        }
        store.store(&b, b"k4", &hints).await.expect("room again");
        assert_eq!(store.pending().0, 4);
    }

    #[tokio::test]
    async fn one_delivery_at_a_time_so_a_segment_is_taken_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = open(dir.path(), HintLimits::default());
        let b = id("node-b");
        store.store(&b, b"k", &siblings("v")).await.expect("store");
        let first = store.delivery().await;
        let sealed = store.seal(&b);
        assert_eq!(sealed.len(), 1);
        // A second taker (a decommission handing hints over while the
        // replay delivers them) waits for the first to finish...
        let mut second = Box::pin(store.delivery());
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        assert!(second.as_mut().poll(&mut cx).is_pending());
        store.finish(&b, &sealed[0].path, SegmentFate::Delivered);
        drop(first);
        // ...and then finds nothing left to take, not a deleted file.
        let _second = second.await;
        assert!(store.seal(&b).is_empty());
        assert!(store.targets().is_empty());
    }

    #[tokio::test]
    async fn hints_past_the_window_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = HintLimits {
            window: Duration::from_secs(60),
            ..HintLimits::default()
        };
        let (store, metrics) = open(dir.path(), limits);
        let b = id("node-b");
        store.store(&b, b"k", &siblings("v")).await.expect("store");
        let now = now_micros();
        assert_eq!(store.expire(now), 0);
        assert!(!store.is_expired(now, now + 59_000_000));
        assert!(store.is_expired(now, now + 61_000_000));
        assert_eq!(store.expire(now + 61_000_000), 1);
        assert_eq!(metrics.expired.get(), 1);
        assert_eq!(store.pending(), (0, 0));
        assert!(store.targets().is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("node-b"))
                .expect("dir")
                .count(),
            0,
            "segment deleted"
        );
    }

    #[tokio::test]
    async fn a_damaged_segment_opens_and_keeps_its_readable_hints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = id("node-b");
        {
            let (store, _) = open(dir.path(), HintLimits::default());
            for key in [&b"first"[..], b"second", b"third"] {
                store.store(&b, key, &siblings("v")).await.expect("store");
            }
        }
        let segment = std::fs::read_dir(dir.path().join("node-b"))
            .expect("dir")
            .next()
            .expect("one segment")
            .expect("entry")
            .path();
        let mut bytes = std::fs::read(&segment).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xFF;
        std::fs::write(&segment, bytes).expect("write");

        let (store, metrics) = open(dir.path(), HintLimits::default());
        let sealed = store.seal(&b);
        assert_eq!(sealed.len(), 1);
        let (records, damage) = HintStore::read(&sealed[0].path).expect("read");
        assert_eq!(records.len(), 1, "the record before the damage");
        assert!(damage.is_some());
        store.finish(&b, &sealed[0].path, SegmentFate::Damaged);
        assert!(segment.with_extension("corrupt").exists());
        assert_eq!(metrics.corrupt_segments.get(), 1);
        assert!(store.targets().is_empty());
        // A reopen ignores the set-aside file.
        drop(store);
        let (store, _) = open(dir.path(), HintLimits::default());
        assert!(store.targets().is_empty());
    }
}
