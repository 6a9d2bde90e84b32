//! Topology changes this node runs: joining the ring (`join.rs`),
//! leaving it (`leave.rs`), removing a dead member (`remove.rs`) and
//! deleting ranges it no longer replicates (`cleanup.rs`). Each waits
//! until every live member routes with the new state (`agreement.rs`)
//! before it streams, and reports done only once the end state is routed
//! everywhere.
//!
//! A change is level-triggered and resumable. Its state lives in gossip
//! (the `joining`/`leaving` states and departures, which every coordinator
//! turns into pending owners) and in `<data_dir>/RING`, its progress in
//! `<data_dir>/CHANGE` (`progress.rs`): a node killed mid-change resumes
//! without streaming a finished range again. One change at a time, checked
//! against gossiped state; two started at once are settled by id. A node
//! runs one operation at a time; a cleanup yields it to a change.
//! Streaming (`stream.rs`) is throttled (`--stream-bytes-per-sec`) and
//! reported as an `Operation` (`Admin.GetProgress`) and as `strata_stream_*`
//! metrics.

mod agreement;
mod busy;
mod cleanup;
mod in_progress;
mod join;
mod leave;
mod progress;
mod rejoin_file;
mod remove;
mod runs;
mod stream;

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_cluster::{
    ClusterView, Departure, NodeId, NodeState, Rejoin, Transfer, rejoin_transfers, tokens_for,
    transfers,
};
use strata_proto::v1::{
    GetRingRequest, Operation, OperationKind, OperationState, admin_client::AdminClient,
};

use crate::clock::now_micros;
use crate::context::Context;
use crate::hints::hand_over_all;
use crate::membership::Membership;
use crate::metrics::StreamMetrics;
use crate::throttle::Throttle;
use in_progress::{
    change_anywhere, change_elsewhere, live_change_elsewhere, removal_waits_for, rival,
};

pub use stream::{Copied, StreamError, batch_bytes};

pub(crate) use rejoin_file::load as load_rejoin;
pub(crate) use runs::{RunError, Runs};

use busy::Busy;
use futures::StreamExt as _;
use progress::Progress;
use stream::{Sink, Source, copy_range};

/// Ranges streamed at once: hides each range's fixed costs (opening the
/// stream, the last run's fsyncs) and spreads the work over cores.
const PARALLEL_RANGES: usize = 4;

/// Which of a transfer's sources are copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Copies {
    /// The first that answers: a join, decommission or removal, where the
    /// owner losing the range comes first (consistent range movement).
    First,
    /// Every one: a rejoin after lost data, where a write may survive on
    /// one of the other replicas only.
    Every,
}

/// A rejoin's source that failed: since when, and whether the rejoin
/// has said it goes on without it.
#[derive(Debug, Clone, Copy)]
struct DownSource {
    since: Instant,
    left_out: bool,
}

impl DownSource {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            left_out: false,
        }
    }
}

/// A transfer's sources as `ends` resolves them: the reachable ones, by
/// id.
type Sources = Vec<(NodeId, Source)>;

/// How changes stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    /// Streaming limit in bytes per second (0: unlimited).
    pub bytes_per_second: u64,
    /// Upper bound on one streamed batch ([`batch_bytes`] of the limit).
    pub batch_bytes: usize,
    /// Deadline of one batch.
    pub timeout: Duration,
    /// Tokens this node claims.
    pub vnodes: usize,
    /// How long a rejoin waits for a source that is down or failing, once
    /// another source of the range was copied, before it goes on without
    /// it (for that range and every later one, until it answers again):
    /// `--rejoin-source-wait-secs`.
    pub source_patience: Duration,
}

/// Why a change cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The cluster's state forbids it now; the message says why.
    #[error("{0}")]
    Refused(String),
}

/// Finished operations remembered for `GetProgress`.
const REMEMBERED: usize = 16;

/// How long a change waits for a cleanup running here to stop (it stops
/// within a batch of deletes, or once its ring check returns), or for a
/// join that has announced `normal` to be routed, before it is refused:
/// less than a client's default deadline (10 s), so the caller hears the
/// outcome.
const BUSY_WAIT: Duration = Duration::from_secs(8);

