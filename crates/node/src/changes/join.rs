//! Joining the ring: claim tokens once no other change is in progress,
//! stream the ranges gained, become normal.

use super::*;

impl Changes {
    /// Starts (or resumes) joining the ring in the background.
    ///
    /// # Errors
    /// [`ChangeError::Refused`] when this node is already an owner or runs
    /// another change.
    pub async fn join(self: &Arc<Self>) -> Result<Operation, ChangeError> {
        let op = match self.take_slot(OperationKind::Join).await {
            Ok(op) => op,
            Err(running) if running.kind == OperationKind::Join as i32 => return Ok(*running),
            Err(running) => return Err(self.busy(&running, OperationKind::Join)),
        };
        let refused = match self.own_state() {
            Some(NodeState::Normal) => Some("this node is already a normal member of the ring"),
            Some(NodeState::Leaving | NodeState::Left) => {
                Some("this node is leaving or has left the ring")
            }
            _ => None,
        };
        if let Some(why) = refused {
            self.abandon(&op);
            return Err(ChangeError::Refused(why.into()));
        }
        let this = Arc::clone(self);
        tokio::spawn(async move { this.run_join(false).await });
        Ok(op)
    }

    /// Joins again, under the same tokens, a ring this node is a member
    /// of (normal, or waiting tokenless for a join): it becomes a pending
    /// owner of its own ranges, streams them from the other replicas and
    /// turns normal. For a member whose data directory was lost
    /// (`lost_data.rs`).
    ///
    /// # Errors
    /// [`ChangeError::Refused`] when another change runs here.
    pub async fn rejoin(self: &Arc<Self>) -> Result<Operation, ChangeError> {
        let op = self
            .take_slot(OperationKind::Join)
            .await
            .map_err(|running| self.busy(&running, OperationKind::Join))?;
        let this = Arc::clone(self);
        tokio::spawn(async move { this.run_join(true).await });
        Ok(op)
    }

    /// Where this data directory stands in getting a lost one's ranges
    /// back (`rejoin_file.rs`).
    ///
    /// # Errors
    /// The `REJOIN` file cannot be read.
    pub fn rejoin_state(&self) -> std::io::Result<Rejoin> {
        rejoin_file::load(&self.data_dir)
    }

    async fn run_join(self: Arc<Self>, lost: bool) {
        let outcome = self.join_steps(lost).await;
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "join failed");
        }
        self.finish(outcome);
    }

    /// A join, or (`lost`, recorded as running, or marked by the members)
    /// a rejoin after lost data: then the node keeps its place among its
    /// ranges' replicas, copies each range back from every other replica
    /// (`rejoin_transfers`), and says so in gossip (`Rejoin`) until done.
    async fn join_steps(&self, lost: bool) -> Result<(), String> {
        let me = self.ctx.id.clone();
        let tokens = tokens_for(&me, self.settings.vnodes);
        let op_id = self.running().map(|o| o.id).unwrap_or_default();
        let recorded =
            rejoin_file::load(&self.data_dir).map_err(|e| format!("rejoin file: {e}"))?;
        let rejoin = match recorded {
            Rejoin::Running => true,
            Rejoin::Done => false,
            Rejoin::None => lost || self.membership.lost_data_marked(),
        };
        if rejoin {
            rejoin_file::save(&self.data_dir, Rejoin::Running)
                .map_err(|e| format!("rejoin file: {e}"))?;
            let own = self
                .ctx
                .view()
                .node(&me)
                .map(|n| (n.state, n.tokens.clone()));
            let (state, held) = own.unwrap_or((NodeState::Joining, Vec::new()));
            self.membership
                .announce_rejoin(state, &held, Rejoin::Running)
                .await;
        }
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
        let (mine, copies) = if rejoin {
            (
                rejoin_transfers(view.ring(), &me, self.ctx.n()),
                Copies::Every,
            )
        } else {
            let mine = transfers(view.ring(), self.ctx.n())
                .into_iter()
                .filter(|t| t.to == me)
                .collect();
            (mine, Copies::First)
        };
        self.stream_all(&mine, &mut progress, copies, |t| {
            let view = self.ctx.view();
            let sources: Sources = t
                .sources
                .iter()
                .filter(|s| **s != me)
                .filter_map(|s| {
                    let address = view.node(s).filter(|n| n.alive)?.internal_address.clone();
                    let channel = self.ctx.peers.channel(&address).ok()?;
                    Some((s.clone(), Source::Remote(channel)))
                })
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
        if rejoin {
            // Normal first, then done: a crash between the two repeats the
            // copy rather than serving a range before it is back.
            rejoin_file::save(&self.data_dir, Rejoin::Done)
                .map_err(|e| format!("rejoin file: {e}"))?;
            self.membership
                .announce_rejoin(NodeState::Normal, &tokens, Rejoin::Done)
                .await;
            tracing::info!(
                ranges = mine.len(),
                "this node's ranges are back; it serves reads again"
            );
        }
        progress
            .remove()
            .map_err(|e| format!("progress file: {e}"))?;
        tracing::info!(ranges = mine.len(), "joined the ring");
        Ok(())
    }

    /// Claims `tokens` as a joiner once no other change is in progress
    /// and every live member routes with them. Two changes claimed at
    /// once settle it by `rival`: the one that steps back tries again.
    async fn claim(&self, me: &NodeId, tokens: &[strata_cluster::Token]) {
        loop {
            // A fresh node's first views are partial: hear the cluster
            // before looking for changes in it.
            self.wait_until_heard().await;
            let view = self.ctx.view();
            if let Some(change) = change_elsewhere(&view, me) {
                self.waiting(&format!("waiting for another change to finish: {change}"));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            self.membership.announce(NodeState::Joining, tokens).await;
            self.wait_until_routed(|state, has_tokens| state == NodeState::Joining && has_tokens)
                .await;
            if let Err(rival) = self.settle_rivals(me).await {
                tracing::warn!(%rival, "another change was claimed at the same time; stepping back");
                self.membership.announce(NodeState::Joining, &[]).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            break;
        }
    }
}
