//! Removing a member that is gone for good: copy its ranges from the
//! surviving replicas to their new owners, then gossip it as left.

use super::*;

impl Changes {
    /// Starts removing `target`, a member that is down for good: its
    /// ranges are copied from the surviving replicas to their new owners
    /// (this node orchestrates), then it is `Left` everywhere.
    ///
    /// # Errors
    /// [`ChangeError::Refused`] with the reason: unknown, this node, up
    /// (decommission it instead), fewer than N normal members would
    /// remain, or another change is in progress.
    pub async fn remove_node(self: &Arc<Self>, target: &NodeId) -> Result<Operation, ChangeError> {
        let mut op = self
            .take_slot(OperationKind::RemoveNode)
            .await
            .map_err(|running| self.busy(&running, OperationKind::RemoveNode))?;
        if let Err(refused) = self.check_removal(&self.ctx.view(), target) {
            self.abandon(&op);
            return Err(refused);
        }
        // Named after the node removed, not this one that runs it (which
        // `node_id` says): `removenode-n1-...` read as n1 being removed.
        op.id = format!(
            "{}-{target}-{:x}",
            kind_name(OperationKind::RemoveNode),
            op.started_at_micros
        );
        self.update(|running| running.id.clone_from(&op.id));
        let known = self.membership.known().await;
        let incarnation = known
            .members()
            .find(|(id, _)| *id == target)
            .map_or(0, |(_, m)| m.incarnation);
        let this = Arc::clone(self);
        let target = target.clone();
        tokio::spawn(async move { this.run_removal(target, incarnation).await });
        Ok(op)
    }

    /// Preconditions of removing `target`, checked against `view`.
    fn check_removal(&self, view: &ClusterView, target: &NodeId) -> Result<(), ChangeError> {
        if *target == self.ctx.id {
            return Err(ChangeError::Refused(
                "a node cannot remove itself; decommission it".into(),
            ));
        }
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
        if let Some(change) = change_elsewhere(view, target) {
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
        Ok(())
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
        if self.try_begin(OperationKind::RemoveNode).is_err() {
            return;
        }
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
        // A live change claimed at the same moment steps back for a
        // removal (a down node cannot step back) or finishes first; of two
        // removals, the smaller id goes first.
        while let Some(change) = removal_waits_for(&self.ctx.view(), target) {
            self.waiting(&format!(
                "waiting for another change to step back or finish: {change}"
            ));
            tokio::time::sleep(Duration::from_millis(200)).await;
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
            let sources: Sources = t
                .sources
                .iter()
                .filter(|s| *s != target)
                .filter_map(|s| {
                    let source = if *s == me {
                        Some(Source::Local(Arc::clone(&self.ctx.storage)))
                    } else {
                        endpoint(s).map(Source::Remote)
                    };
                    source.map(|source| (s.clone(), source))
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
}