/// Runs this node's topology changes.
#[derive(Debug)]
pub struct Changes {
    ctx: Arc<Context>,
    membership: Arc<Membership>,
    data_dir: PathBuf,
    settings: StreamSettings,
    metrics: StreamMetrics,
    ops: Mutex<Ops>,
    /// A cleanup is deleting ranges right now.
    cleaning: std::sync::atomic::AtomicBool,
    /// A change on this node asks the running cleanup to stop.
    stop_cleanup: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Debug, Default)]
struct Ops {
    running: Option<Operation>,
    finished: VecDeque<Operation>,
}

impl Changes {
    /// A runner for the node `ctx` describes, announcing through
    /// `membership` and keeping progress in `data_dir`.
    #[must_use]
    pub fn new(
        ctx: Arc<Context>,
        membership: Arc<Membership>,
        data_dir: PathBuf,
        settings: StreamSettings,
    ) -> Self {
        let metrics = ctx.metrics.stream();
        Self {
            ctx,
            membership,
            data_dir,
            settings,
            metrics,
            ops: Mutex::default(),
            cleaning: std::sync::atomic::AtomicBool::new(false),
            stop_cleanup: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// Operations, the running one first, then finished ones newest
    /// first; only `id` when it is not empty.
    #[must_use]
    pub fn operations(&self, id: &str) -> Vec<Operation> {
        let ops = self.lock();
        ops.running
            .iter()
            .chain(ops.finished.iter().rev())
            .filter(|o| id.is_empty() || o.id == id)
            .cloned()
            .collect()
    }

    /// Whether a cleanup is deleting ranges right now (changes elsewhere
    /// wait for it to stop before streaming).
    #[must_use]
    pub fn cleaning(&self) -> bool {
        self.cleaning.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The change in progress on this node, if any.
    #[must_use]
    pub fn running(&self) -> Option<Operation> {
        self.lock().running.clone()
    }

    fn own_state(&self) -> Option<NodeState> {
        self.ctx.view().node(&self.ctx.id).map(|n| n.state)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ops> {
        self.ops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes a new `kind` operation the running one, or returns the one
    /// running already; checked and set under one lock, so two requests
    /// at once cannot both start.
    fn try_begin(&self, kind: OperationKind) -> Result<Operation, Box<Operation>> {
        let mut ops = self.lock();
        if let Some(running) = &ops.running {
            return Err(Box::new(running.clone()));
        }
        let now = now_micros();
        let op = Operation {
            id: format!("{}-{}-{now:x}", kind_name(kind), self.ctx.id),
            kind: kind as i32,
            state: OperationState::Pending as i32,
            node_id: self.ctx.id.to_string(),
            started_at_micros: now,
            updated_at_micros: now,
            ..Operation::default()
        };
        if kind == OperationKind::Cleanup {
            self.stop_cleanup
                .store(false, std::sync::atomic::Ordering::Release);
        }
        ops.running = Some(op.clone());
        Ok(op)
    }

    /// Makes a new topology change `kind` the running operation. A
    /// cleanup running here yields to it: it is asked to stop and awaited
    /// (it runs again by itself once the ring settles); a join that only
    /// waits for its `normal` to be routed is awaited (`busy.rs`). Any
    /// other operation running here, or one of those still running after
    /// `BUSY_WAIT`, is returned.
    async fn take_slot(&self, kind: OperationKind) -> Result<Operation, Box<Operation>> {
        let deadline = tokio::time::Instant::now() + BUSY_WAIT;
        loop {
            let running = match self.try_begin(kind) {
                Err(running) if tokio::time::Instant::now() < deadline => running,
                outcome => return outcome,
            };
            match busy::when_busy(&running, kind, self.own_state()) {
                Busy::StopCleanup => self
                    .stop_cleanup
                    .store(true, std::sync::atomic::Ordering::Release),
                Busy::AwaitEnd => {}
                Busy::Refuse => return Err(running),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The refusal of a `wanted` change because `running` runs here.
    fn busy(&self, running: &Operation, wanted: OperationKind) -> ChangeError {
        busy::refusal(running, wanted, self.ctx.id.as_str())
    }

    /// Drops `op`, claimed but refused before it started: it is not
    /// reported as an operation that ran.
    fn abandon(&self, op: &Operation) {
        let mut ops = self.lock();
        if ops.running.as_ref().is_some_and(|r| r.id == op.id) {
            ops.running = None;
        }
    }

    /// Ends the running operation without a record of it (an automatic
    /// cleanup that found nothing to delete).
    fn forget_running(&self) {
        self.lock().running = None;
        self.metrics.ranges_pending.set(0);
    }

    fn update(&self, change: impl FnOnce(&mut Operation)) {
        let mut ops = self.lock();
        if let Some(op) = ops.running.as_mut() {
            change(op);
            op.updated_at_micros = now_micros();
        }
    }

    fn finish(&self, outcome: Result<(), String>) {
        let mut ops = self.lock();
        if let Some(mut op) = ops.running.take() {
            match outcome {
                Ok(()) => {
                    op.state = OperationState::Succeeded as i32;
                    op.error.clear();
                }
                Err(e) => {
                    op.state = OperationState::Failed as i32;
                    op.error = e;
                }
            }
            op.updated_at_micros = now_micros();
            ops.finished.push_back(op);
            while ops.finished.len() > REMEMBERED {
                ops.finished.pop_front();
            }
        }
        self.metrics.ranges_pending.set(0);
    }

    /// Notes why the change is waiting, without failing it.
    fn waiting(&self, why: &str) {
        self.update(|op| {
            op.state = OperationState::Running as i32;
            why.clone_into(&mut op.error);
        });
    }

    /// Streams every transfer not done yet, resolving its sources and
    /// sinks with `ends` each attempt (a failed source is replaced by the
    /// next; with none available, the change waits and retries).
    async fn stream_all(
        &self,
        moves: &[Transfer],
        progress: &mut Progress,
        copies: Copies,
        ends: impl Fn(&Transfer) -> (Sources, Vec<Sink>, &'static str),
    ) -> Result<(), String> {
        let total = moves.len();
        let done_before = moves.iter().filter(|t| progress.is_done(t)).count();
        if progress.done() > 0 {
            tracing::info!(
                done = done_before,
                total,
                "resuming a change: finished ranges are not streamed again"
            );
        }
        self.update(|op| {
            op.ranges_total = total as u64;
            op.ranges_done = done_before as u64;
            op.ranges_resumed = done_before as u64;
        });
        let throttle = Mutex::new(Throttle::new(self.settings.bytes_per_second));
        let down = Mutex::new(HashMap::new());
        let streaming = Instant::now();
        let mut left = total - done_before;
        self.metrics
            .ranges_pending
            .set(i64::try_from(left).unwrap_or(i64::MAX));
        let pending: Vec<&Transfer> = moves.iter().filter(|t| !progress.is_done(t)).collect();
        let mut queue = pending.into_iter();
        let (ends, throttle, down) = (&ends, &throttle, &down);
        let copy = |transfer| async move {
            match copies {
                Copies::First => self.stream_one(transfer, ends, throttle).await,
                Copies::Every => self.stream_every(transfer, ends, throttle, down).await,
            }
        };
        let mut running = futures::stream::FuturesUnordered::new();
        for transfer in queue.by_ref().take(PARALLEL_RANGES) {
            running.push(copy(transfer));
        }
        while let Some(transfer) = running.next().await {
            if let Some(next) = queue.next() {
                running.push(copy(next));
            }
            progress
                .finish(transfer)
                .map_err(|e| format!("progress file: {e}"))?;
            left -= 1;
            self.metrics.ranges.inc();
            self.metrics
                .ranges_pending
                .set(i64::try_from(left).unwrap_or(i64::MAX));
            self.update(|op| {
                op.ranges_done += 1;
                op.error.clear();
                op.streaming_micros =
                    u64::try_from(streaming.elapsed().as_micros()).unwrap_or(u64::MAX);
            });
        }
        Ok(())
    }

    /// Streams one transfer, trying each source in turn and waiting while
    /// none is available, until it is copied.
    async fn stream_one<'t>(
        &self,
        transfer: &'t Transfer,
        ends: &impl Fn(&Transfer) -> (Sources, Vec<Sink>, &'static str),
        throttle: &Mutex<Throttle>,
    ) -> &'t Transfer {
        loop {
            let (sources, sinks, none) = ends(transfer);
            let (Some(sink), false) = (sinks.first(), sources.is_empty()) else {
                self.waiting(none);
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            for (_, source) in &sources {
                match self.copy_one(transfer, source, sink, throttle).await {
                    Ok(()) => return transfer,
                    // The member gaining the range failed: another source
                    // would meet it too (and a source later in the list
                    // may hold less than the first).
                    Err(e @ StreamError::Sink(_)) => {
                        tracing::warn!(range = ?transfer.range, to = %transfer.to, error = %e,
                            "streaming a range failed at its new owner; retrying");
                        self.waiting(&format!("retrying a range: {e}"));
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(range = ?transfer.range, to = %transfer.to, error = %e,
                            "streaming a range failed; trying another source");
                        self.waiting(&format!("retrying a range: {e}"));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Streams one transfer from each of its sources ([`Copies::Every`]),
    /// waiting for one that is down or failing; once another was copied,
    /// a source down for `source_patience` is left out: what only it
    /// holds comes back by repair. `down` is shared by the change's
    /// transfers, so each source that fails is reported once, and once
    /// more when it is left out, not once per range.
    async fn stream_every<'t>(
        &self,
        transfer: &'t Transfer,
        ends: &impl Fn(&Transfer) -> (Sources, Vec<Sink>, &'static str),
        throttle: &Mutex<Throttle>,
        down: &Mutex<HashMap<NodeId, DownSource>>,
    ) -> &'t Transfer {
        let mut copied: Vec<NodeId> = Vec::new();
        loop {
            let (sources, sinks, none) = ends(transfer);
            if let Some(sink) = sinks.first() {
                for (id, source) in &sources {
                    if copied.contains(id) {
                        continue;
                    }
                    let result = self.copy_one(transfer, source, sink, throttle).await;
                    let mut down = down.lock().expect("down sources");
                    match result {
                        Ok(()) => {
                            copied.push(id.clone());
                            down.remove(id);
                        }
                        Err(e) => {
                            if !down.contains_key(id) {
                                tracing::warn!(source = %id, error = %e,
                                    "copying ranges back from a replica failed; \
                                     waiting for it");
                                down.insert(id.clone(), DownSource::new());
                            }
                        }
                    }
                }
            }
            let now = Instant::now();
            let missing: Vec<&NodeId> = transfer
                .sources
                .iter()
                .filter(|s| !copied.contains(s))
                .collect();
            let waiting_for: Vec<&NodeId> = {
                let mut down = down.lock().expect("down sources");
                let mut waiting_for = Vec::new();
                for &id in &missing {
                    let source = down.entry(id.clone()).or_insert_with(DownSource::new);
                    if copied.is_empty()
                        || now.duration_since(source.since) < self.settings.source_patience
                    {
                        waiting_for.push(id);
                    } else if !std::mem::replace(&mut source.left_out, true) {
                        tracing::warn!(source = %id,
                            "copying ranges back without a replica down for longer than \
                             --rejoin-source-wait-secs; \
                             run `strata repair` on this node once it is back");
                    }
                }
                waiting_for
            };
            if waiting_for.is_empty() {
                return transfer;
            }
            let names: Vec<&str> = waiting_for.iter().map(|id| id.as_str()).collect();
            self.waiting(&if sinks.is_empty() {
                none.to_owned()
            } else {
                format!(
                    "waiting to copy a range from {} (down or failing)",
                    names.join(", ")
                )
            });
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Copies `transfer`'s range from `source` into `sink`, counted.
    async fn copy_one(
        &self,
        transfer: &Transfer,
        source: &Source,
        sink: &Sink,
        throttle: &Mutex<Throttle>,
    ) -> Result<(), StreamError> {
        let mut report = |copied: Copied| {
            self.metrics.keys.inc_by(copied.keys);
            self.metrics.bytes.inc_by(copied.bytes);
            self.update(|op| {
                op.keys_transferred += copied.keys;
                op.bytes_transferred += copied.bytes;
            });
        };
        copy_range(
            transfer.range,
            source,
            sink,
            throttle,
            self.settings.batch_bytes,
            self.settings.timeout,
            &mut report,
        )
        .await
        .map(|_| ())
    }
}

fn proto_state(state: i32) -> NodeState {
    use strata_proto::v1::NodeState as Wire;
    match Wire::try_from(state) {
        Ok(Wire::Joining) => NodeState::Joining,
        Ok(Wire::Leaving) => NodeState::Leaving,
        Ok(Wire::Left) => NodeState::Left,
        _ => NodeState::Normal,
    }
}

fn kind_name(kind: OperationKind) -> &'static str {
    match kind {
        OperationKind::Join => "join",
        OperationKind::Decommission => "decommission",
        OperationKind::Repair => "repair",
        OperationKind::RemoveNode => "removenode",
        OperationKind::Cleanup => "cleanup",
        OperationKind::Unspecified => "operation",
    }
}
