//! Topology changes this node runs on itself: joining the ring
//! (bootstrap) and leaving it (decommission).
//!
//! A change is level-triggered and resumable. Its state lives in gossip
//! (this node's `joining`/`leaving` state, which every coordinator turns
//! into pending owners) and in `<data_dir>/RING` (this node's own record),
//! its progress in `<data_dir>/CHANGE` (`progress.rs`). The steps:
//!
//! - **Join:** wait until no other change is in progress anywhere, claim
//!   the tokens as `joining`, wait until every live member routes with
//!   that, stream every range gained (`strata_cluster::transfers`) from a
//!   live current owner into the local store (`stream.rs`), become
//!   `normal`.
//! - **Decommission:** refuse when fewer than N normal members would remain
//!   or another change is in progress; announce `leaving`, wait until every
//!   live member routes with that, push each range to the member that gains
//!   it (waiting while that member is down), hand the hints held here to
//!   their targets (or, for a target that is down, to a live node that
//!   keeps them for it), become `left`.
//!
//! Streaming is throttled (`--stream-bytes-per-sec`) and reported as an
//! `Operation` (`Admin.GetProgress`) and as `strata_stream_*` metrics.

mod progress;
mod stream;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_cluster::{
    ClusterView, Departure, NodeId, NodeState, Siblings, Transfer, tokens_for, transfers,
};
use strata_proto::v1::{
    GetRingRequest, Operation, OperationKind, OperationState, admin_client::AdminClient,
};

use crate::clock::now_micros;
use crate::context::Context;
use crate::hints::{HintStore, SegmentFate};
use crate::membership::Membership;
use crate::metrics::StreamMetrics;
use crate::storage::version_from_proto;
use crate::throttle::Throttle;
use crate::transport::RemoteReplica;

pub use stream::{Copied, StreamError};

use progress::Progress;
use stream::{Sink, Source, copy_range};

