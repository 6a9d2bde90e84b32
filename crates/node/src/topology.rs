//! Where a node's view of the cluster comes from: gossip, or a fixed view.

use std::sync::Arc;

use strata_cluster::{ClusterView, NodeGossip, NodeId, NodeState, Peer, tokens_for};

use crate::membership::Membership;

/// Where the cluster view comes from.
#[derive(Debug, Clone)]
pub enum Topology {
    /// Gossip: the live view.
    Gossip(Arc<Membership>),
    /// A fixed view (a single node without gossip, and tests).
    Fixed(Arc<ClusterView>),
}

impl Topology {
    /// A view holding only `node`, with `vnodes` tokens.
    #[must_use]
    pub fn single(node: &NodeId, vnodes: usize) -> Self {
        Self::Fixed(Arc::new(ClusterView::from_peers([Peer {
            id: node.clone(),
            generation: 0,
            gossip: NodeGossip {
                grpc_address: String::new(),
                internal_address: String::new(),
                gossip_address: String::new(),
                tokens: tokens_for(node, vnodes),
                state: NodeState::Normal,
                load_bytes: 0,
                incarnation: 1,
                departures: Vec::new(),
                rejoin: strata_cluster::Rejoin::None,
            },
            alive: true,
        }])))
    }

    /// The current view.
    #[must_use]
    pub fn view(&self) -> Arc<ClusterView> {
        match self {
            Self::Gossip(m) => m.view(),
            Self::Fixed(v) => Arc::clone(v),
        }
    }

    /// Increases when a member, state, token set or incarnation changes
    /// (see `Membership::ring_changes`).
    #[must_use]
    pub fn ring_changes(&self) -> u64 {
        match self {
            Self::Gossip(m) => m.ring_changes(),
            Self::Fixed(_) => 0,
        }
    }

    /// Whether a request for which `enough` says whether a view has the
    /// live replicas it needs may be served on `view` now: gossip has
    /// settled since this node started, or `view` knows every founder and
    /// is enough (`gossip_settle.rs`). A fixed view always may.
    pub fn may_serve(&self, view: &ClusterView, enough: impl Fn(&ClusterView) -> bool) -> bool {
        match self {
            Self::Gossip(m) => m.settle().may_serve(view, enough),
            Self::Fixed(_) => true,
        }
    }

    /// Waits, `at_most`, until [`Topology::may_serve`] holds for the
    /// current view.
    pub async fn wait_to_serve(
        &self,
        at_most: std::time::Duration,
        enough: impl Fn(&ClusterView) -> bool,
    ) {
        if let Self::Gossip(m) = self {
            let settle = m.settle();
            settle
                .wait(at_most, || settle.may_serve(&m.view(), &enough))
                .await;
        }
    }

    /// Increases when the view changes.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        match self {
            Self::Gossip(m) => m.epoch(),
            Self::Fixed(_) => 1,
        }
    }
}
