//! The read path: ask the replicas, answer after R, repair stale ones.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt as _};
use strata_cluster::ConsistencyLevel;
use strata_cluster::{NodeId, Progress, ReadQuorum, Siblings, Token};

use super::remote::{Target, TargetError};
use super::{Coordinator, CoordinatorError, Failures, ReadOutcome, enough_up};
use crate::request::{required_acks, validate_key};

type Answer = (NodeId, Result<Siblings, TargetError>);
/// The remote replicas' answers still to come, polled by the read itself
/// (no task per replica) and, after the client's answer, by its
/// background part.
type Pending = FuturesUnordered<BoxFuture<'static, Answer>>;

impl Coordinator {
    /// Reads `key` at `consistency`.
    ///
    /// R live replicas are asked (this node first), and another for each
    /// that fails, and one more when they have not all answered after
    /// `speculative_retry`; every `read_repair_period`-th read asks all of
    /// them. The answer goes out after R replied. Read repair: when the answers
    /// differ, the merged set is written to the stale replicas — before
    /// answering when R > 1 (so a value read at QUORUM is then held by a
    /// quorum: monotonic quorum reads), and in the background otherwise;
    /// answers that arrive after the client's are merged and repaired in
    /// the background too.
    ///
    /// # Errors
    /// See [`CoordinatorError`].
    pub async fn read(
        &self,
        key: Bytes,
        consistency: Option<ConsistencyLevel>,
    ) -> Result<ReadOutcome, CoordinatorError> {
        validate_key(&key)?;
        let settings = self.ctx.settings;
        let replication = settings.replication;
        let required = required_acks(consistency, replication.read, replication.factor)?;
        let (token, n) = (Token::of(&key), self.ctx.n());
        let view = self
            .settled_view(|v| enough_up(&v.read_targets(token, n), 0, required).is_ok())
            .await;
        let targets = view.read_targets(token, n);
        let mut quorum = ReadQuorum::new(required, enough_up(&targets, 0, required)?);

        let timeout = settings.request_timeout;
        // Live replicas, this node first: its answer costs no round trip.
        let mut live: Vec<_> = targets.iter().filter(|t| t.alive).collect();
        live.sort_by_key(|t| t.id != self.ctx.id);
        // Then the other replicas, a clearly slow one last
        // (`peer_latency.rs`).
        let remote = usize::from(live.first().is_some_and(|t| t.id == self.ctx.id));
        if self.latency.slow_ones_last(&mut live[remote..], |t| &t.id) > 0 {
            self.ctx.metrics.read_passed_slow_replica();
        }
        let period = u64::from(settings.read_repair_period);
        let everyone = period != 0
            && self
                .reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .is_multiple_of(period);
        let mut pending = Pending::new();
        let mut failures = Failures::default();
        let mut reachable = HashMap::new();
        let mut asked = 0;
        let mut next = live.iter();
        // Ask R replicas (all of them on a read-repair read); each failure
        // brings in the next live replica.
        let mut wanted = if everyone {
            live.len()
        } else {
            required as usize
        };
        let start = tokio::time::Instant::now();
        let deadline = start + timeout;
        // Once per read: a replica that has not answered by then brings in
        // one more live replica, if there is one.
        let mut speculate_at = settings.speculative_retry.map(|after| start + after);
        loop {
            // This node's own answer is read here, after the remote
            // requests are on their way.
            let mut local = None;
            while asked < wanted {
                let Some(t) = next.next() else { break };
                asked += 1;
                match Target::resolve(&t.id, &self.ctx, &view) {
                    Ok(target) => {
                        reachable.insert(t.id.clone(), target.clone());
                        if matches!(target, Target::Local(_)) {
                            local = Some((t.id.clone(), target));
                            continue;
                        }
                        let (id, key) = (t.id.clone(), key.clone());
                        let sample = self.latency.sample(id.clone());
                        pending.push(Box::pin(async move {
                            let answer = target.read(key, timeout).await;
                            match &answer {
                                Ok(_) => sample.done(),
                                Err(_) => sample.failed(timeout),
                            }
                            (id, answer)
                        }));
                    }
                    Err(e) => {
                        tracing::warn!(replica = %t.id, error = %e, "cannot reach replica");
                        failures.add(&t.id, &e);
                        quorum.record(&t.id, None);
                        wanted += 1;
                    }
                }
            }
            if let Some((id, target)) = local {
                // A remote request goes out on its future's first poll:
                // poll them once before the local read.
                if let Some(Some(answer)) = pending.next().now_or_never() {
                    wanted += self.record(&mut quorum, &mut failures, answer);
                }
                // No await point inside: the engine read runs right here.
                let answer = target.read(key.clone(), timeout).await;
                wanted += self.record(&mut quorum, &mut failures, (id, answer));
                continue;
            }
            match quorum.progress() {
                Progress::Reached => break,
                Progress::Unreachable { acks, required } => {
                    return Err(CoordinatorError::Unavailable {
                        acks,
                        required,
                        why: failures.why(),
                    });
                }
                Progress::Pending => {}
            }
            let until = match speculate_at {
                Some(at) if asked < live.len() && at < deadline => at,
                _ => deadline,
            };
            match tokio::time::timeout_at(until, pending.next()).await {
                Ok(Some(answer)) => wanted += self.record(&mut quorum, &mut failures, answer),
                Err(_) if until < deadline => {
                    speculate_at = None;
                    wanted += 1;
                    self.ctx.metrics.speculative_read();
                }
                Ok(None) | Err(_) => {
                    return Err(CoordinatorError::Unavailable {
                        acks: quorum.answered(),
                        required,
                        why: failures.why_after(timeout),
                    });
                }
            }
        }

        let answered = quorum.answered();
        let resolution = quorum.resolve();
        let mut repaired = Vec::new();
        if required > 1 && !resolution.stale.is_empty() {
            repaired.clone_from(&resolution.stale);
            // The merged set must be on R replicas before the answer: those
            // that answered with it hold it already.
            let holders = quorum
                .answered_by()
                .filter(|id| !resolution.stale.contains(id))
                .count();
            let needed = (required as usize).saturating_sub(holders);
            // Live replicas whose answer is not in: they may take the
            // merged set in a slow stale replica's stead.
            let spare: Vec<(NodeId, Target)> = live
                .iter()
                .filter(|t| !quorum.answered_by().any(|id| *id == t.id))
                .filter_map(|t| {
                    let target = reachable
                        .get(&t.id)
                        .cloned()
                        .or_else(|| Target::resolve(&t.id, &self.ctx, &view).ok())?;
                    Some((t.id.clone(), target))
                })
                .collect();
            self.repair(
                &key,
                &resolution.merged,
                &resolution.stale,
                spare,
                needed,
                &reachable,
                timeout,
            )
            .await;
        }
        if !pending.is_empty() || repaired.len() < resolution.stale.len() {
            let background = Background {
                key: key.clone(),
                quorum,
                pending,
                deadline,
                repaired,
                repaired_with: resolution.merged.clone(),
                reachable,
                timeout,
            };
            let metrics = std::sync::Arc::clone(&self.ctx.metrics);
            tokio::spawn(background.finish(metrics));
        }

        let context = resolution.merged.context();
        let siblings = if replication.last_write_wins {
            Siblings::from_versions(resolution.merged.last_write().cloned())
        } else {
            resolution.merged.one_per_request()
        };
        Ok(ReadOutcome {
            siblings,
            context,
            answered,
        })
    }

