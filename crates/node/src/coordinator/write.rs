//! The write path: forward to a replica, or apply locally and fan out.

use bytes::Bytes;
use strata_cluster::{
    ClusterView, ConsistencyLevel, Dot, NodeId, Progress, PrunePolicy, ReplicaTarget, Siblings,
    Token, Version, VersionVector, WriteQuorum, admitted_context,
};
use strata_proto::v1::{self, DeleteRequest, PutRequest};
use tokio::sync::mpsc;

use super::remote::{Target, TargetError};
use super::{
    Coordinator, CoordinatorError, Failures, MAX_SIBLINGS, WriteOutcome, count, decode_context,
    encode_context, enough_up, now_micros, stripe_of,
};
use crate::request::{required_acks, validate_key, validate_value};
use crate::transport::ReplicaError;
use strata_proto::metadata::{FORWARDED, is_transport_failure};

/// A write as the client sent it (forwarding passes it on unchanged).
#[derive(Debug, Clone)]
pub struct WriteRequest<'a> {
    /// The key (shared with the request message: never copied).
    pub key: Bytes,
    /// The value; `None` deletes.
    pub value: Option<Bytes>,
    /// The client's opaque context (empty: none).
    pub context: &'a [u8],
    /// Requested consistency; `None` is the cluster default W.
    pub consistency: Option<ConsistencyLevel>,
    /// Whether another node already forwarded this write here.
    pub forwarded: bool,
    /// The client's id for this write, the same on its retries (0: none).
    pub request_id: u64,
}

