//! Cleanup: delete the ranges this node no longer replicates, once every
//! live member routes with the same ring; stop when a change starts.

use super::*;

/// Why a cleanup ended early for a change on this node.
const STOPPED: &str =
    "stopped for a topology change on this node; it runs again once the ring settles";

/// Why a cleanup ended without finishing.
#[derive(Debug)]
enum Ended {
    /// The ring moved (a change started, members disagree): it runs again
    /// once the ring settles; nothing is wrong.
    Interrupted(String),
    /// Deleting failed.
    Failed(String),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Interrupted(why) | Self::Failed(why) => f.write_str(why),
        }
    }
}

/// Whether an automatic cleanup that ended with `outcome`, having deleted
/// `deleted` keys, goes into the operations history: one that deleted
/// keys, or failed, does; one that deleted nothing, finished or
/// interrupted, does not.
fn worth_keeping(outcome: &Result<u64, Ended>, deleted: u64) -> bool {
    match outcome {
        Ok(0) => false,
        Err(Ended::Interrupted(_)) => deleted > 0,
        Ok(_) | Err(Ended::Failed(_)) => true,
    }
}

impl Changes {
    /// Deletes, in the background, the ranges this node no longer
    /// replicates.
    ///
    /// # Errors
    /// [`ChangeError::Refused`] while a topology change is in progress.
    pub fn cleanup(self: &Arc<Self>) -> Result<Operation, ChangeError> {
        let op = self
            .try_begin(OperationKind::Cleanup)
            .map_err(|running| self.busy(&running, OperationKind::Cleanup))?;
        let refused = if let Some(change) = change_anywhere(&self.ctx.view()) {
            Some(format!(
                "a topology change is in progress ({change}); clean up once it has finished"
            ))
        } else if self.own_state() != Some(NodeState::Normal) {
            Some(
                "only a normal member cleans up (a joiner's streamed ranges are not foreign)"
                    .to_owned(),
            )
        } else {
            None
        };
        if let Some(why) = refused {
            self.abandon(&op);
            return Err(ChangeError::Refused(why));
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let outcome = this.cleanup_steps().await;
            this.finish(outcome.map(drop).map_err(|e| e.to_string()));
        });
        Ok(op)
    }

    /// Cleans up by itself whenever the ring has changed and every live
    /// member routes with it (nothing changing anywhere), until `stop`.
    ///
    /// "Changed" counts every view gossip produced
    /// (`Topology::ring_changes`), not a comparison of two samples: a
    /// member that lost its data joins again under its old tokens, so the
    /// ring after its join can equal the ring at the last cleanup (even
    /// with its new incarnation, when that cleanup ran in the moment before
    /// the join), while the next members took its ranges' writes meanwhile.
    ///
    /// One that deleted nothing (most: every restart of any member is a
    /// ring change), whether it finished or the ring moved under it, is not
    /// kept in the operations history, where it would push out the joins,
    /// decommissions and repairs a user looks for.
    pub async fn auto_cleanup(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let work = async {
            let mut cleaned: Option<u64> = None;
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let fingerprint = self.ctx.topology.ring_changes();
                let view = self.ctx.view();
                // Only a normal member: a node waiting to claim its tokens
                // (a joiner resuming after a restart) owns nothing yet but
                // holds what it already streamed.
                if cleaned == Some(fingerprint)
                    || self.running().is_some()
                    || self.own_state() != Some(NodeState::Normal)
                    || change_anywhere(&view).is_some()
                    || !self.ring_agreed().await
                    || self.try_begin(OperationKind::Cleanup).is_err()
                {
                    continue;
                }
                let outcome = self.cleanup_steps().await;
                if outcome.is_ok() {
                    cleaned = Some(fingerprint);
                }
                let deleted = self.running().map_or(0, |op| op.keys_transferred);
                if worth_keeping(&outcome, deleted) {
                    self.finish(outcome.map(drop).map_err(|e| e.to_string()));
                } else {
                    self.forget_running();
                }
            }
        };
        tokio::select! {
            () = work => {}
            () = stop => {}
        }
    }

    /// Deletes the foreign ranges; the keys deleted.
    async fn cleanup_steps(&self) -> Result<u64, Ended> {
        if self.own_state() != Some(NodeState::Normal) {
            return Err(Ended::Interrupted("only a normal member cleans up".into()));
        }
        if !self.ring_agreed().await {
            return Err(Ended::Interrupted(
                "live members do not agree on the ring yet; try again shortly".into(),
            ));
        }
        if self.stop_cleanup.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Ended::Interrupted(STOPPED.into()));
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
            // streams anything here). A change on this node asks through
            // `stop_cleanup`, checked before the first range and after
            // each one.
            let now = self.ctx.view();
            if ring_fingerprint(&now) != fingerprint || change_anywhere(&now).is_some() {
                return Err(Ended::Interrupted(
                    "the ring changed during the cleanup; it runs again once settled".into(),
                ));
            }
            let storage = Arc::clone(&self.ctx.storage);
            let stop = Arc::clone(&self.stop_cleanup);
            let deleted = tokio::task::spawn_blocking(move || storage.delete_range(range, &stop))
                .await
                .map_err(|e| Ended::Failed(e.to_string()))?
                .map_err(|e| Ended::Failed(format!("deleting {range:?}: {e}")))?;
            deleted_total += deleted;
            self.metrics.cleanup_keys.inc_by(deleted);
            self.update(|op| op.keys_transferred += deleted);
            if self.stop_cleanup.load(std::sync::atomic::Ordering::Acquire) {
                return Err(Ended::Interrupted(STOPPED.into()));
            }
            self.update(|op| op.ranges_done += 1);
        }
        if deleted_total > 0 {
            tracing::info!(
                keys = deleted_total,
                "cleaned up ranges this node no longer replicates"
            );
        }
        self.metrics.cleanups.inc();
        Ok(deleted_total)
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
            let Ok(channel) = self.ctx.peers.channel(&node.internal_address) else {
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

/// Members with their states and sorted tokens, sorted by id. A member
/// that left owns no tokens whatever it last gossiped (`GetRing` reports
/// none; a node of an earlier version, its last ones): the rings agree
/// either way.
fn ring_summary(
    nodes: impl Iterator<Item = (String, NodeState, Vec<u64>)>,
) -> Vec<(String, NodeState, Vec<u64>)> {
    let mut out: Vec<(String, NodeState, Vec<u64>)> = nodes
        .map(|(id, state, mut tokens)| {
            if state == NodeState::Left {
                tokens.clear();
            }
            tokens.sort_unstable();
            (id, state, tokens)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Changes whenever a member, state, token or incarnation changes: a
/// cleanup under way stops when it does (the ranges to delete may have
/// moved).
fn ring_fingerprint(view: &ClusterView) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (id, n) in view.nodes() {
        id.hash(&mut hasher);
        n.state.hash(&mut hasher);
        n.tokens.hash(&mut hasher);
        n.incarnation.hash(&mut hasher);
        n.rejoining.hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use strata_cluster::{NodeGossip, Peer, tokens_for};

    use super::*;

    fn member(id: &str, incarnation: u64) -> Peer {
        let id = NodeId::new(id).expect("id");
        Peer {
            gossip: NodeGossip {
                grpc_address: String::new(),
                internal_address: String::new(),
                gossip_address: String::new(),
                tokens: tokens_for(&id, 8),
                state: NodeState::Normal,
                load_bytes: 0,
                incarnation,
                departures: Vec::new(),
                rejoin: strata_cluster::Rejoin::None,
            },
            id,
            generation: 1,
            alive: true,
        }
    }

    fn ring(b_incarnation: u64) -> ClusterView {
        ClusterView::from_peers([member("node-a", 7), member("node-b", b_incarnation)])
    }

    #[test]
    fn only_automatic_cleanups_that_deleted_keys_or_failed_are_kept() {
        let interrupted = || Err(Ended::Interrupted("the ring changed".into()));
        assert!(!worth_keeping(&Ok(0), 0));
        assert!(worth_keeping(&Ok(12), 12));
        assert!(!worth_keeping(&interrupted(), 0));
        assert!(worth_keeping(&interrupted(), 3));
        assert!(worth_keeping(
            &Err(Ended::Failed("deleting: io error".into())),
            0
        ));
    }

    #[test]
    fn a_member_with_a_new_data_directory_changes_the_fingerprint() {
        // The same members, states and tokens: only node-b's data
        // directory is new (it lost its data and is about to join again),
        // so a cleanup under way stops.
        assert_eq!(ring_fingerprint(&ring(3)), ring_fingerprint(&ring(3)));
        assert_ne!(ring_fingerprint(&ring(3)), ring_fingerprint(&ring(4)));
    }

    #[test]
    fn rings_agree_whether_a_member_that_left_shows_its_last_tokens_or_none() {
        let entry = |state, tokens: &[u64]| ("node-a".to_owned(), state, tokens.to_vec());
        assert_eq!(
            ring_summary([entry(NodeState::Left, &[3, 1])].into_iter()),
            ring_summary([entry(NodeState::Left, &[])].into_iter())
        );
        assert_ne!(
            ring_summary([entry(NodeState::Normal, &[3, 1])].into_iter()),
            ring_summary([entry(NodeState::Normal, &[])].into_iter())
        );
        assert_eq!(
            ring_summary([entry(NodeState::Normal, &[3, 1])].into_iter()),
            ring_summary([entry(NodeState::Normal, &[1, 3])].into_iter())
        );
    }
}
