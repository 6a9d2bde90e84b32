//! Where to send a key's requests: the ring a node reported, turned into
//! an ordered list of node addresses per key.

use strata_cluster::{ClusterView, NodeGossip, NodeId, NodeState, Peer, Token};
use strata_proto::v1;

/// A snapshot of the cluster for routing.
#[derive(Debug, Clone, Default)]
pub(crate) struct Routing {
    view: ClusterView,
    replication_factor: usize,
    /// The ring's epoch on the node that reported it.
    pub(crate) epoch: u64,
}

impl Routing {
    /// Builds routing from a `GetRing` answer. Nodes with unreadable ids
    /// are skipped (they cannot be routed to by id anyway).
    pub(crate) fn from_ring(ring: &v1::Ring) -> Self {
        let peers = ring.nodes.iter().filter_map(|n| {
            Some(Peer {
                id: NodeId::new(n.node_id.clone()).ok()?,
                generation: 0,
                gossip: NodeGossip {
                    grpc_address: n.grpc_address.clone(),
                    internal_address: String::new(),
                    gossip_address: String::new(),
                    tokens: n.tokens.iter().copied().map(Token).collect(),
                    state: match v1::NodeState::try_from(n.state) {
                        Ok(v1::NodeState::Joining) => NodeState::Joining,
                        Ok(v1::NodeState::Leaving) => NodeState::Leaving,
                        Ok(v1::NodeState::Left) => NodeState::Left,
                        _ => NodeState::Normal,
                    },
                    load_bytes: n.load_bytes,
                    incarnation: 0,
                    departures: Vec::new(),
                    // Read from the other replicas first, as coordinators do.
                    rejoin: if n.rejoining {
                        strata_cluster::Rejoin::Running
                    } else {
                        strata_cluster::Rejoin::None
                    },
                },
                alive: n.alive,
            })
        });
        Self {
            view: ClusterView::from_peers(peers),
            replication_factor: ring
                .replication
                .as_ref()
                .map_or(1, |r| r.replication_factor as usize),
            epoch: ring.epoch,
        }
    }

    /// Addresses to try for `key`, best first: live replicas in ring order,
    /// then any other live node (which forwards to a replica), then the
    /// replicas believed down (the belief may be stale).
    pub(crate) fn candidates(&self, key: &[u8]) -> Vec<String> {
        let replicas = self
            .view
            .read_targets(Token::of(key), self.replication_factor);
        let address = |id: &NodeId| self.view.node(id).map(|n| n.grpc_address.clone());
        let mut out: Vec<String> = replicas
            .iter()
            .filter(|t| t.alive)
            .filter_map(|t| address(&t.id))
            .collect();
        for (id, node) in self.view.nodes() {
            if node.alive && node.state != NodeState::Left && !replicas.iter().any(|t| t.id == *id)
            {
                out.push(node.grpc_address.clone());
            }
        }
        out.extend(
            replicas
                .iter()
                .filter(|t| !t.alive)
                .filter_map(|t| address(&t.id)),
        );
        out.retain(|a| !a.is_empty());
        out
    }

    /// Each node's effective ownership: the fraction of the key space it
    /// is a current replica of (with N replicas the shares sum to N).
    pub(crate) fn replica_shares(&self) -> std::collections::HashMap<NodeId, f64> {
        self.view.ring().replica_shares(self.replication_factor)
    }

    /// Every node's address.
    pub(crate) fn addresses(&self) -> Vec<String> {
        self.view
            .nodes()
            .map(|(_, n)| n.grpc_address.clone())
            .filter(|a| !a.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(alive: [bool; 4]) -> v1::Ring {
        v1::Ring {
            nodes: (0..4)
                .map(|i| {
                    let id = NodeId::new(format!("n{i}")).expect("id");
                    v1::RingNode {
                        node_id: id.to_string(),
                        grpc_address: format!("127.0.0.1:{}", 7400 + i),
                        state: v1::NodeState::Normal as i32,
                        tokens: strata_cluster::tokens_for(&id, 32)
                            .into_iter()
                            .map(|t| t.0)
                            .collect(),
                        load_bytes: 0,
                        alive: alive[i],
                        rejoining: false,
                    }
                })
                .collect(),
            replication: Some(v1::ReplicationSettings {
                replication_factor: 2,
                ..v1::ReplicationSettings::default()
            }),
            epoch: 1,
            cleaning: false,
        }
    }

    #[test]
    fn live_replicas_come_first_then_other_nodes_then_down_replicas() {
        let all = Routing::from_ring(&ring([true; 4]));
        let order = all.candidates(b"key");
        assert_eq!(order.len(), 4);
        // The first two are the key's replicas.
        let view = &all.view;
        let replicas: Vec<String> = view
            .read_targets(Token::of(b"key"), 2)
            .iter()
            .map(|t| view.node(&t.id).expect("node").grpc_address.clone())
            .collect();
        assert_eq!(order[..2], replicas[..]);

        // The first replica down: it moves to the end.
        let first_down: usize = replicas[0]
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<usize>().ok())
            .expect("port")
            - 7400;
        let mut alive = [true; 4];
        alive[first_down] = false;
        let order = Routing::from_ring(&ring(alive)).candidates(b"key");
        assert_eq!(order[0], replicas[1]);
        assert_eq!(order.last(), Some(&replicas[0]));

        // The first replica copying lost data back: not read first, and
        // still a replica (the next node does not take its place).
        let mut rejoining = ring([true; 4]);
        rejoining.nodes[first_down].rejoining = true;
        let order = Routing::from_ring(&rejoining).candidates(b"key");
        assert_eq!(order[0], replicas[1]);
        assert!(!order[..1].contains(&replicas[0]), "{order:?}");
        assert_eq!(order.len(), 4);
    }
}