    /// Counts one replica's answer, keeping a failure in `failures`; returns
    /// how many more replicas to ask for it (one when it failed).
    fn record(
        &self,
        quorum: &mut ReadQuorum,
        failures: &mut Failures,
        (id, answer): Answer,
    ) -> usize {
        let failed = answer.is_err();
        if let Err(e) = &answer {
            self.ctx.metrics.replica_failed();
            tracing::debug!(replica = %id, error = %e, "replica read failed");
            failures.add(&id, e);
        }
        quorum.record(&id, answer.ok());
        usize::from(failed)
    }

    /// Blocking read repair: writes `merged` to the `stale` replicas and
    /// returns once `needed` replicas took it, so that it is on R replicas
    /// and later QUORUM reads see it (monotonic reads). When they have not
    /// after the speculative delay (a replica whose disk is slow answers
    /// reads at once but writes late), or all failed, `merged` also goes to
    /// the `spare` replicas (live ones whose answer is not in). Writes still
    /// running then finish in the background: every stale replica gets the
    /// repair. Bounded by `timeout`.
    #[expect(clippy::too_many_arguments, reason = "one call site, all distinct")]
    async fn repair(
        &self,
        key: &Bytes,
        merged: &Siblings,
        stale: &[NodeId],
        spare: Vec<(NodeId, Target)>,
        needed: usize,
        reachable: &HashMap<NodeId, Target>,
        timeout: Duration,
    ) {
        let write = |id: &NodeId, target: &Target| -> BoxFuture<'static, bool> {
            let (id, target, key, merged) =
                (id.clone(), target.clone(), key.clone(), merged.clone());
            Box::pin(async move {
                let written = target.write(&key, &merged, None, timeout).await;
                if let Err(e) = &written {
                    tracing::warn!(replica = %id, error = %e, "read repair failed");
                }
                written.is_ok()
            })
        };
        let mut writes: FuturesUnordered<BoxFuture<'static, bool>> = stale
            .iter()
            .filter_map(|id| Some(write(id, reachable.get(id)?)))
            .collect();
        let mut spare = Some(spare);
        let start = tokio::time::Instant::now();
        let deadline = start + timeout;
        let mut speculate_at = self
            .ctx
            .settings
            .speculative_retry
            .map(|after| start + after);
        let mut acks = 0;
        while acks < needed {
            if writes.is_empty() {
                match spare.take() {
                    Some(more) if !more.is_empty() => {
                        writes.extend(more.iter().map(|(id, t)| write(id, t)));
                        continue;
                    }
                    _ => break,
                }
            }
            let until = match speculate_at {
                Some(at) if spare.is_some() && at < deadline => at,
                _ => deadline,
            };
            match tokio::time::timeout_at(until, writes.next()).await {
                Ok(Some(took)) => acks += usize::from(took),
                Ok(None) => {}
                Err(_) if until < deadline => {
                    speculate_at = None;
                    if let Some(more) = spare.take() {
                        writes.extend(more.iter().map(|(id, t)| write(id, t)));
                    }
                }
                Err(_) => break,
            }
        }
        if !writes.is_empty() {
            tokio::spawn(async move { while writes.next().await.is_some() {} });
        }
        self.ctx.metrics.read_repaired(stale.len());
    }
}

