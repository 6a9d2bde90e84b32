//! Merkle-tree anti-entropy.
//!
//! A repair walks the token ranges this node replicates (or only those it
//! is the first replica of, on the schedule: each range is then repaired
//! by one node per interval). For each range it builds its own tree once
//! (`trees.rs`) and runs an exchange (`session.rs`) with every other live
//! replica: roots first, then only differing subtrees, then the keys of
//! differing leaves, merged both ways. Transfers are throttled in bytes
//! per second. Progress is an `Operation` (`GetProgress`), metrics, and
//! the last completed repair's time in `NodeStatus`.

mod session;
pub mod trees;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use strata_cluster::{NodeId, TokenRange};
use strata_proto::v1::{Operation, OperationKind, OperationState};

pub use session::Exchange;
pub use trees::TreeCache;

use crate::clock::now_micros;
use crate::context::Context;
use crate::metrics::RepairMetrics;
use crate::throttle::Throttle;

/// How anti-entropy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairSettings {
    /// Merkle tree depth per range (`2^depth` leaves).
    pub depth: u32,
    /// Transfer limit, bytes per second (0: unlimited).
    pub bytes_per_second: u64,
    /// Time between scheduled repairs (`None`: only on demand).
    pub interval: Option<Duration>,
    /// Deadline of one RPC to a peer.
    pub timeout: Duration,
}

/// Why a repair could not start.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// One is running already.
    #[error("repair {0} is already running on this node")]
    Running(String),
}

/// Finished operations remembered for `GetProgress`.
const REMEMBERED: usize = 16;

#[derive(Debug, Default)]
struct State {
    operations: VecDeque<Operation>,
    running: Option<String>,
    last_completed_micros: u64,
}

/// Runs this node's repairs.
#[derive(Debug)]
pub struct Repairer {
    ctx: Arc<Context>,
    settings: RepairSettings,
    metrics: RepairMetrics,
    trees: TreeCache,
    state: Mutex<State>,
}

impl Repairer {
    /// A repairer for the node `ctx` describes.
    #[must_use]
    pub fn new(ctx: Arc<Context>, settings: RepairSettings) -> Self {
        let metrics = ctx.metrics.repair();
        Self {
            ctx,
            settings,
            metrics,
            trees: TreeCache::default(),
            state: Mutex::new(State::default()),
        }
    }

