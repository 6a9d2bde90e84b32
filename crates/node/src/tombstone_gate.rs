//! Tombstone GC pauses while a member is down.
//!
//! Compaction forgets a delete's tombstone once it is older than the
//! grace period (`storage/gc.rs`). A replica that was down through the
//! delete gets the tombstone from a hint (within the hint window) or from
//! anti-entropy once it is back; if it stays down longer than the grace
//! period, the others forget the tombstone first, and when it returns its
//! stale value is the only version left: reads return it and repair copies
//! it back (a deleted key comes back; Cassandra's "zombie" rows, which it
//! leaves to the operator). So every node closes its GC gate while any
//! member that holds ranges is down, and opens it again only once every
//! such member has been up for a quiet period: two anti-entropy intervals
//! (every range repaired at least once, with the returned member, before
//! any tombstone it lacks is dropped), or the grace period when scheduled
//! anti-entropy is off. Tombstones are kept meanwhile (disk, not
//! correctness). A member gone for good stops counting once it is removed
//! (`strata removenode`) or decommissioned.
//!
//! The gate starts closed: a node that has just started does not know yet
//! who is up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_cluster::{ClusterView, NodeId, NodeState};

use crate::context::Context;
use crate::storage::GcGate;

/// How often the gate looks at the view.
const EVERY: Duration = Duration::from_secs(1);

/// How long every member must have been up before tombstones are dropped
/// again: two anti-entropy intervals, or the grace period without
/// scheduled anti-entropy.
#[must_use]
pub fn quiet_period(anti_entropy_interval: Option<Duration>, grace: Duration) -> Duration {
    anti_entropy_interval.map_or(grace, |interval| interval.saturating_mul(2))
}

/// Members holding (or taking, or handing off) ranges that the failure
/// detector believes down, by id.
#[must_use]
pub fn down_members(view: &ClusterView) -> Vec<NodeId> {
    view.nodes()
        .filter(|(_, n)| n.state != NodeState::Left && !n.tokens.is_empty() && !n.alive)
        .map(|(id, _)| id.clone())
        .collect()
}

/// Whether the gate is open at `now`, every member having been up since
/// `all_up_since` (`None`: one is down now).
#[must_use]
pub fn is_open(all_up_since: Option<Instant>, now: Instant, quiet: Duration) -> bool {
    all_up_since.is_some_and(|since| now.saturating_duration_since(since) >= quiet)
}

/// Follows the view until `stop`, opening and closing `gate`.
pub async fn follow(
    ctx: Arc<Context>,
    gate: Arc<GcGate>,
    quiet: Duration,
    stop: impl Future<Output = ()>,
) {
    let work = async {
        let mut all_up_since: Option<Instant> = None;
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let down = down_members(&ctx.view());
            match (down.is_empty(), all_up_since) {
                (true, None) => all_up_since = Some(now),
                (false, Some(_)) => {
                    all_up_since = None;
                    if gate.is_open() {
                        let down: Vec<&str> = down.iter().map(NodeId::as_str).collect();
                        tracing::warn!(
                            down = %down.join(","),
                            "tombstone GC paused while members are down: deletes' tombstones \
                             are kept until every member has been up for {quiet:?} (remove a \
                             member gone for good with `strata removenode`)"
                        );
                    }
                }
                _ => {}
            }
            let open = is_open(all_up_since, now, quiet);
            if open && !gate.is_open() {
                tracing::info!("tombstone GC on: every member has been up for {quiet:?}");
            }
            gate.set(open);
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
        ]);
        assert!(down_members(&all_up).is_empty());
    }

    #[test]
    fn the_gate_opens_a_quiet_period_after_every_member_is_up() {
        let quiet = Duration::from_secs(10);
        let since = Instant::now();
        assert!(!is_open(None, since, quiet), "a member is down");
        assert!(!is_open(Some(since), since + Duration::from_secs(9), quiet));
        assert!(is_open(Some(since), since + quiet, quiet));
        // A clock reading before `since` (never by Instant) stays closed.
        assert!(!is_open(Some(since + quiet), since, quiet));
    }

    #[test]
    fn the_quiet_period_is_two_repair_intervals_or_the_grace() {
        let grace = Duration::from_secs(864_000);
        assert_eq!(
            quiet_period(Some(Duration::from_secs(3600)), grace),
            Duration::from_secs(7200)
        );
        assert_eq!(quiet_period(None, grace), grace);
    }
}
