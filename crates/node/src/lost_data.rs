//! A founding member that starts with a new, empty data directory while
//! gossip still remembers an earlier process under its id that owned
//! ranges (its disk was lost or wiped, and `--initial-cluster` still names
//! it): it boots normal, as founders do, so it would serve its ranges empty
//! until the scheduled repair (a Merkle repair of an empty replica measured
//! 0.1 MiB/s: every leaf differs). Instead it says so and joins again under
//! the same tokens (`Changes::rejoin`): a pending owner of its own ranges,
//! serving no reads, streaming them from the other replicas, then normal.
//!
//! Gossip forgets a dead process after an hour; a node wiped and restarted
//! later is not recognised (docs/topology.md, "A lost data directory").

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use strata_cluster::{NodeGossip, NodeId, NodeState};

use crate::changes::Changes;
use crate::membership::Membership;

/// How long after start gossip is watched for an earlier life.
const WATCH: Duration = Duration::from_secs(60);
/// How often it is looked at meanwhile.
const EVERY: Duration = Duration::from_millis(250);

/// The earlier life, among `earlier` (what older processes under this id
/// gossiped, oldest first), whose data this incarnation lacks: another
/// incarnation that owned ranges (normal or leaving, with tokens).
#[must_use]
pub fn lost(earlier: &[NodeGossip], incarnation: u64) -> Option<&NodeGossip> {
    earlier.iter().rev().find(|life| {
        life.incarnation != incarnation
            && matches!(life.state, NodeState::Normal | NodeState::Leaving)
            && !life.tokens.is_empty()
    })
}

/// Watches gossip for [`WATCH`] after start; when an earlier life with
/// data shows up, logs it and joins again to stream this node's ranges
/// back. Ends at `stop`.
pub async fn watch(
    membership: Arc<Membership>,
    changes: Arc<Changes>,
    me: NodeId,
    incarnation: u64,
    stop: impl Future<Output = ()>,
) {
    let work = async {
        let deadline = tokio::time::Instant::now() + WATCH;
        let earlier = loop {
            if let Some(life) = lost(&membership.earlier_lives().await, incarnation) {
                break life.clone();
            }
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(EVERY).await;
        };
        tracing::error!(
            earlier_incarnation = earlier.incarnation,
            incarnation,
            tokens = earlier.tokens.len(),
            "this node started with a new data directory, but an earlier process under its id \
             owned ranges (its data directory was lost or wiped); joining again under the same \
             tokens to stream its ranges back from the other replicas (`strata progress` \
             follows it)"
        );
        // The other replicas must be seen alive first (gossip needs a few
        // rounds after start).
        while !membership
            .view()
            .nodes()
            .any(|(id, n)| n.alive && *id != me)
        {
            tokio::time::sleep(EVERY).await;
        }
        match changes.rejoin().await {
            Ok(op) => {
                tracing::info!(operation = %op.id, "streaming this node's ranges back from the other replicas");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot stream this node's ranges back; run `strata repair` on it");
            }
        }
    };
    tokio::select! {
        () = work => {}
        () = stop => {}
    }
}

#[cfg(test)]
mod tests {
    use strata_cluster::Token;

    use super::*;

    fn life(incarnation: u64, state: NodeState, tokens: usize) -> NodeGossip {
        NodeGossip {
            grpc_address: "127.0.0.1:7400".into(),
            internal_address: String::new(),
            gossip_address: String::new(),
            tokens: (0..tokens as u64).map(Token).collect(),
            state,
            load_bytes: 0,
            incarnation,
            departures: Vec::new(),
        }
    }

    #[test]
    fn only_another_incarnation_that_owned_ranges_is_a_loss() {
        // The same incarnation: a restart before the first RING write, its
        // data (if any) is in this directory.
        assert!(lost(&[life(7, NodeState::Normal, 8)], 7).is_none());
        // Never owned anything: a tokenless or joining earlier life.
        assert!(lost(&[life(5, NodeState::Normal, 0)], 7).is_none());
        assert!(lost(&[life(5, NodeState::Joining, 8)], 7).is_none());
        assert!(lost(&[life(5, NodeState::Left, 8)], 7).is_none());
        // Owned ranges under another incarnation: the newest such life.
        let lives = [
            life(4, NodeState::Normal, 8),
            life(5, NodeState::Leaving, 8),
        ];
        assert_eq!(lost(&lives, 7).map(|l| l.incarnation), Some(5));
    }
}
