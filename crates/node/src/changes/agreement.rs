//! Waiting until every live member routes with a node's new state, and
//! until the changes started at the same time have settled which goes on.

use super::*;

/// What [`Changes::agree`] waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    /// Every live member knows this node and the same members.
    Heard,
    /// That, the node in an accepted state everywhere, and no member
    /// cleaning up.
    Seen,
}

impl Changes {
    /// Waits until every live member's ring shows this node in a state
    /// that `routed(state, has_tokens)` accepts, and the same members as
    /// this node's view: from then on every coordinator sends this node's
    /// pending writes, and the ranges computed here are the ranges the
    /// others route by (a fresh node's first views are partial).
    pub(super) async fn wait_until_routed(&self, routed: impl Fn(NodeState, bool) -> bool) {
        self.wait_until_seen(&self.ctx.id, routed).await;
    }

    /// Waits until this node has heard the cluster: every live member
    /// knows it and the same members as this node's view (a fresh node's
    /// first views are partial). A member cleaning up does not hold this
    /// up: the change about to be claimed stops the cleanup.
    pub(super) async fn wait_until_heard(&self) {
        self.agree(&self.ctx.id, |_, _| true, Until::Heard).await;
    }

    /// Waits until every live member's ring shows `node` in a state that
    /// `routed(state, has_tokens)` accepts, with the same members as this
    /// node's view, and none is cleaning up.
    pub(super) async fn wait_until_seen(
        &self,
        node: &NodeId,
        routed: impl Fn(NodeState, bool) -> bool,
    ) {
        self.agree(node, routed, Until::Seen).await;
    }

    /// Polls every live member's ring until each has the same members as
    /// this node's view and `node` in a state `routed` accepts (and, for
    /// [`Until::Seen`], is not cleaning up), saying what it waits for in
    /// the running operation.
    async fn agree(&self, node: &NodeId, routed: impl Fn(NodeState, bool) -> bool, until: Until) {
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
                let Ok(channel) = self.ctx.peers.channel(&node.internal_address) else {
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
                        if until == Until::Seen && ring.cleaning {
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
            self.waiting(&match until {
                Until::Seen => format!("waiting for every live member to see {me}'s new state"),
                Until::Heard => {
                    "waiting to hear from every live member, each knowing the same members"
                        .to_owned()
                }
            });
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Once `node`'s change is routed everywhere, the changes claimed at
    /// the same moment (each checked before the other's claim arrived)
    /// settle which goes on: `Err(rival)` when `node`'s must step back
    /// (`rival`), else waits until no other member shows a change it can
    /// step back from, so that the ranges computed next come from a ring
    /// with this change alone in it.
    pub(super) async fn settle_rivals(&self, node: &NodeId) -> Result<(), NodeId> {
        loop {
            let view = self.ctx.view();
            if let Some(rival) = rival(&view, node) {
                return Err(rival);
            }
            let Some(change) = live_change_elsewhere(&view, node) else {
                return Ok(());
            };
            self.waiting(&format!(
                "waiting for a change started at the same time to step back: {change}"
            ));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
