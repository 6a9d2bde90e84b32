//! How a node starts: as what it was, as a founding member, or as a joiner.

use crate::NodeState;

/// What a node knows about itself when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootFacts {
    /// Its own state as recorded in its data directory, if any.
    pub recorded: Option<NodeState>,
    /// Its data directory held a node before this start (an identity, data)
    /// even without a recorded state (a node from before states were kept).
    pub existing: bool,
    /// It is named in the initial member list of a brand-new cluster.
    pub initial_member: bool,
    /// An initial member list was given at all.
    pub initial_list: bool,
    /// It was given seeds (other members to contact).
    pub has_seeds: bool,
    /// A fresh node joins by itself rather than waiting for `Admin.Join`.
    pub auto_bootstrap: bool,
}

/// How to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Boot {
    /// Serve as an owner of its ranges at once.
    Normal,
    /// Join now: claim tokens, stream the ranges gained, become `Normal`
    /// (also how an interrupted join resumes).
    Join,
    /// Wait, tokenless, for `Admin.Join`.
    AwaitJoin,
    /// Resume an interrupted decommission.
    Leave,
    /// Do not start; the message says why and what to do.
    Refuse(String),
}

/// The start decision. A node with a recorded state restarts as what it
/// was; a fresh node is a founding member (named in the initial list, or
/// alone with no list and no seeds) or a joiner.
#[must_use]
pub fn boot(facts: BootFacts) -> Boot {
    match facts.recorded {
        Some(NodeState::Normal) => return Boot::Normal,
        Some(NodeState::Joining) => return Boot::Join,
        Some(NodeState::Leaving) => return Boot::Leave,
        Some(NodeState::Left) => {
            return Boot::Refuse(
                "this node has left the cluster (decommissioned or removed); to use it again, \
                 wipe its data directory and start it as a new node, which joins"
                    .to_owned(),
            );
        }
        None => {}
    }
    if facts.existing {
        // Data from before node states were recorded: it was an owner.
        return Boot::Normal;
    }
    let founding = facts.initial_member || (!facts.initial_list && !facts.has_seeds);
    if founding {
        Boot::Normal
    } else if facts.auto_bootstrap {
        Boot::Join
    } else {
        Boot::AwaitJoin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> BootFacts {
        BootFacts {
            recorded: None,
            existing: false,
            initial_member: false,
            initial_list: false,
            has_seeds: true,
            auto_bootstrap: true,
        }
    }

    #[test]
    fn a_node_restarts_as_what_it_was() {
        for (state, expected) in [
            (NodeState::Normal, Boot::Normal),
            (NodeState::Joining, Boot::Join),
            (NodeState::Leaving, Boot::Leave),
        ] {
            let facts = BootFacts {
                recorded: Some(state),
                initial_member: true,
                ..fresh()
            };
            assert_eq!(boot(facts), expected);
        }
        let left = BootFacts {
            recorded: Some(NodeState::Left),
            ..fresh()
        };
        assert!(matches!(boot(left), Boot::Refuse(m) if m.contains("wipe")));
        let old = BootFacts {
            existing: true,
            ..fresh()
        };
        assert_eq!(boot(old), Boot::Normal, "data without a recorded state");
    }

    #[test]
    fn fresh_nodes_found_a_cluster_or_join_it() {
        let founder = BootFacts {
            initial_member: true,
            initial_list: true,
            ..fresh()
        };
        assert_eq!(boot(founder), Boot::Normal);
        let alone = BootFacts {
            has_seeds: false,
            ..fresh()
        };
        assert_eq!(boot(alone), Boot::Normal, "a single node");
        assert_eq!(boot(fresh()), Boot::Join);
        let not_listed = BootFacts {
            initial_list: true,
            has_seeds: false,
            ..fresh()
        };
        assert_eq!(boot(not_listed), Boot::Join);
        let manual = BootFacts {
            auto_bootstrap: false,
            ..fresh()
        };
        assert_eq!(boot(manual), Boot::AwaitJoin);
    }
}
