//! What a change asked of this node does while another operation runs
//! here (pure): a cleanup is asked to stop, a join that only waits for its
//! `normal` to be routed everywhere is waited for, anything else refuses
//! it with the running operation's id.

use strata_cluster::NodeState;
use strata_proto::v1::{Operation, OperationKind};

use super::ChangeError;

/// What a change asked while another operation runs here does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Busy {
    /// A cleanup yields to a change: ask it to stop, wait for it.
    StopCleanup,
    /// The running join has streamed and announced `normal` (every ring
    /// shows this node `normal`, or soon will); it ends once every live
    /// member routes it. A decommission asked as soon as `strata ring`
    /// shows the join done waits for that instead of failing.
    AwaitEnd,
    /// Refused: see [`refusal`].
    Refuse,
}

/// What a `wanted` change does while `running` runs on a node whose own
/// ring shows it `own`.
pub(super) fn when_busy(
    running: &Operation,
    wanted: OperationKind,
    own: Option<NodeState>,
) -> Busy {
    let running_kind = OperationKind::try_from(running.kind).unwrap_or(OperationKind::Unspecified);
    match running_kind {
        OperationKind::Cleanup if wanted != OperationKind::Cleanup => Busy::StopCleanup,
        // A join asked during a join is answered with the running one.
        OperationKind::Join
            if matches!(
                wanted,
                OperationKind::Decommission | OperationKind::RemoveNode
            ) && own == Some(NodeState::Normal) =>
        {
            Busy::AwaitEnd
        }
        _ => Busy::Refuse,
    }
}

/// The refusal of a `wanted` change because `running` still runs here on
/// node `node` (after [`when_busy`]'s wait, if it had one).
pub(super) fn refusal(running: &Operation, wanted: OperationKind, node: &str) -> ChangeError {
    let running_kind = OperationKind::try_from(running.kind).unwrap_or(OperationKind::Unspecified);
    ChangeError::Refused(
        if running_kind == OperationKind::Cleanup && wanted != OperationKind::Cleanup {
            format!(
                "this node's cleanup {} has not stopped yet; try again in a few seconds",
                running.id
            )
        } else {
            format!(
                "this node is running operation {} already; follow it with `strata progress --node {node}` and ask again once it has finished",
                running.id
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(kind: OperationKind) -> Operation {
        Operation {
            id: "op-1".to_owned(),
            kind: kind as i32,
            ..Operation::default()
        }
    }

    #[test]
    fn a_join_that_only_waits_to_be_routed_is_waited_for() {
        let join = running(OperationKind::Join);
        for wanted in [OperationKind::Decommission, OperationKind::RemoveNode] {
            assert_eq!(
                when_busy(&join, wanted, Some(NodeState::Normal)),
                Busy::AwaitEnd
            );
            // Still streaming (or tokenless): it may run for hours.
            for own in [Some(NodeState::Joining), None] {
                assert_eq!(when_busy(&join, wanted, own), Busy::Refuse);
            }
        }
        // A join asked again gets the running one at once; an automatic
        // cleanup just tries again later.
        for wanted in [OperationKind::Join, OperationKind::Cleanup] {
            assert_eq!(
                when_busy(&join, wanted, Some(NodeState::Normal)),
                Busy::Refuse
            );
        }
    }

    #[test]
    fn a_cleanup_yields_and_other_operations_refuse() {
        let cleanup = running(OperationKind::Cleanup);
        assert_eq!(
            when_busy(
                &cleanup,
                OperationKind::Decommission,
                Some(NodeState::Normal)
            ),
            Busy::StopCleanup
        );
        assert_eq!(
            when_busy(&cleanup, OperationKind::Cleanup, Some(NodeState::Normal)),
            Busy::Refuse
        );
        for kind in [
            OperationKind::Decommission,
            OperationKind::RemoveNode,
            OperationKind::Repair,
            OperationKind::Unspecified,
        ] {
            for own in [Some(NodeState::Normal), Some(NodeState::Leaving), None] {
                assert_eq!(
                    when_busy(&running(kind), OperationKind::Decommission, own),
                    Busy::Refuse,
                    "{kind:?} {own:?}"
                );
            }
        }
        let mut unknown = running(OperationKind::Join);
        unknown.kind = 99;
        assert_eq!(
            when_busy(&unknown, OperationKind::Join, Some(NodeState::Normal)),
            Busy::Refuse
        );
    }

    #[test]
    fn a_refusal_names_the_running_operation_and_what_to_do() {
        let message =
            |running_kind, wanted| refusal(&running(running_kind), wanted, "node-4").to_string();
        assert_eq!(
            message(OperationKind::Join, OperationKind::Decommission),
            "this node is running operation op-1 already; follow it with `strata progress --node node-4` and ask again once it has finished"
        );
        assert_eq!(
            message(OperationKind::Cleanup, OperationKind::Join),
            "this node's cleanup op-1 has not stopped yet; try again in a few seconds"
        );
        assert!(message(OperationKind::Cleanup, OperationKind::Cleanup).contains("op-1 already"));
    }
}
