//! Every node of a cluster must run with the same replication factor N:
//! placement, quorums, repair and cleanup all follow it, and a node with a
//! smaller N than its peers would clean up ranges they expect it to hold.
//! N cannot change on a live cluster (the operator refuses the edit), so a
//! node that disagrees with its peers was started with the wrong flag.
//!
//! Each node gossips its N. Between two live nodes that disagree, the one
//! started later (the higher gossip generation) is the misconfigured one:
//! it stops with an error naming the other; the older one logs it.
//!
//! Each node also gossips its write policy (`--last-write-wins`,
//! `--strict-quorum`). Those are per coordinator and a rolling restart
//! that changes them passes through a mixed cluster, so a difference is
//! only reported, once per peer and policy, not acted on.

/// A live peer's replication factor as gossip shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFactor {
    /// The peer's id.
    pub id: String,
    /// Its gossip generation (start time).
    pub generation: u64,
    /// The N it gossips (`None`: a node that does not publish it).
    pub replication_factor: Option<u32>,
    /// The write policy it gossips (`None`: not published).
    pub write_policy: Option<String>,
    /// The failure detector's verdict.
    pub live: bool,
}

/// A peer that runs with another replication factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disagreement {
    /// The peer.
    pub peer: String,
    /// Its N.
    pub theirs: u32,
    /// This node's N.
    pub mine: u32,
    /// Whether it started before this node (then this one must stop).
    pub older: bool,
}

/// The live peers whose N differs from `mine`, for the node with
/// `generation`; peers that started earlier first.
#[must_use]
pub fn disagreements(mine: u32, generation: u64, peers: &[PeerFactor]) -> Vec<Disagreement> {
    let mut found: Vec<(u64, Disagreement)> = peers
        .iter()
        .filter(|p| p.live)
        .filter_map(|p| {
            let theirs = p.replication_factor.filter(|n| *n != mine)?;
            Some((
                p.generation,
                Disagreement {
                    peer: p.id.clone(),
                    theirs,
                    mine,
                    older: p.generation < generation,
                },
            ))
        })
        .collect();
    found.sort_by_key(|(generation, _)| *generation);
    found.into_iter().map(|(_, d)| d).collect()
}

/// The write policy a node with these settings gossips.
#[must_use]
pub fn write_policy(last_write_wins: bool, strict_quorum: bool) -> String {
    let conflicts = if last_write_wins {
        "last-write-wins"
    } else {
        "siblings"
    };
    let quorum = if strict_quorum {
        "strict-quorum"
    } else {
        "sloppy-quorum"
    };
    format!("{conflicts} {quorum}")
}

/// The live peers whose write policy differs from `mine`, with theirs.
#[must_use]
pub fn policy_differences<'a>(mine: &str, peers: &'a [PeerFactor]) -> Vec<(&'a str, &'a str)> {
    peers
        .iter()
        .filter(|p| p.live)
        .filter_map(|p| {
            let theirs = p.write_policy.as_deref().filter(|w| *w != mine)?;
            Some((p.id.as_str(), theirs))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, generation: u64, n: Option<u32>, live: bool) -> PeerFactor {
        PeerFactor {
            id: id.to_owned(),
            generation,
            replication_factor: n,
            write_policy: None,
            live,
        }
    }

    #[test]
    fn only_live_peers_with_another_factor_disagree_and_the_elders_come_first() {
        let peers = [
            peer("same", 1, Some(3), true),
            peer("silent", 2, None, true),
            peer("dead", 3, Some(2), false),
            peer("younger", 20, Some(5), true),
            peer("older", 5, Some(2), true),
        ];
        assert_eq!(
            disagreements(3, 10, &peers),
            [
                Disagreement {
                    peer: "older".to_owned(),
                    theirs: 2,
                    mine: 3,
                    older: true
                },
                Disagreement {
                    peer: "younger".to_owned(),
                    theirs: 5,
                    mine: 3,
                    older: false
                },
            ]
        );
        assert!(disagreements(3, 10, &peers[..3]).is_empty());
    }

    #[test]
    fn live_peers_with_another_write_policy_are_reported_with_theirs() {
        let mine = write_policy(false, true);
        assert_eq!(mine, "siblings strict-quorum");
        let with = |id: &str, policy: Option<String>, live: bool| PeerFactor {
            write_policy: policy,
            ..peer(id, 1, Some(3), live)
        };
        let peers = [
            with("same", Some(mine.clone()), true),
            with("lww", Some(write_policy(true, true)), true),
            with("sloppy", Some(write_policy(false, false)), true),
            with("down", Some(write_policy(true, false)), false),
            with("silent", None, true),
        ];
        assert_eq!(
            policy_differences(&mine, &peers),
            [
                ("lww", "last-write-wins strict-quorum"),
                ("sloppy", "siblings sloppy-quorum")
            ]
        );
    }
}
