//! Every node of a cluster must run with the same replication factor N:
//! placement, quorums, repair and cleanup all follow it, and a node with a
//! smaller N than its peers would clean up ranges they expect it to hold.
//! N cannot change on a live cluster (the operator refuses the edit), so a
//! node that disagrees with its peers was started with the wrong flag.
//!
//! Each node gossips its N. Between two live nodes that disagree, the one
//! started later (the higher gossip generation) is the misconfigured one:
//! it stops with an error naming the other; the older one logs it.

/// A live peer's replication factor as gossip shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerFactor {
    /// The peer's id.
    pub id: String,
    /// Its gossip generation (start time).
    pub generation: u64,
    /// The N it gossips (`None`: a node that does not publish it).
    pub replication_factor: Option<u32>,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: &str, generation: u64, n: Option<u32>, live: bool) -> PeerFactor {
        PeerFactor {
            id: id.to_owned(),
            generation,
            replication_factor: n,
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
}
