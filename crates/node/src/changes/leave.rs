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
            Err(running) => return Err(self.busy(&running, OperationKind::Decommission)),
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
        // state arrived): one goes on, the other steps back.
        if let Err(rival) = self.settle_rivals(&me).await {
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
            let endpoint = |id: &NodeId| {
                view.node(id)
                    .filter(|n| n.alive)
                    .and_then(|n| self.ctx.peers.channel(&n.internal_address).ok())
            };
            let sink = endpoint(&t.to).map(Sink::Remote);
            // This node's copy is the one handed over: it holds every write
            // it took. Once its store is found damaged, a range it cannot
            // read comes from the range's other replicas instead (as a
            // removal's does), so a damaged node can still leave.
            let mut sources = vec![(
                self.ctx.id.clone(),
                Source::Local(Arc::clone(&self.ctx.storage)),
            )];
            if self.ctx.storage.damaged() {
                sources.extend(t.sources.iter().filter(|s| **s != me).filter_map(|s| {
                    endpoint(s).map(|channel| (s.clone(), Source::Remote(channel)))
                }));
            }
            (
                sources,
                sink.into_iter().collect(),
                "the member gaining the range is down; waiting for it",
            )
        })
        .await?;
        hand_over_all(&self.ctx, self.settings.timeout, |waiting| match waiting {
            Some(why) => self.waiting(why),
            None => self.update(|op| op.error.clear()),
        })
        .await?;
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
}
