//! The changes in progress a view shows, and which of two changes
//! claimed at the same moment goes on (pure policy over a view).

use strata_cluster::{ClusterView, NodeId, NodeInfo, NodeState};

/// Another member's change in progress, described, if any: a member
/// joining with tokens (one waiting tokenless for `Admin.Join` is not a
/// change yet) or leaving.
pub(super) fn change_elsewhere(view: &ClusterView, me: &NodeId) -> Option<String> {
    changes(view).find(|(id, _)| *id != me).map(describe)
}

/// Any member's change in progress, described.
pub(super) fn change_anywhere(view: &ClusterView) -> Option<String> {
    changes(view).next().map(describe)
}

/// The change that goes on instead of `me`'s when two started at once:
/// another member's change that cannot step back (the member is down: a
/// removal, or a change its crash interrupted) or, between two that can,
/// the one of the smaller id.
pub(super) fn rival(view: &ClusterView, me: &NodeId) -> Option<NodeId> {
    changes(view)
        .find(|(id, n)| *id != me && (*id < me || !n.alive))
        .map(|(id, _)| id.clone())
}

/// Another member's change that can step back (the member is up), if
/// any, described.
pub(super) fn live_change_elsewhere(view: &ClusterView, me: &NodeId) -> Option<String> {
    changes(view)
        .find(|(id, n)| *id != me && n.alive)
        .map(describe)
}

/// What the removal of down member `target` waits for before it works out
/// what to copy, described: a live member's change (it steps back for the
/// removal, or finishes if it had gone past that point), or the change of
/// another down member with a smaller id (another removal, which cannot
/// step back either: the smaller id goes first, and this one computes its
/// ranges from the ring that removal leaves).
pub(super) fn removal_waits_for(view: &ClusterView, target: &NodeId) -> Option<String> {
    live_change_elsewhere(view, target).or_else(|| {
        changes(view)
            .find(|(id, n)| *id < target && !n.alive)
            .map(|change| {
                format!(
                    "{}, a down member of a smaller id, goes first",
                    describe(change)
                )
            })
    })
}

/// Every member with a change in progress: joining with tokens (one
/// waiting tokenless for `Admin.Join` is not a change yet) or leaving.
fn changes(view: &ClusterView) -> impl Iterator<Item = (&NodeId, &NodeInfo)> {
    view.nodes().filter(|(_, n)| match n.state {
        NodeState::Joining => !n.tokens.is_empty(),
        NodeState::Leaving => true,
        _ => false,
    })
}

fn describe((id, n): (&NodeId, &NodeInfo)) -> String {
    if n.state == NodeState::Leaving {
        format!("{id} is leaving")
    } else {
        format!("{id} is joining")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::member;

    fn id(name: &str) -> NodeId {
        NodeId::new(name).expect("id")
    }

    /// node-1..3 normal, then `changing`: (id, state, alive); a joiner
    /// without tokens waits for `Admin.Join` and is no change yet.
    fn view(changing: &[(&str, NodeState, bool)], tokenless: &[&str]) -> ClusterView {
        let normal = ["node-1", "node-2", "node-3"]
            .into_iter()
            .map(|n| member(&id(n), "a", NodeState::Normal, true));
        let changing = changing
            .iter()
            .map(|&(n, state, alive)| member(&id(n), "a", state, alive));
        let waiting = tokenless.iter().map(|n| {
            let mut m = member(&id(n), "a", NodeState::Joining, true);
            m.gossip.tokens.clear();
            m
        });
        ClusterView::from_peers(normal.chain(changing).chain(waiting))
    }

    #[test]
    fn of_two_live_changes_the_smaller_id_goes_on() {
        let v = view(
            &[
                ("node-4", NodeState::Joining, true),
                ("node-5", NodeState::Leaving, true),
            ],
            &["node-0"],
        );
        assert_eq!(rival(&v, &id("node-4")), None);
        assert_eq!(rival(&v, &id("node-5")), Some(id("node-4")));
        // The winner still waits for the other to step back.
        assert_eq!(
            live_change_elsewhere(&v, &id("node-4")).as_deref(),
            Some("node-5 is leaving")
        );
        // A tokenless joiner (node-0) is neither a rival nor a change.
        assert_eq!(
            change_elsewhere(&v, &id("node-5")).as_deref(),
            Some("node-4 is joining")
        );
    }

    #[test]
    fn a_down_member_s_change_goes_on_whatever_its_id() {
        // node-9's removal (or its decommission cut short by a crash)
        // cannot step back, so the live joiner with the smaller id does.
        let v = view(
            &[
                ("node-4", NodeState::Joining, true),
                ("node-9", NodeState::Leaving, false),
            ],
            &[],
        );
        assert_eq!(rival(&v, &id("node-4")), Some(id("node-9")));
        // For the removal, only live changes are waited for.
        assert_eq!(
            live_change_elsewhere(&v, &id("node-9")).as_deref(),
            Some("node-4 is joining")
        );
        let alone = view(&[("node-9", NodeState::Leaving, false)], &["node-4"]);
        assert_eq!(live_change_elsewhere(&alone, &id("node-9")), None);
        assert_eq!(rival(&alone, &id("node-9")), None);
    }

    #[test]
    fn with_nothing_changing_there_is_no_rival() {
        let v = view(&[("node-4", NodeState::Joining, true)], &["node-5"]);
        assert_eq!(rival(&v, &id("node-4")), None);
        assert_eq!(change_elsewhere(&v, &id("node-4")), None);
        assert_eq!(change_anywhere(&v).as_deref(), Some("node-4 is joining"));
        assert_eq!(live_change_elsewhere(&v, &id("node-4")), None);
    }

    #[test]
    fn of_two_removals_the_smaller_id_goes_first_and_live_changes_are_waited_for() {
        let two = view(
            &[
                ("node-5", NodeState::Leaving, false),
                ("node-8", NodeState::Leaving, false),
            ],
            &[],
        );
        assert_eq!(removal_waits_for(&two, &id("node-5")), None);
        assert_eq!(
            removal_waits_for(&two, &id("node-8")).as_deref(),
            Some("node-5 is leaving, a down member of a smaller id, goes first")
        );
        let with_joiner = view(
            &[
                ("node-4", NodeState::Joining, true),
                ("node-5", NodeState::Leaving, false),
            ],
            &[],
        );
        assert_eq!(
            removal_waits_for(&with_joiner, &id("node-5")).as_deref(),
            Some("node-4 is joining")
        );
    }
}