    /// Trees built for peers' sessions.
    #[must_use]
    pub fn trees(&self) -> &TreeCache {
        &self.trees
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> RepairSettings {
        self.settings
    }

    /// Wall-clock microseconds of the last completed repair (0: never).
    #[must_use]
    pub fn last_completed_micros(&self) -> u64 {
        self.lock().last_completed_micros
    }

    /// Operations, newest first; only `id` when it is not empty.
    #[must_use]
    pub fn operations(&self, id: &str) -> Vec<Operation> {
        self.lock()
            .operations
            .iter()
            .rev()
            .filter(|o| id.is_empty() || o.id == id)
            .cloned()
            .collect()
    }

    /// Starts a repair of `ranges` (empty: every range this node
    /// replicates; `primary_only`: just those it is the first replica of)
    /// in the background and returns its operation.
    ///
    /// # Errors
    /// [`RepairError::Running`] when a repair is in progress.
    pub fn start(
        self: &Arc<Self>,
        ranges: &[TokenRange],
        primary_only: bool,
    ) -> Result<Operation, RepairError> {
        let view = self.ctx.view();
        let me = self.ctx.id.clone();
        let n = self.ctx.n();
        let plan: Vec<(TokenRange, Vec<NodeId>)> = view
            .ring()
            .replicated_ranges(&me, n, primary_only)
            .into_iter()
            .filter(|(r, _)| ranges.is_empty() || ranges.iter().any(|q| overlaps(*q, *r)))
            .collect();
        let now = now_micros();
        let operation = {
            let mut state = self.lock();
            if let Some(id) = &state.running {
                return Err(RepairError::Running(id.clone()));
            }
            let operation = Operation {
                id: format!("repair-{me}-{now}"),
                kind: OperationKind::Repair as i32,
                state: OperationState::Running as i32,
                node_id: me.to_string(),
                ranges_total: plan.len() as u64,
                started_at_micros: now,
                updated_at_micros: now,
                ..Operation::default()
            };
            state.running = Some(operation.id.clone());
            state.operations.push_back(operation.clone());
            while state.operations.len() > REMEMBERED {
                state.operations.pop_front();
            }
            operation
        };
        self.metrics
            .ranges_pending
            .set(i64::try_from(plan.len()).unwrap_or(i64::MAX));
        tracing::info!(id = %operation.id, ranges = plan.len(), primary_only, "repair started");
        // Every range this node replicates: what tombstone GC waits for.
        let full = ranges.is_empty() && !primary_only;
        tokio::spawn(Arc::clone(self).run(operation.id.clone(), plan, full.then_some(now)));
        Ok(operation)
    }

    /// Repairs this node's primary ranges every interval until `stop`.
    pub async fn schedule(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let Some(interval) = self.settings.interval else {
            stop.await;
            return;
        };
        let work = async {
            loop {
                tokio::time::sleep(interval).await;
                // Tombstone GC waits for a repair of every range this
                // node replicates once every member is up
                // (`tombstone_gate.rs`); otherwise the primary ones.
                let primary_only = !self.ctx.storage.tombstone_gate().wants_full_repair();
                if let Err(e) = self.start(&[], primary_only) {
                    tracing::info!(error = %e, "scheduled repair skipped");
                }
            }
        };
        tokio::select! {
            () = work => {}
            () = stop => {}
        }
    }

    /// Runs `plan`; `full`: it covers every range this node replicates
    /// and started then (wall-clock microseconds).
    async fn run(
        self: Arc<Self>,
        id: String,
        plan: Vec<(TokenRange, Vec<NodeId>)>,
        full: Option<u64>,
    ) {
        let me = self.ctx.id.clone();
        let storage = Arc::clone(&self.ctx.storage);
        let mut throttle = Throttle::new(self.settings.bytes_per_second);
        let mut failures: Vec<String> = Vec::new();
        let total = plan.len();
        for (done, (range, replicas)) in plan.into_iter().enumerate() {
            let building = Arc::clone(&storage);
            let depth = self.settings.depth;
            let local =
                match tokio::task::spawn_blocking(move || trees::build(&building, range, depth))
                    .await
                {
                    Ok(Ok(tree)) => tree,
                    Ok(Err(e)) => {
                        failures.push(format!("building the tree of {range:?}: {e}"));
                        continue;
                    }
                    Err(e) => {
                        failures.push(e.to_string());
                        continue;
                    }
                };
            let mut outcome = Exchange::default();
            for peer in replicas.iter().filter(|p| **p != me) {
                let view = self.ctx.view();
                let address = match view.node(peer) {
                    Some(n) if n.alive && !n.internal_address.is_empty() => {
                        n.internal_address.clone()
                    }
                    _ => {
                        failures.push(format!("{peer} is down"));
                        continue;
                    }
                };
                let channel = match self.ctx.peers.channel(&address) {
                    Ok(c) => c,
                    Err(e) => {
                        failures.push(format!("with {peer}: {e}"));
                        continue;
                    }
                };
                match session::exchange(
                    &storage,
                    channel,
                    &local,
                    range,
                    &mut throttle,
                    self.settings.timeout,
                )
                .await
                {
                    Ok(e) => {
                        outcome.differing_leaves += e.differing_leaves;
                        outcome.keys_in += e.keys_in;
                        outcome.keys_out += e.keys_out;
                        outcome.bytes += e.bytes;
                    }
                    Err(e) => failures.push(format!("with {peer}: {e}")),
                }
            }
            let keys = outcome.keys_in + outcome.keys_out;
            self.metrics.ranges.inc();
            self.metrics.keys.inc_by(keys);
            self.metrics.bytes.inc_by(outcome.bytes);
            self.metrics
                .ranges_pending
                .set(i64::try_from(total - done - 1).unwrap_or(0));
            self.update(&id, |o| {
                o.ranges_done += 1;
                o.keys_transferred += keys;
                o.bytes_transferred += outcome.bytes;
            });
        }
        let finished = now_micros();
        let failed = !failures.is_empty();
        let error = if failed {
            format!(
                "{} exchanges failed; first: {}",
                failures.len(),
                failures[0]
            )
        } else {
            String::new()
        };
        self.update(&id, |o| {
            o.state = if failed {
                OperationState::Failed
            } else {
                OperationState::Succeeded
            } as i32;
            o.error.clone_from(&error);
        });
        {
            let mut state = self.lock();
            state.running = None;
            if !failed {
                state.last_completed_micros = finished;
            }
        }
        if let (false, Some(started)) = (failed, full) {
            self.ctx.storage.tombstone_gate().repaired(started);
        }
        self.metrics.ranges_pending.set(0);
        if failed {
            self.metrics.failed.inc();
            tracing::warn!(%id, %error, "repair finished with failures");
        } else {
            self.metrics.completed.inc();
            self.metrics
                .last_completed_seconds
                .set(i64::try_from(finished / 1_000_000).unwrap_or(i64::MAX));
            tracing::info!(%id, "repair completed");
        }
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Operation)) {
        let mut state = self.lock();
        if let Some(o) = state.operations.iter_mut().find(|o| o.id == id) {
            change(o);
            o.updated_at_micros = now_micros();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether two `(start, end]` ranges share a token.
fn overlaps(a: TokenRange, b: TokenRange) -> bool {
    a.contains(b.end) || b.contains(a.end)
}