async fn repair(
    key: &[u8],
    merged: &Siblings,
    stale: &[NodeId],
    reachable: &HashMap<NodeId, Target>,
    timeout: Duration,
) {
    let writes = stale.iter().filter_map(|id| {
        let target = reachable.get(id)?.clone();
        Some(async move {
            if let Err(e) = target.write(key, merged, None, timeout).await {
                tracing::warn!(replica = %id, error = %e, "read repair failed");
            }
        })
    });
    futures::future::join_all(writes).await;
}

/// The part of a read that continues after the client has its answer.
struct Background {
    key: Bytes,
    quorum: ReadQuorum,
    pending: Pending,
    deadline: tokio::time::Instant,
    repaired: Vec<NodeId>,
    repaired_with: Siblings,
    reachable: HashMap<NodeId, Target>,
    timeout: Duration,
}

impl Background {
    async fn finish(mut self, metrics: std::sync::Arc<crate::metrics::Metrics>) {
        while let Ok(Some((id, answer))) =
            tokio::time::timeout_at(self.deadline, self.pending.next()).await
        {
            self.quorum.record(&id, answer.ok());
        }
        let resolution = self.quorum.resolve();
        let stale: Vec<NodeId> = resolution
            .stale
            .into_iter()
            .filter(|id| !(self.repaired.contains(id) && self.repaired_with == resolution.merged))
            .collect();
        if !stale.is_empty() {
            repair(
                &self.key,
                &resolution.merged,
                &stale,
                &self.reachable,
                self.timeout,
            )
            .await;
            metrics.read_repaired(stale.len());
        }
    }
}
