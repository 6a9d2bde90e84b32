//! Decommission: leave the ring after handing every range, and every
//! hint held here, to the members that take them over.

use super::*;

impl Changes {
    /// Starts (or resumes) leaving the ring in the background.
    ///
    /// # Errors
    /// [`ChangeError::Refused`] with the reason: not a normal member, fewer
    /// than N normal members would remain, or another change is in
    /// progress anywhere in the cluster.
    pub async fn decommission(self: &Arc<Self>) -> Result<Operation, ChangeError> {
        let op = match self.take_slot(OperationKind::Decommission).await {
            Ok(op) => op,
            Err(running) if running.kind == OperationKind::Decommission as i32 => {
                return Ok(*running);
            }
            Err(running) => return Err(busy(&running, OperationKind::Decommission)),
        };
        if self.own_state() != Some(NodeState::Leaving)
            && let Err(refused) = self.check_decommission(&self.ctx.view())
        {
            self.abandon(&op);
            return Err(refused);
        }
        let this = Arc::clone(self);
        tokio::spawn(async move { this.run_decommission().await });
        Ok(op)
    }

    /// Preconditions of a decommission, checked against `view`.
    fn check_decommission(&self, view: &ClusterView) -> Result<(), ChangeError> {
        let not_normal = match view.node(&self.ctx.id).map(|n| n.state) {
            Some(NodeState::Normal) => None,
            Some(NodeState::Left) => {
                Some("it has already left the ring (its decommission finished)")
            }
            Some(NodeState::Joining) => {
                Some("it is still joining; decommission it once it is normal")
            }
            Some(NodeState::Leaving) => Some("it is leaving already"),
            None => Some("it is not a member of the ring"),
        };
        if let Some(why) = not_normal {
            return Err(ChangeError::Refused(format!(
                "only a normal member can be decommissioned, and this node is not: {why}"
            )));
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
        self.stream_all(&moves, &mut progress, Copies::First, |t| {
            let view = self.ctx.view();
            let sink = view
                .node(&t.to)
                .filter(|n| n.alive)
                .and_then(|n| self.ctx.peers.channel(&n.internal_address).ok())
                .map(Sink::Remote);
            let source = Source::Local(Arc::clone(&self.ctx.storage));
            (
                vec![(self.ctx.id.clone(), source)],
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

    /// Delivers every hint this node holds: to its target when it is up,
    /// otherwise to a live member that keeps it as a hint for the target.
    /// A delivery that fails (the receiver went down or is cut off) is
    /// retried every half second with the next candidate, the reason shown
    /// in the operation, as a range waits for its receiver; only a segment
    /// that cannot be read fails the decommission.
    async fn hand_over_hints(&self) -> Result<(), String> {
        let store: &Arc<HintStore> = &self.ctx.hints;
        for (target, _) in store.targets() {
            for attempt in 0usize.. {
                // The replay may be delivering this target's segments right
                // now: take them only once it is done with them.
                let delivery = store.delivery().await;
                match self.hand_over_target(&target, attempt).await {
                    Ok(()) => break,
                    Err(HandOver::Unreadable(e)) => return Err(e),
                    Err(HandOver::Undelivered(e)) => {
                        drop(delivery);
                        tracing::warn!(%target, error = %e, "handing over hints failed; retrying");
                        self.waiting(&format!("handing over hints for {target} (retrying): {e}"));
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            self.update(|op| op.error.clear());
        }
        Ok(())
    }

    /// Delivers `target`'s sealed segments, each deleted once delivered
    /// (renamed `*.corrupt` past damage, as the replay does). A target that
    /// is down gets its hints kept by a live normal member: the
    /// `attempt`-th candidate, so a retry tries another.
    async fn hand_over_target(&self, target: &NodeId, attempt: usize) -> Result<(), HandOver> {
        let store: &Arc<HintStore> = &self.ctx.hints;
        let view = self.ctx.view();
        let (to, hint_for) = match view.node(target).filter(|n| n.alive) {
            Some(n) => (
                RemoteReplica {
                    id: target.clone(),
                    address: n.internal_address.clone(),
                },
                None,
            ),
            None => {
                let candidates: Vec<_> = view
                    .nodes()
                    .filter(|(id, n)| {
                        **id != self.ctx.id
                            && *id != target
                            && n.alive
                            && n.state == NodeState::Normal
                    })
                    .collect();
                if candidates.is_empty() {
                    tracing::warn!(%target, "no live member can take this node's hints; anti-entropy will repair");
                    return Ok(());
                }
                let (id, n) = candidates[attempt % candidates.len()];
                (
                    RemoteReplica {
                        id: id.clone(),
                        address: n.internal_address.clone(),
                    },
                    Some(target),
                )
            }
        };
        let sealing = Arc::clone(store);
        let sealed_for = target.clone();
        let segments = tokio::task::spawn_blocking(move || sealing.seal(&sealed_for))
            .await
            .map_err(|e| HandOver::Unreadable(e.to_string()))?;
        for segment in segments {
            let path = segment.path.clone();
            let (records, damage) = tokio::task::spawn_blocking(move || HintStore::read(&path))
                .await
                .map_err(|e| HandOver::Unreadable(e.to_string()))?
                .map_err(|e| {
                    HandOver::Unreadable(format!("reading {}: {e}", segment.path.display()))
                })?;
            for record in records {
                let versions = record
                    .entry
                    .versions
                    .into_iter()
                    .map(version_from_proto)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| HandOver::Unreadable(e.to_string()))?;
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
                    .map_err(|e| HandOver::Undelivered(format!("to {}: {e}", to.id)))?;
            }
            let fate = if let Some(damage) = damage {
                tracing::error!(segment = %segment.path.display(), offset = damage.offset,
                    reason = %damage.reason, "damaged hint segment: handed over the hints before the damage, setting it aside");
                SegmentFate::Damaged
            } else {
                SegmentFate::Delivered
            };
            store.finish(target, &segment.path, fate);
        }
        Ok(())
    }
}

/// Why handing over a target's hints stopped.
enum HandOver {
    /// A segment (or a record in it) could not be read: retrying would not
    /// help.
    Unreadable(String),
    /// The receiver did not take them: retried.
    Undelivered(String),
}
