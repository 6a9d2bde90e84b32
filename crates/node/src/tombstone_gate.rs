//! Tombstone GC pauses while a member is down.
//!
//! Compaction forgets a delete's tombstone once it is older than the
//! grace period (`storage/gc.rs`). A replica that was down through the
//! delete gets the tombstone from a hint (within the hint window) or from
//! anti-entropy once it is back; if it stays down longer than the grace
//! period, the others forget the tombstone first, and when it returns its
//! stale value is the only version left: reads return it and repair copies
//! it back (a deleted key comes back; Cassandra's "zombie" rows, which it
//! leaves to the operator).
//!
//! So every node closes its GC gate while any member that holds ranges is
//! down, and opens it again only once it has repaired every range it
//! replicates with every replica, in a repair that started after a member
//! was last seen down (each exchange with a returned member then ran
//! after its return): each tombstone this node holds has then reached
//! every replica of its key (or been superseded there), and every other
//! holder keeps its copy until its own such repair. The scheduled repair
//! covers every range, instead of the primary ones, while the gate waits
//! for it (`Repairer::schedule`); `strata repair` counts too (the only way
//! with `--anti-entropy-interval-secs 0`). Tombstones are kept meanwhile
//! (disk, not correctness). A member gone for good stops counting once it
//! is removed (`strata removenode`) or decommissioned.
//!
//! The gate starts closed, with every member taken as down until the
//! store opened: a node that has just started does not know yet who is
//! up, and may not even have heard of the others. A node alone in its
//! cluster waits for a repair too (with no other replica to reach, it
//! completes at once).

use std::sync::Arc;
use std::time::Duration;

use strata_cluster::{ClusterView, NodeId, NodeState};

use crate::clock::now_micros;
use crate::context::Context;
use crate::storage::GcGate;

/// How often the gate looks at the view.
const EVERY: Duration = Duration::from_secs(1);

/// Members holding (or taking, or handing off) ranges that the failure
/// detector believes down.
#[must_use]
pub fn down_members(view: &ClusterView) -> Vec<NodeId> {
    view.nodes()
        .filter(|(_, n)| n.state != NodeState::Left && !n.tokens.is_empty() && !n.alive)
        .map(|(id, _)| id.clone())
        .collect()
}

/// Follows the view until `stop`, telling `ctx`'s store's gate whether
/// every member is up, and saying when GC pauses and resumes.
pub async fn follow(ctx: Arc<Context>, stop: impl Future<Output = ()>) {
    let gate: Arc<GcGate> = Arc::clone(ctx.storage.tombstone_gate());
    let work = async {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut was_open, mut said_waiting) = (gate.is_open(), false);
        loop {
            tick.tick().await;
            let down = down_members(&ctx.view());
            gate.observe(down.is_empty(), now_micros());
            let open = gate.is_open();
            if !open && was_open {
                let down: Vec<&str> = down.iter().map(NodeId::as_str).collect();
                tracing::warn!(
                    down = %down.join(","),
                    "tombstone GC paused: deletes' tombstones are kept until every member \
                     is up and this node has repaired its ranges with them (remove a member \
                     gone for good with `strata removenode`)"
                );
            }
            let waiting = gate.wants_full_repair();
            if waiting && !said_waiting {
                tracing::info!(
                    "every member is up: tombstone GC resumes after the next repair of every \
                     range this node replicates (the next scheduled repair, or `strata repair`)"
                );
            }
            if open && !was_open {
                tracing::info!(
                    "tombstone GC on: every member is up and this node's ranges are repaired"
                );
            }
            (was_open, said_waiting) = (open, waiting);
            ctx.metrics.set_tombstone_gc_paused(!open);
        }
    };
    tokio::select! {
        () = work => {}
        () = stop => {}
    }
}

#[cfg(test)]
mod tests {
    use strata_cluster::Peer;

    use super::*;
    use crate::testing::member;

    /// `id` in `state`, up or down; `owns`: with tokens, else none.
    fn peer(id: &str, state: NodeState, owns: bool, alive: bool) -> Peer {
        let mut peer = member(&NodeId::new(id).expect("id"), "a:1", state, alive);
        if !owns {
            peer.gossip.tokens.clear();
        }
        peer
    }

    #[test]
    fn members_with_ranges_that_are_down_close_the_gate() {
        let view = ClusterView::from_peers([
            peer("a", NodeState::Normal, true, true),
            peer("b", NodeState::Normal, true, false),
            peer("c", NodeState::Leaving, true, false),
            peer("d", NodeState::Joining, true, false),
            // Gone, or holding nothing: no range waits for them.
            peer("e", NodeState::Left, true, false),
            peer("f", NodeState::Normal, false, false),
        ]);
        let ids: Vec<String> = down_members(&view)
            .iter()
            .map(|id| id.as_str().to_owned())
            .collect();
        assert_eq!(ids, ["b", "c", "d"]);
        let all_up = ClusterView::from_peers([
            peer("a", NodeState::Normal, true, true),
            peer("e", NodeState::Left, true, false),
            peer("f", NodeState::Normal, false, false),
        ]);
        assert!(down_members(&all_up).is_empty());
    }
}