/// How changes stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSettings {
    /// Streaming limit in bytes per second (0: unlimited).
    pub bytes_per_second: u64,
    /// Upper bound on one streamed batch.
    pub batch_bytes: usize,
    /// Deadline of one batch.
    pub timeout: Duration,
    /// Tokens this node claims.
    pub vnodes: usize,
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

    /// Starts (or resumes) joining the ring in the background.
    ///
    /// # Errors
    /// [`ChangeError::Refused`] when this node is already an owner or runs
    /// another change.
    pub fn join(self: &Arc<Self>) -> Result<Operation, ChangeError> {
        if let Some(op) = self.running() {
            if op.kind == OperationKind::Join as i32 {
                return Ok(op);
            }
            return Err(ChangeError::Refused(format!(
                "this node is running operation {} already",
                op.id
            )));
        }
        match self.own_state() {
            Some(NodeState::Normal) => {
                return Err(ChangeError::Refused(
                    "this node is already a normal member of the ring".into(),
                ));
            }
            Some(NodeState::Leaving | NodeState::Left) => {
                return Err(ChangeError::Refused(
                    "this node is leaving or has left the ring".into(),
                ));
            }
            _ => {}
        }
        let op = self.begin(OperationKind::Join);
        let this = Arc::clone(self);
        tokio::spawn(async move { this.run_join().await });
        Ok(op)
    }

    /// Starts (or resumes) leaving the ring in the background.
    ///
    /// # Errors
    /// [`ChangeError::Refused`] with the reason: not a normal member, fewer
    /// than N normal members would remain, or another change is in
    /// progress anywhere in the cluster.
    pub fn decommission(self: &Arc<Self>) -> Result<Operation, ChangeError> {
        if let Some(op) = self.running() {
            if op.kind == OperationKind::Decommission as i32 {
                return Ok(op);
            }
            return Err(ChangeError::Refused(format!(
                "this node is running operation {} already",
                op.id
            )));
        }
        let view = self.ctx.view();
        if self.own_state() != Some(NodeState::Leaving) {
            self.check_decommission(&view)?;
        }
        let op = self.begin(OperationKind::Decommission);
        let this = Arc::clone(self);
        tokio::spawn(async move { this.run_decommission().await });
        Ok(op)
    }

    /// Starts removing `target`, a member that is down for good: its
    /// ranges are copied from the surviving replicas to their new owners
    /// (this node orchestrates), then it is `Left` everywhere.
    ///
    /// # Errors
    /// [`ChangeError::Refused`] with the reason: unknown, this node, up
    /// (decommission it instead), fewer than N normal members would
    /// remain, or another change is in progress.
    pub async fn remove_node(self: &Arc<Self>, target: &NodeId) -> Result<Operation, ChangeError> {
        if let Some(op) = self.running() {
            return Err(ChangeError::Refused(format!(
                "this node is running operation {} already",
                op.id
            )));
        }
        if *target == self.ctx.id {
            return Err(ChangeError::Refused(
                "a node cannot remove itself; decommission it".into(),
            ));
        }
        let view = self.ctx.view();
        let Some(node) = view.node(target) else {
            return Err(ChangeError::Refused(format!(
                "no member {target} in the ring"
            )));
        };
        if node.alive {
            return Err(ChangeError::Refused(format!(
                "{target} is up: decommission it instead (removal is for a node that is gone for good)"
            )));
        }
        if node.state == NodeState::Left {
            return Err(ChangeError::Refused(format!("{target} has already left")));
        }
        if let Some(change) = change_elsewhere(&view, target) {
            return Err(ChangeError::Refused(format!(
                "another topology change is in progress ({change}); one at a time"
            )));
        }
        let normal = view
            .nodes()
            .filter(|(_, n)| matches!(n.state, NodeState::Normal | NodeState::Leaving))
            .count();
        let n = self.ctx.n();
        if normal <= n {
            return Err(ChangeError::Refused(format!(
                "{normal} members with replication factor {n}: without {target} fewer than {n} \
                 would remain to hold every range"
            )));
        }
        let known = self.membership.known().await;
        let incarnation = known
            .members()
            .find(|(id, _)| *id == target)
            .map_or(0, |(_, m)| m.incarnation);
        let op = self.begin(OperationKind::RemoveNode);
        let this = Arc::clone(self);
        let target = target.clone();
        tokio::spawn(async move { this.run_removal(target, incarnation).await });
        Ok(op)
    }

    /// Resumes a removal this node was orchestrating when it stopped.
    pub async fn resume_removal(self: &Arc<Self>) {
        let Some(target) = progress::pending_removal(&self.data_dir) else {
            return;
        };
        let known = self.membership.known().await;
        let Some(incarnation) = known
            .members()
            .find(|(id, _)| **id == target)
            .map(|(_, m)| m.incarnation)
        else {
            return;
        };
        tracing::info!(%target, "resuming the removal of a node");
        self.begin(OperationKind::RemoveNode);
        let this = Arc::clone(self);
        tokio::spawn(async move { this.run_removal(target, incarnation).await });
    }

    async fn run_removal(self: Arc<Self>, target: NodeId, incarnation: u64) {
        let outcome = self.removal_steps(&target, incarnation).await;
        if let Err(e) = &outcome {
            tracing::error!(%target, error = %e, "removal failed");
        }
        self.finish(outcome);
    }

    async fn removal_steps(&self, target: &NodeId, incarnation: u64) -> Result<(), String> {
        let me = self.ctx.id.clone();
        let op_id = self.running().map(|o| o.id).unwrap_or_default();
        let mut progress = Progress::open(&self.data_dir, &progress::removal_kind(target), &op_id)
            .map_err(|e| format!("progress file: {e}"))?;
        self.update(|op| {
            op.id.clone_from(&progress.id);
            op.node_id = target.to_string();
        });
        let depart = |state| Departure {
            id: target.clone(),
            incarnation,
            state,
        };
        self.membership.depart(depart(NodeState::Leaving)).await;
        self.wait_until_seen(target, |state, _| state == NodeState::Leaving)
            .await;
        self.update(|op| op.state = OperationState::Running as i32);
        let view = self.ctx.view();
        let moves = transfers(view.ring(), self.ctx.n());
        self.stream_all(&moves, &mut progress, |t| {
            let view = self.ctx.view();
            let endpoint = |id: &NodeId| {
                view.node(id)
                    .filter(|n| n.alive)
                    .and_then(|n| self.ctx.peers.channel(&n.grpc_address).ok())
            };
            let sources: Vec<Source> = t
                .sources
                .iter()
                .filter(|s| *s != target)
                .filter_map(|s| {
                    if *s == me {
                        Some(Source::Local(Arc::clone(&self.ctx.storage)))
                    } else {
                        endpoint(s).map(Source::Remote)
                    }
                })
                .collect();
            let sink = if t.to == me {
                Some(Sink::Local(Arc::clone(&self.ctx.storage)))
            } else {
                endpoint(&t.to).map(Sink::Remote)
            };
            (
                sources,
                sink.into_iter().collect(),
                "a surviving replica or the new owner of a range is down; waiting",
            )
        })
        .await?;
        self.membership.depart(depart(NodeState::Left)).await;
        self.wait_until_seen(target, |state, _| state == NodeState::Left)
            .await;
        progress
            .remove()
            .map_err(|e| format!("progress file: {e}"))?;
        tracing::info!(%target, ranges = moves.len(), "removed a node");
        Ok(())
    }

    /// Deletes, in the background, the ranges this node no longer
    /// replicates.
    ///
    /// # Errors
    /// [`ChangeError::Refused`] while a topology change is in progress.
    pub fn cleanup(self: &Arc<Self>) -> Result<Operation, ChangeError> {
        if let Some(op) = self.running() {
            return Err(ChangeError::Refused(format!(
                "this node is running operation {} already",
                op.id
            )));
        }
        if let Some(change) = change_anywhere(&self.ctx.view()) {
            return Err(ChangeError::Refused(format!(
                "a topology change is in progress ({change}); clean up once it has finished"
            )));
        }
        if self.own_state() != Some(NodeState::Normal) {
            return Err(ChangeError::Refused(
                "only a normal member cleans up (a joiner's streamed ranges are not foreign)"
                    .into(),
            ));
        }
        let op = self.begin(OperationKind::Cleanup);
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let outcome = this.cleanup_steps().await;
            this.finish(outcome);
        });
        Ok(op)
    }

    /// Cleans up by itself whenever the ring has changed and every live
    /// member routes with it (nothing changing anywhere), until `stop`.
    pub async fn auto_cleanup(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let work = async {
            let mut cleaned: Option<u64> = None;
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let view = self.ctx.view();
                let fingerprint = ring_fingerprint(&view);
                // Only a normal member: a node waiting to claim its tokens
                // (a joiner resuming after a restart) owns nothing yet but
                // holds what it already streamed.
                if cleaned == Some(fingerprint)
                    || self.running().is_some()
                    || self.own_state() != Some(NodeState::Normal)
                    || change_anywhere(&view).is_some()
                    || !self.ring_agreed().await
                {
                    continue;
                }
                self.begin(OperationKind::Cleanup);
                let outcome = self.cleanup_steps().await;
                if outcome.is_ok() {
                    cleaned = Some(fingerprint);
                }
                self.finish(outcome);
            }
        };
        tokio::select! {
            () = work => {}
            () = stop => {}
        }
    }

    async fn cleanup_steps(&self) -> Result<(), String> {
        if self.own_state() != Some(NodeState::Normal) {
            return Err("only a normal member cleans up".into());
        }
        if !self.ring_agreed().await {
            return Err("live members do not agree on the ring yet; try again shortly".into());
        }
        let view = self.ctx.view();
        let ranges = strata_cluster::foreign_ranges(view.ring(), &self.ctx.id, self.ctx.n());
        self.update(|op| {
            op.state = OperationState::Running as i32;
            op.ranges_total = ranges.len() as u64;
        });
        let fingerprint = ring_fingerprint(&view);
        let _cleaning = Cleaning::start(&self.cleaning);
        let mut deleted_total = 0;
        for range in ranges {
            // A change started: stop before deleting another range (the
            // change waits for this node to stop cleaning before it
            // streams anything here).
            let now = self.ctx.view();
            if ring_fingerprint(&now) != fingerprint || change_anywhere(&now).is_some() {
                return Err(
                    "the ring changed during the cleanup; it runs again once settled".into(),
                );
            }
            let storage = Arc::clone(&self.ctx.storage);
            let deleted = tokio::task::spawn_blocking(move || storage.delete_range(range))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("deleting {range:?}: {e}"))?;
            deleted_total += deleted;
            self.update(|op| {
                op.ranges_done += 1;
                op.keys_transferred += deleted;
            });
        }
        if deleted_total > 0 {
            tracing::info!(
                keys = deleted_total,
                "cleaned up ranges this node no longer replicates"
            );
        }
        Ok(())
    }

    /// Whether every live member's ring has the same members, states and
    /// tokens as this node's.
    async fn ring_agreed(&self) -> bool {
        let view = self.ctx.view();
        let mine = ring_summary(view.nodes().map(|(id, n)| {
            (
                id.to_string(),
                n.state,
                n.tokens.iter().map(|t| t.0).collect(),
            )
        }));
        for (id, node) in view
            .nodes()
            .filter(|(id, n)| **id != self.ctx.id && n.alive)
        {
            let Ok(channel) = self.ctx.peers.channel(&node.grpc_address) else {
                return false;
            };
            let mut request = tonic::Request::new(GetRingRequest {});
            request.set_timeout(Duration::from_secs(2));
            let Ok(ring) = AdminClient::new(channel).get_ring(request).await else {
                tracing::debug!(peer = %id, "no ring from a member; cleanup waits");
                return false;
            };
            let theirs = ring_summary(ring.into_inner().nodes.into_iter().map(|n| {
                let mut tokens = n.tokens;
                tokens.sort_unstable();
                (n.node_id, proto_state(n.state), tokens)
            }));
            if theirs != mine {
                return false;
            }
        }
        true
    }

    /// Preconditions of a decommission, checked against `view`.
    fn check_decommission(&self, view: &ClusterView) -> Result<(), ChangeError> {
        match view.node(&self.ctx.id).map(|n| n.state) {
            Some(NodeState::Normal) => {}
            other => {
                return Err(ChangeError::Refused(format!(
                    "only a normal member can be decommissioned; this node is {other:?}"
                )));
            }
        }
        if let Some(change) = change_elsewhere(view, &self.ctx.id) {
            return Err(ChangeError::Refused(format!(
                "another topology change is in progress ({change}); one at a time"
            )));
        }
        let normal = view
            .nodes()
            .filter(|(_, n)| n.state == NodeState::Normal)
            .count();
        let n = self.ctx.n();
        if normal <= n {
            return Err(ChangeError::Refused(format!(
                "{normal} normal members with replication factor {n}: without this node fewer \
                 than {n} would remain to hold every range"
            )));
        }
        Ok(())
    }

    fn own_state(&self) -> Option<NodeState> {
        self.ctx.view().node(&self.ctx.id).map(|n| n.state)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ops> {
        self.ops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn begin(&self, kind: OperationKind) -> Operation {
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
        self.lock().running = Some(op.clone());
        op
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

    async fn run_join(self: Arc<Self>) {
        let outcome = self.join_steps().await;
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "join failed");
        }
        self.finish(outcome);
    }

    async fn join_steps(&self) -> Result<(), String> {
        let me = self.ctx.id.clone();
        let tokens = tokens_for(&me, self.settings.vnodes);
        let op_id = self.running().map(|o| o.id).unwrap_or_default();
        let mut progress = Progress::open(&self.data_dir, "join", &op_id)
            .map_err(|e| format!("progress file: {e}"))?;
        self.update(|op| op.id.clone_from(&progress.id));
        // Claim the tokens only when no other change is in progress; two
        // joiners racing settle it by id (the larger one steps back). A
        // join resumed after a restart holds its tokens already.
        let resuming = self
            .ctx
            .view()
            .node(&me)
            .is_some_and(|n| n.state == NodeState::Joining && !n.tokens.is_empty());
        if resuming {
            self.wait_until_routed(|state, has_tokens| state == NodeState::Joining && has_tokens)
                .await;
        }
        if !resuming {
            self.claim(&me, &tokens).await;
        }
        self.update(|op| {
            op.state = OperationState::Running as i32;
            op.error.clear();
        });
        let view = self.ctx.view();
        let mine: Vec<Transfer> = transfers(view.ring(), self.ctx.n())
            .into_iter()
            .filter(|t| t.to == me)
            .collect();
        self.stream_all(&mine, &mut progress, |t| {
            let view = self.ctx.view();
            let sources: Vec<Source> = t
                .sources
                .iter()
                .filter(|s| **s != me)
                .filter_map(|s| {
                    view.node(s)
                        .filter(|n| n.alive)
                        .map(|n| n.grpc_address.clone())
                })
                .filter_map(|address| self.ctx.peers.channel(&address).ok())
                .map(Source::Remote)
                .collect();
            let sink = Sink::Local(Arc::clone(&self.ctx.storage));
            (
                sources,
                vec![sink],
                "no current owner of the range is reachable",
            )
        })
        .await?;
        self.membership.announce(NodeState::Normal, &tokens).await;
        // Done once every live member routes reads here too.
        self.wait_until_routed(|state, _| state == NodeState::Normal)
            .await;
        progress
            .remove()
            .map_err(|e| format!("progress file: {e}"))?;
        tracing::info!(ranges = mine.len(), "joined the ring");
        Ok(())
    }

    /// Claims `tokens` as a joiner once no other change is in progress
    /// and every live member routes with them; two joiners racing settle
    /// it by id (the larger one steps back and tries again).
    async fn claim(&self, me: &NodeId, tokens: &[strata_cluster::Token]) {
        loop {
            let view = self.ctx.view();
            if let Some(change) = change_elsewhere(&view, me) {
                self.waiting(&format!("waiting for another change to finish: {change}"));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            self.membership.announce(NodeState::Joining, tokens).await;
            self.wait_until_routed(|state, has_tokens| state == NodeState::Joining && has_tokens)
                .await;
            if let Some(rival) = rival(&self.ctx.view(), me) {
                tracing::warn!(%rival, "another node claimed tokens at the same time; stepping back");
                self.membership.announce(NodeState::Joining, &[]).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            break;
        }
    }

    async fn run_decommission(self: Arc<Self>) {
        let outcome = self.decommission_steps().await;
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "decommission failed");
        }
        self.finish(outcome);
    }

    async fn decommission_steps(&self) -> Result<(), String> {
        let me = self.ctx.id.clone();
        let tokens = tokens_for(&me, self.settings.vnodes);
        let op_id = self.running().map(|o| o.id).unwrap_or_default();
        let mut progress = Progress::open(&self.data_dir, "decommission", &op_id)
            .map_err(|e| format!("progress file: {e}"))?;
        self.update(|op| op.id.clone_from(&progress.id));
        self.membership.announce(NodeState::Leaving, &tokens).await;
        self.wait_until_routed(|state, _| state == NodeState::Leaving)
            .await;
        // Two changes started at once (each checked before the other's
        // state arrived): the smaller id goes on, the other steps back.
        if let Some(rival) = rival(&self.ctx.view(), &me) {
            self.membership.announce(NodeState::Normal, &tokens).await;
            let _ = progress.remove();
            return Err(format!(
                "{rival} started a topology change at the same time; retry once it finishes"
            ));
        }
        self.update(|op| op.state = OperationState::Running as i32);
        let view = self.ctx.view();
        let moves = transfers(view.ring(), self.ctx.n());
        self.stream_all(&moves, &mut progress, |t| {
            let view = self.ctx.view();
            let sink = view
                .node(&t.to)
                .filter(|n| n.alive)
                .and_then(|n| self.ctx.peers.channel(&n.grpc_address).ok())
                .map(Sink::Remote);
            let source = Source::Local(Arc::clone(&self.ctx.storage));
            (
                vec![source],
                sink.into_iter().collect(),
                "the member gaining the range is down; waiting for it",
            )
        })
        .await?;
        self.hand_over_hints().await?;
        self.membership.announce(NodeState::Left, &tokens).await;
        // Done once every live member routes without this node.
        self.wait_until_routed(|state, _| state == NodeState::Left)
            .await;
        progress
            .remove()
            .map_err(|e| format!("progress file: {e}"))?;
        tracing::info!(ranges = moves.len(), "left the ring");
        Ok(())
    }

    /// Streams every transfer not done yet, resolving its sources and
    /// sinks with `ends` each attempt (a failed source is replaced by the
    /// next; with none available, the change waits and retries).
    async fn stream_all(
        &self,
        moves: &[Transfer],
        progress: &mut Progress,
        ends: impl Fn(&Transfer) -> (Vec<Source>, Vec<Sink>, &'static str),
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
        let mut throttle = Throttle::new(self.settings.bytes_per_second);
        let mut left = total - done_before;
        self.metrics
            .ranges_pending
            .set(i64::try_from(left).unwrap_or(i64::MAX));
        let pending: Vec<&Transfer> = moves.iter().filter(|t| !progress.is_done(t)).collect();
        for transfer in pending {
            'attempts: loop {
                let (sources, sinks, none) = ends(transfer);
                let (Some(sink), false) = (sinks.first(), sources.is_empty()) else {
                    self.waiting(none);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                };
                for source in &sources {
                    let mut report = |copied: Copied| {
                        self.metrics.keys.inc_by(copied.keys);
                        self.metrics.bytes.inc_by(copied.bytes);
                        self.update(|op| {
                            op.keys_transferred += copied.keys;
                            op.bytes_transferred += copied.bytes;
                        });
                    };
                    match copy_range(
                        transfer.range,
                        source,
                        sink,
                        &mut throttle,
                        self.settings.batch_bytes,
                        self.settings.timeout,
                        &mut report,
                    )
                    .await
                    {
                        Ok(_) => break 'attempts,
                        Err(e) => {
                            tracing::warn!(range = ?transfer.range, to = %transfer.to, error = %e,
                                "streaming a range failed; trying another source");
                            self.waiting(&format!("retrying a range: {e}"));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
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
            });
        }
        Ok(())
    }

    /// Waits until every live member's ring shows this node in a state
    /// that `routed(state, has_tokens)` accepts, and the same members as
    /// this node's view: from then on every coordinator sends this node's
    /// pending writes, and the ranges computed here are the ranges the
    /// others route by (a fresh node's first views are partial).
    async fn wait_until_routed(&self, routed: impl Fn(NodeState, bool) -> bool) {
        self.wait_until_seen(&self.ctx.id.clone(), routed).await;
    }

    /// Waits until every live member's ring shows `node` in a state that
    /// `routed(state, has_tokens)` accepts, with the same members as this
    /// node's view.
    async fn wait_until_seen(&self, node: &NodeId, routed: impl Fn(NodeState, bool) -> bool) {
        let me = node.to_string();
        loop {
            let view = self.ctx.view();
            let mut members: Vec<String> = view.nodes().map(|(id, _)| id.to_string()).collect();
            members.sort();
            // Alone in its own view, a node has not heard the cluster yet.
            let mut agreed = view.nodes().any(|(id, n)| *id != self.ctx.id && n.alive);
            for (id, node) in view
                .nodes()
                .filter(|(id, n)| **id != self.ctx.id && n.alive)
            {
                let Ok(channel) = self.ctx.peers.channel(&node.grpc_address) else {
                    agreed = false;
                    break;
                };
                let mut request = tonic::Request::new(GetRingRequest {});
                request.set_timeout(Duration::from_secs(2));
                let seen = AdminClient::new(channel)
                    .get_ring(request)
                    .await
                    .ok()
                    .is_some_and(|ring| {
                        let ring = ring.into_inner();
                        if ring.cleaning {
                            return false;
                        }
                        let nodes = ring.nodes;
                        let mut theirs: Vec<String> =
                            nodes.iter().map(|n| n.node_id.clone()).collect();
                        theirs.sort();
                        theirs == members
                            && nodes.iter().any(|n| {
                                n.node_id == me
                                    && routed(proto_state(n.state), !n.tokens.is_empty())
                            })
                    });
                if !seen {
                    tracing::debug!(peer = %id, "waiting for a member to route with this node's new state");
                    agreed = false;
                    break;
                }
            }
            if agreed {
                return;
            }
            self.waiting(&format!(
                "waiting for every live member to see {me}'s new state"
            ));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Delivers every hint this node holds: to its target when it is up,
    /// otherwise to a live member that keeps it as a hint for the target.
    async fn hand_over_hints(&self) -> Result<(), String> {
        let store: &Arc<HintStore> = &self.ctx.hints;
        for (target, _) in store.targets() {
            let view = self.ctx.view();
            let (to, hint_for) = match view.node(&target).filter(|n| n.alive) {
                Some(n) => (
                    RemoteReplica {
                        id: target.clone(),
                        address: n.grpc_address.clone(),
                    },
                    None,
                ),
                None => {
                    let Some((id, n)) = view.nodes().find(|(id, n)| {
                        **id != self.ctx.id
                            && **id != target
                            && n.alive
                            && n.state == NodeState::Normal
                    }) else {
                        tracing::warn!(%target, "no live member can take this node's hints; anti-entropy will repair");
                        continue;
                    };
                    (
                        RemoteReplica {
                            id: id.clone(),
                            address: n.grpc_address.clone(),
                        },
                        Some(&target),
                    )
                }
            };
            let sealing = Arc::clone(store);
            let sealed_for = target.clone();
            let segments = tokio::task::spawn_blocking(move || sealing.seal(&sealed_for))
                .await
                .map_err(|e| e.to_string())?;
            for segment in segments {
                let path = segment.path.clone();
                let (records, _) = tokio::task::spawn_blocking(move || HintStore::read(&path))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("reading {}: {e}", segment.path.display()))?;
                for record in records {
                    let versions = record
                        .entry
                        .versions
                        .into_iter()
                        .map(version_from_proto)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| e.to_string())?;
                    self.ctx
                        .transport
                        .write(
                            &to,
                            &record.entry.key,
                            &Siblings::from_versions(versions),
                            hint_for,
                            self.settings.timeout,
                        )
                        .await
                        .map_err(|e| format!("handing over hints for {target}: {e}"))?;
                }
                store.finish(&target, &segment.path, SegmentFate::Delivered);
            }
        }
        Ok(())
    }
}

/// Another member's change in progress, described, if any: a member
/// joining with tokens (one waiting tokenless for `Admin.Join` is not a
/// change yet) or leaving.
fn change_elsewhere(view: &ClusterView, me: &NodeId) -> Option<String> {
    changes(view)
        .find(|(id, _)| *id != me)
        .map(|(_, change)| change)
}

/// Marks a cleanup as running for as long as it lives.
struct Cleaning<'a>(&'a std::sync::atomic::AtomicBool);

impl<'a> Cleaning<'a> {
    fn start(flag: &'a std::sync::atomic::AtomicBool) -> Self {
        flag.store(true, std::sync::atomic::Ordering::Release);
        Self(flag)
    }
}

impl Drop for Cleaning<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Any member's change in progress, described.
fn change_anywhere(view: &ClusterView) -> Option<String> {
    changes(view).next().map(|(_, change)| change)
}

/// Every member's change in progress, described: a member joining with
/// tokens (one waiting tokenless for `Admin.Join` is not a change yet) or
/// leaving.
fn changes(view: &ClusterView) -> impl Iterator<Item = (&NodeId, String)> + '_ {
    view.nodes().filter_map(|(id, n)| match n.state {
        NodeState::Joining if !n.tokens.is_empty() => Some((id, format!("{id} is joining"))),
        NodeState::Leaving => Some((id, format!("{id} is leaving"))),
        _ => None,
    })
}

/// Members with their states and sorted tokens, sorted by id.
fn ring_summary(
    nodes: impl Iterator<Item = (String, NodeState, Vec<u64>)>,
) -> Vec<(String, NodeState, Vec<u64>)> {
    let mut out: Vec<(String, NodeState, Vec<u64>)> = nodes
        .map(|(id, state, mut tokens)| {
            tokens.sort_unstable();
            (id, state, tokens)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Changes whenever a member, state or token changes.
fn ring_fingerprint(view: &ClusterView) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (id, n) in view.nodes() {
        id.hash(&mut hasher);
        n.state.hash(&mut hasher);
        n.tokens.hash(&mut hasher);
    }
    hasher.finish()
}

/// A member with a smaller id than `me` that is changing too: the change
/// that goes on when two start at once.
fn rival(view: &ClusterView, me: &NodeId) -> Option<NodeId> {
    view.nodes()
        .filter(|(id, _)| *id < me)
        .find(|(_, n)| {
            (n.state == NodeState::Joining && !n.tokens.is_empty()) || n.state == NodeState::Leaving
        })
        .map(|(id, _)| id.clone())
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
