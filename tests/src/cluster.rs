//! A cluster of `strata-node` processes gossiping on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use strata_cluster::{Member, NodeId, NodeState, Ring, Token};
use strata_proto::v1::{
    self, GetRingRequest, MerkleNodesRequest, admin_client::AdminClient, kv_client::KvClient,
    replica_client::ReplicaClient,
};
use tonic::transport::Channel;

use crate::NodeProcess;

/// Flags every test node gets: fast gossip so failures are detected in
/// about a second.
const FAST_GOSSIP: &[&str] = &[
    "--gossip-interval-ms",
    "100",
    "--request-timeout-ms",
    "2000",
];

/// How long a cluster may take to agree on who is alive.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Nodes `node-0 .. node-{n-1}`, each in its own directory under one
/// temporary root. Dropping the cluster kills every node and removes the
/// directories.
#[derive(Debug)]
pub struct Cluster {
    nodes: Vec<Option<NodeProcess>>,
    args: Vec<String>,
    root: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes with extra flags `args` (e.g. `--replication-factor
    /// 3`) and waits until every node sees all of them alive.
    ///
    /// # Panics
    /// When a node does not start or the cluster does not converge.
    pub async fn start(n: usize, args: &[&str]) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let mut cluster = Self {
            nodes: Vec::new(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            root,
        };
        for i in 0..n {
            let node = cluster.spawn(i);
            cluster.nodes.push(Some(node));
        }
        cluster.wait_until_alive(n).await;
        cluster
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.root.path().join(format!("node-{i}"))
    }

    /// Starts node `i`, seeded with every running node's address (gossip
    /// listens on the gRPC port number, over UDP).
    fn spawn(&self, i: usize) -> NodeProcess {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(_, n)| n.as_ref().map(|n| n.addr().to_string()))
            .collect();
        let mut args: Vec<&str> = FAST_GOSSIP.to_vec();
        args.extend(self.args.iter().map(String::as_str));
        let seeds = seeds.join(",");
        if !seeds.is_empty() {
            args.extend(["--seeds", seeds.as_str()]);
        }
        let id = format!("node-{i}");
        NodeProcess::start(&self.data_dir(i), Some(&id), &args)
    }

    /// Node `i`'s gRPC address.
    ///
    /// # Panics
    /// When node `i` is stopped.
    #[must_use]
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.nodes[i].as_ref().expect("node is running").addr()
    }

    /// Addresses of the running nodes, by index.
    #[must_use]
    pub fn running(&self) -> Vec<(usize, SocketAddr)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i, n.addr())))
            .collect()
    }

    /// Kills node `i` (SIGKILL) and waits until the others see it down.
    pub async fn kill(&mut self, i: usize) {
        drop(self.nodes[i].take());
        let alive = self.running().len();
        self.wait_until_alive(alive).await;
    }

    /// Restarts node `i` on its data directory and waits until every
    /// running node sees all running nodes alive.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node-{i} is running");
        let node = self.spawn(i);
        self.nodes[i] = Some(node);
        let alive = self.running().len();
        self.wait_until_alive(alive).await;
    }

    /// Waits until every running node's ring shows exactly `alive` live
    /// members at the running nodes' current addresses.
    ///
    /// # Panics
    /// After 30 seconds without agreement.
    pub async fn wait_until_alive(&self, alive: usize) {
        let started = Instant::now();
        let expected: Vec<String> = self.running().iter().map(|(_, a)| a.to_string()).collect();
        loop {
            let mut agreed = true;
            let mut last = String::new();
            for (i, addr) in self.running() {
                match admin(addr).await.get_ring(GetRingRequest {}).await {
                    Ok(ring) => {
                        let ring = ring.into_inner();
                        let live: Vec<&str> = ring
                            .nodes
                            .iter()
                            .filter(|n| n.alive)
                            .map(|n| n.grpc_address.as_str())
                            .collect();
                        if live.len() != alive
                            || !expected.iter().all(|e| live.contains(&e.as_str()))
                        {
                            agreed = false;
                            last = format!("node-{i} sees {live:?}");
                        }
                    }
                    Err(e) => {
                        agreed = false;
                        last = format!("node-{i}: {e}");
                    }
                }
            }
            if agreed {
                return;
            }
            assert!(
                started.elapsed() < CONVERGE_TIMEOUT,
                "cluster did not converge on {alive} live nodes: {last}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Cluster {
    /// Compares every running replica's Merkle root (at `depth`) for every
    /// range of the ring with replication factor `n`. `Ok` when all agree;
    /// otherwise how many ranges differ and the first one.
    ///
    /// # Errors
    /// A description of the disagreement (or of an RPC that failed).
    pub async fn replicas_converged(&self, n: usize, depth: u32) -> Result<usize, String> {
        let running = self.running();
        let (_, any) = running.first().ok_or("no node is running")?;
        let ring = admin(*any)
            .await
            .get_ring(GetRingRequest {})
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        let mut addresses = std::collections::HashMap::new();
        let members: Vec<Member> = ring
            .nodes
            .iter()
            .map(|node| {
                let id = NodeId::new(node.node_id.clone()).expect("valid id");
                addresses.insert(id.clone(), node.grpc_address.clone());
                Member {
                    id,
                    tokens: node.tokens.iter().map(|t| Token(*t)).collect(),
                    state: NodeState::Normal,
                }
            })
            .collect();
        let ring = Ring::new(members);
        let mut ranges = 0;
        let mut differing = Vec::new();
        for member in ring.members() {
            for (range, replicas) in ring.replicated_ranges(&member.id, n, true) {
                ranges += 1;
                let mut roots = Vec::new();
                for holder in &replicas {
                    let address = &addresses[holder];
                    let addr: SocketAddr =
                        address.parse().map_err(|e| format!("{address}: {e}"))?;
                    let root = replica(addr)
                        .await
                        .merkle_nodes(MerkleNodesRequest {
                            range: Some(v1::TokenRange {
                                start: range.start.0,
                                end: range.end.0,
                            }),
                            depth,
                            positions: vec![1],
                        })
                        .await
                        .map_err(|e| format!("MerkleNodes on {holder}: {e}"))?
                        .into_inner()
                        .hashes;
                    roots.push(root);
                }
                if roots.windows(2).any(|w| w[0] != w[1]) {
                    differing.push((range, replicas));
                }
            }
        }
        match differing.first() {
            None => Ok(ranges),
            Some((range, replicas)) => Err(format!(
                "{} of {ranges} ranges differ, e.g. {range:?} on {replicas:?}",
                differing.len()
            )),
        }
    }

    /// Waits until [`Cluster::replicas_converged`] holds; returns how long
    /// that took.
    ///
    /// # Panics
    /// When the replicas still differ after `timeout`.
    pub async fn wait_until_converged(&self, n: usize, depth: u32, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            match self.replicas_converged(n, depth).await {
                Ok(_) => return started.elapsed(),
                Err(e) => assert!(
                    started.elapsed() < timeout,
                    "replicas did not converge within {timeout:?}: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("connect")
}

/// A KV client bound to one node: that node coordinates every request.
pub async fn kv(addr: SocketAddr) -> KvClient<Channel> {
    KvClient::new(channel(addr).await).max_decoding_message_size(64 << 20)
}

/// The admin service of one node.
pub async fn admin(addr: SocketAddr) -> AdminClient<Channel> {
    AdminClient::new(channel(addr).await)
}

/// The internal replica service of one node: what it stores, unmerged
/// with other replicas.
pub async fn replica(addr: SocketAddr) -> ReplicaClient<Channel> {
    ReplicaClient::new(channel(addr).await)
}