impl Coordinator {
    /// Writes `request.value` (`None`: a delete) under `request.context`.
    ///
    /// # Errors
    /// See [`CoordinatorError`].
    pub async fn write(&self, request: WriteRequest<'_>) -> Result<WriteOutcome, CoordinatorError> {
        validate_key(&request.key)?;
        if let Some(value) = &request.value {
            validate_value(value, self.ctx.settings.max_value_bytes)?;
        }
        let replication = self.ctx.settings.replication;
        let required = required_acks(request.consistency, replication.write, replication.factor)?;
        let token = Token::of(&request.key);
        let context = decode_context(token, request.context)?;
        let n = self.ctx.n();
        let view = self
            .settled_view(|v| enough_up(&v.write_targets(token, n), 0, required).is_ok())
            .await;
        let targets = view.write_targets(token, n);
        let replica = targets.iter().any(|t| t.id == self.ctx.id);
        // A replica whose store refuses writes (a full disk, damage) must
        // not coordinate: its failed local apply would fail the
        // write after the others took it. Another replica coordinates, and
        // this one gets a hint from it like any replica that fails.
        if replica && self.ctx.storage.db().refuses_writes() {
            return self.refused_here(&view, &targets, request, required).await;
        }
        if !replica {
            if request.forwarded {
                return Err(CoordinatorError::NotReplica);
            }
            return self.forward(&view, &targets, request, required).await;
        }

        // Sloppy quorum: each down replica's write goes to the next live
        // node past the preference list, which holds it as a hint and
        // counts toward W. Not at W = N: ALL promises every replica itself;
        // nor with strict quorums, where only the replicas count (this node
        // keeps the down ones' hints).
        let down: Vec<NodeId> = targets
            .iter()
            .filter(|t| !t.alive)
            .map(|t| t.id.clone())
            .collect();
        let strict = self.ctx.settings.replication.strict_quorum;
        let stand_ins = if required as usize >= n || down.is_empty() || strict {
            Vec::new()
        } else {
            view.stand_ins(token, &targets, down.len())
        };
        // The pending-write rule: while the key's owners change, W of the
        // current owners and W of the future owners must ack. A down
        // replica without a stand-in is a failure from the start; if that
        // already makes the level impossible, nothing is written.
        let mut quorum = WriteQuorum::for_placement(required, &view.ring().placement(token, n));
        for replica in down.iter().skip(stand_ins.len()) {
            quorum.record(replica, false);
        }
        if let Progress::Unreachable { .. } = quorum.progress() {
            return Err(CoordinatorError::ReplicasDown {
                up: count(targets.iter().filter(|t| t.alive).count() + stand_ins.len()),
                replicas: count(targets.len()),
                required,
            });
        }
        let written_context;
        let (tx, mut rx) = mpsc::channel(targets.len() + stand_ins.len() + 1);
        {
            let key_lock = self.stripes[stripe_of(&request.key, self.stripes.len())]
                .lock()
                .await;
            let local = match self.ctx.storage.read(&request.key) {
                Ok(local) => local,
                // This read found the store damaged, and it refuses writes
                // from now on: as above. Nothing was sent yet.
                Err(e) if self.ctx.storage.db().refuses_writes() => {
                    tracing::debug!(error = %e, "local store refuses writes");
                    drop(key_lock);
                    return self.refused_here(&view, &targets, request, required).await;
                }
                Err(e) => return Err(e.into()),
            };
            let key = request.key;
            let merged = self.next_version(local, request.value, context, request.request_id)?;
            // Other replicas get the merged set while the local apply
            // syncs: the two fsyncs overlap instead of adding up. A task
            // per replica: it completes even after the client has its
            // answer, so every replica gets the write or a hint.
            for t in targets.iter().filter(|t| t.alive && t.id != self.ctx.id) {
                self.spawn_replica_write(&view, &t.id, None, &key, &merged, &tx);
            }
            let mut stand_ins = stand_ins.iter();
            for replica in &down {
                match stand_ins.next() {
                    Some(stand_in) => {
                        self.spawn_replica_write(
                            &view,
                            stand_in,
                            Some(replica),
                            &key,
                            &merged,
                            &tx,
                        );
                    }
                    // No stand-in: this node keeps the hint (not an ack).
                    None => self.spawn_hint(replica.clone(), key.clone(), merged.clone()),
                }
            }
            written_context = encode_context(token, &merged.context());
            // A failed local apply fails the write even if other replicas
            // take it: this node's later dots for the key must not reach a
            // replica without this one (the DVV contract), so the outcome
            // must not be reported as acknowledged.
            self.ctx.storage.apply_queued(&key, &merged).await?;
            drop(key_lock);
            quorum.record(&self.ctx.id, true);
        }
        drop(tx);
        let timeout = self.ctx.settings.request_timeout;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut failures = Failures::default();
        loop {
            match quorum.progress() {
                Progress::Reached => {
                    return Ok(WriteOutcome {
                        acked: quorum.acks(),
                        context: written_context,
                    });
                }
                Progress::Unreachable { acks, required } => {
                    return Err(CoordinatorError::Unavailable {
                        acks,
                        required,
                        why: failures.why(),
                    });
                }
                Progress::Pending => {}
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((id, result))) => {
                    if let Err(e) = &result {
                        self.ctx.metrics.replica_failed();
                        tracing::debug!(replica = %id, error = %e, "replica write failed");
                        failures.add(&id, e);
                    }
                    quorum.record(&id, result.is_ok());
                }
                Ok(None) | Err(_) => {
                    return Err(CoordinatorError::Unavailable {
                        acks: quorum.acks(),
                        required,
                        why: failures.why_after(timeout),
                    });
                }
            }
        }
    }

    /// Sends `merged` to `node` in a task of its own, reporting the answer
    /// on `tx`. With `hint_for`, `node` is a stand-in holding a hint for
    /// that replica. A replica (or stand-in) that fails gets a hint kept
    /// by this node, so it catches up when it is back. A node without a
    /// known address fails at once, through `tx` like any failure, so that
    /// a missed consistency level names it.
    fn spawn_replica_write(
        &self,
        view: &ClusterView,
        node: &NodeId,
        hint_for: Option<&NodeId>,
        key: &Bytes,
        merged: &Siblings,
        tx: &mpsc::Sender<(NodeId, Result<(), TargetError>)>,
    ) {
        // A stand-in's answer counts for the replica it stands in for.
        let counts_for = hint_for.unwrap_or(node).clone();
        let target = match Target::resolve(node, &self.ctx, view) {
            Ok(target) => target,
            Err(e) => {
                tracing::warn!(replica = %node, error = %e, "cannot reach replica");
                self.spawn_hint(counts_for.clone(), key.clone(), merged.clone());
                // The channel holds one answer per replica and stand-in:
                // never full.
                let _ = tx.try_send((counts_for, Err(e.into())));
                return;
            }
        };
        let (tx, key, merged) = (tx.clone(), key.clone(), merged.clone());
        let (hint_for, hints) = (hint_for.cloned(), std::sync::Arc::clone(&self.ctx.hints));
        let metrics = std::sync::Arc::clone(&self.ctx.metrics);
        let timeout = self.ctx.settings.request_timeout;
        // A replica slow to take writes is behind: reads ask it last too.
        let sample = self.latency.sample(node.clone());
        tokio::spawn(async move {
            let result = target
                .write(&key, &merged, hint_for.as_ref(), timeout)
                .await;
            match &result {
                Ok(()) => sample.done(),
                Err(_) => sample.failed(timeout),
            }
            if let Err(TargetError::Remote(ReplicaError::Overloaded { .. })) = &result {
                metrics.replica_write_shed();
            }
            if result.is_err() {
                let replica = &counts_for;
                if let Err(e) = hints.store(replica, &key, &merged).await {
                    tracing::debug!(%replica, error = %e, "replica write failed and no hint was kept");
                }
            }
            let _ = tx.send((counts_for, result)).await;
        });
    }

    /// Keeps a hint for `replica` on this node, in the background.
    fn spawn_hint(&self, replica: NodeId, key: Bytes, merged: Siblings) {
        let hints = std::sync::Arc::clone(&self.ctx.hints);
        tokio::spawn(async move {
            if let Err(e) = hints.store(&replica, &key, &merged).await {
                tracing::debug!(%replica, error = %e, "no hint kept for a down replica");
            }
        });
    }

    /// Makes the new version and merges it into `siblings`, this node's
    /// set for the key, read by the caller, which holds the key's stripe
    /// lock from that read until the result is applied locally. Runs
    /// inline: (once per 2^20 dots) a small fsync of the dot reservation.
    ///
    /// A retry (`request_id` of a version this replica already holds) makes
    /// no new version: the set is returned as it is, and replicating it
    /// again completes what the first attempt may have left short of W.
    fn next_version(
        &self,
        mut siblings: Siblings,
        value: Option<Bytes>,
        context: VersionVector,
        request_id: u64,
    ) -> Result<Siblings, CoordinatorError> {
        if request_id != 0
            && siblings
                .versions()
                .iter()
                .any(|v| v.request_id == request_id)
        {
            self.ctx.metrics.retried_write();
            return Ok(siblings);
        }
        let claimed = context;
        // Last-write-wins: a write supersedes everything this replica
        // holds; siblings only arise across replicas and reads resolve
        // them by timestamp. Otherwise it supersedes what the client saw,
        // bounded by what this replica has seen (a client's context is
        // input: it must not cover dots that do not exist here).
        let mut context = if self.ctx.settings.replication.last_write_wins {
            siblings.context()
        } else {
            admitted_context(&claimed, &siblings.context())
        };
        // Bounded clocks (PrunePolicy: > 64 entries, entries idle > 1 day).
        // Pruning a context only keeps more siblings; it never drops one.
        context.prune(&PrunePolicy::default(), now_micros());
        // Blind writes to one key pile up siblings; past the limit the
        // client must resolve them (writing with a context covers them).
        let kept = siblings
            .versions()
            .iter()
            .filter(|v| !context.covers(&v.dot))
            .count();
        if kept >= MAX_SIBLINGS {
            return Err(CoordinatorError::TooManySiblings {
                siblings: kept + 1,
                limit: MAX_SIBLINGS,
            });
        }
        // Timestamps of one key at one coordinator only increase, so a
        // causally later write never loses a last-write-wins comparison
        // to what it supersedes because of clock steps.
        let timestamp_micros = siblings
            .versions()
            .iter()
            .map(|v| v.timestamp_micros.saturating_add(1))
            .max()
            .unwrap_or(0)
            .max(now_micros());
        let counter = self.dots.next(&claimed)?;
        siblings.insert(Version {
            dot: Dot {
                node: self.ctx.id.clone(),
                counter,
            },
            context,
            value,
            timestamp_micros,
            request_id,
        });
        Ok(siblings)
    }

    /// The write on a replica whose store refuses writes: forwarded to
    /// another replica, unless it was forwarded here already (refused as
    /// nothing written, so the sender tries the next). When no other
    /// replica was up to try, the answer is the store's failure (what the
    /// user must fix), not a quorum to retry.
    async fn refused_here(
        &self,
        view: &ClusterView,
        targets: &[ReplicaTarget],
        request: WriteRequest<'_>,
        required: u32,
    ) -> Result<WriteOutcome, CoordinatorError> {
        if request.forwarded {
            return Err(CoordinatorError::StoreRefusesWrites);
        }
        match self.forward(view, targets, request, required).await {
            Err(CoordinatorError::NoReplicaTook { tried: 0, .. }) => Err(
                CoordinatorError::StoreFailed(self.ctx.storage.failure().unwrap_or_default()),
            ),
            outcome => outcome,
        }
    }

    /// Sends the write to a live replica of the key, which coordinates it.
    /// Tries the next live replica only when one could not be reached at
    /// all (then nothing was written there).
    async fn forward(
        &self,
        view: &ClusterView,
        targets: &[ReplicaTarget],
        request: WriteRequest<'_>,
        required: u32,
    ) -> Result<WriteOutcome, CoordinatorError> {
        // The replica coordinates within its own deadline; allow for it.
        let timeout = self.ctx.settings.request_timeout * 2;
        let mut tried = 0;
        for target in targets.iter().filter(|t| t.alive && t.id != self.ctx.id) {
            let Some(address) = view.node(&target.id).map(|n| n.internal_address.clone()) else {
                continue;
            };
            let mut client = match self.ctx.peers.kv(&address) {
                Ok(client) => client,
                Err(e) => {
                    tracing::warn!(replica = %target.id, error = %e, "cannot forward");
                    continue;
                }
            };
            self.ctx.metrics.forwarded_write();
            tried += 1;
            let result = match &request.value {
                Some(value) => client
                    .put(forwarded(
                        timeout,
                        PutRequest {
                            key: request.key.clone(),
                            value: value.clone(),
                            context: request.context.to_vec().into(),
                            consistency: request.consistency.map(v1::Consistency::from),
                            request_id: request.request_id,
                        },
                    ))
                    .await
                    .map(|r| {
                        let r = r.into_inner();
                        (r.context, r.replicas_acked)
                    }),
                None => client
                    .delete(forwarded(
                        timeout,
                        DeleteRequest {
                            key: request.key.clone(),
                            context: request.context.to_vec().into(),
                            consistency: request.consistency.map(v1::Consistency::from),
                            request_id: request.request_id,
                        },
                    ))
                    .await
                    .map(|r| {
                        let r = r.into_inner();
                        (r.context, r.replicas_acked)
                    }),
            };
            match result {
                Ok((context, acked)) => {
                    return Ok(WriteOutcome {
                        context: context.to_vec(),
                        acked,
                    });
                }
                // A replica's answer says what happened. A transport
                // failure (the replica unreachable, or killed mid-request)
                // goes to the next replica under the same request id, as
                // a client's retry would: a replica holding the first
                // attempt's version answers from it.
                Err(status) if !is_transport_failure(&status) => {
                    return Err(CoordinatorError::Forwarded(status));
                }
                Err(status) => {
                    tracing::debug!(replica = %target.id, error = %status, "forwarding failed, trying the next replica");
                    self.ctx.metrics.replica_failed();
                }
            }
        }
        Err(CoordinatorError::NoReplicaTook { tried, required })
    }
}

fn forwarded<T>(timeout: std::time::Duration, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(timeout);
    request
        .metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    request
}
