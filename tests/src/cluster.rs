//! A cluster of `strata-node` processes gossiping on loopback.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use strata_cluster::{Member, NodeId, NodeState, Ring, Token};
use strata_proto::v1::{
    self, GetNodeStatusRequest, GetProgressRequest, GetRingRequest, MerkleNodesRequest,
    OperationState, RepairRequest, ReplicaReadRequest, admin_client::AdminClient,
    kv_client::KvClient, replica_client::ReplicaClient,
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
    /// `--initial-cluster`: the nodes `start` created.
    founders: String,
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
            founders: (0..n)
                .map(|i| format!("node-{i}"))
                .collect::<Vec<_>>()
                .join(","),
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

    fn fault_file(&self, i: usize) -> PathBuf {
        self.root.path().join(format!("node-{i}.faults"))
    }

    /// Cuts node `i` off from every other node, both ways (clients still
    /// reach it).
    pub fn partition(&self, i: usize) {
        let others: Vec<String> = self
            .running()
            .into_iter()
            .filter(|(j, _)| *j != i)
            .map(|(j, addr)| {
                std::fs::write(self.fault_file(j), format!("{}\n", self.addr(i)))
                    .expect("write fault file");
                addr.to_string()
            })
            .collect();
        std::fs::write(self.fault_file(i), others.join("\n")).expect("write fault file");
    }

    /// Splits the running nodes into `groups`: each node reaches only the
    /// nodes of its own group (clients still reach every node). Call it
    /// again after a node restarts, to cut its new address too.
    pub fn partition_groups(&self, groups: &[&[usize]]) {
        let running = self.running();
        for &(i, _) in &running {
            let group = groups
                .iter()
                .find(|g| g.contains(&i))
                .copied()
                .unwrap_or(&[]);
            let cut: Vec<String> = running
                .iter()
                .filter(|(j, _)| *j != i && !group.contains(j))
                .map(|(_, addr)| addr.to_string())
                .collect();
            std::fs::write(self.fault_file(i), cut.join("\n")).expect("write fault file");
        }
    }

    /// Cuts node `from`'s links to the `to` nodes at `from` only: its
    /// requests to them fail and it drops gossip to and from them, while
    /// their requests to it still arrive (an asymmetric fault). Replaces
    /// whatever `from` had cut before.
    pub fn cut_one_way(&self, from: usize, to: &[usize]) {
        let cut: Vec<String> = to.iter().map(|&j| self.addr(j).to_string()).collect();
        std::fs::write(self.fault_file(from), cut.join("\n")).expect("write fault file");
    }

    /// Kills node `i` (SIGKILL) without waiting for anyone to notice (the
    /// others may be cut off from it).
    pub fn crash(&mut self, i: usize) {
        drop(self.nodes[i].take());
    }

    /// Stops node `i` as Kubernetes does (SIGTERM) and returns its exit
    /// status.
    ///
    /// # Panics
    /// When it has not exited 30 seconds later.
    pub fn stop(&mut self, i: usize) -> std::process::ExitStatus {
        let mut node = self.nodes[i].take().expect("node is running");
        node.terminate(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("node-{i} did not stop within 30 s of SIGTERM"))
    }

    /// Starts crashed node `i` again on its data directory, without waiting
    /// for the cluster to agree (it may be cut off). Its fault file still
    /// applies from its first packet.
    pub fn start_again(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node-{i} is running");
        let node = self.spawn(i);
        self.nodes[i] = Some(node);
    }

    /// Starts a new node, `node-<next index>`, with a fresh data directory:
    /// it joins the ring (streaming its ranges) by itself. Returns its
    /// index; does not wait for the join to finish.
    pub fn add(&mut self) -> usize {
        let i = self.nodes.len();
        let node = self.spawn(i);
        self.nodes.push(Some(node));
        i
    }

    /// Waits (bounded) until node `i` exits by itself; returns its log.
    ///
    /// # Panics
    /// When it is still running after 30 seconds.
    pub async fn wait_for_exit(&mut self, i: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let node = self.nodes[i].as_mut().expect("node was started");
            if node.exited().is_some() {
                let log = node.log();
                self.nodes[i] = None;
                return log;
            }
            if Instant::now() >= deadline {
                let log = node.log();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "node-{i} is still running; its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        for i in 0..self.nodes.len() {
            std::fs::write(self.fault_file(i), "").expect("clear fault file");
        }
    }

    /// Pauses node `i` (SIGSTOP).
    pub fn pause(&self, i: usize) {
        self.nodes[i].as_ref().expect("node is running").pause();
    }

    /// Resumes node `i` (SIGCONT).
    pub fn resume(&self, i: usize) {
        self.nodes[i].as_ref().expect("node is running").resume();
    }

    /// Node `i`'s log so far (also of a crashed node: the file stays).
    #[must_use]
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.data_dir(i).with_extension("log")).unwrap_or_default()
    }

    /// Deletes stopped node `i`'s data directory: a lost disk.
    pub fn wipe(&self, i: usize) {
        assert!(self.nodes[i].is_none(), "stop node-{i} first");
        std::fs::remove_dir_all(self.data_dir(i)).expect("wipe data dir");
    }

    /// Total hints the running nodes hold.
    pub async fn hints_pending(&self) -> u64 {
        hints_pending_at(&self.running()).await
    }

    /// Runs `Admin.Repair` on every running node in turn and waits for
    /// each; returns the keys the repairs merged.
    ///
    /// # Panics
    /// When a repair fails or takes longer than a minute.
    pub async fn repair_all(&self) -> u64 {
        repair_all_at(&self.running()).await
    }

    /// The live values of each key as every running node stores it,
    /// asserting that exactly `replicas` nodes hold each key and agree.
    ///
    /// # Panics
    /// When a key has another number of holders or they disagree.
    pub async fn final_values(
        &self,
        keys: impl IntoIterator<Item = String>,
        replicas: usize,
    ) -> HashMap<String, Vec<String>> {
        final_values_at(&self.running(), keys, replicas).await
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
        let fault_file = self.fault_file(i);
        let fault_file = fault_file.to_str().expect("utf-8 temp path");
        args.extend(["--fault-file", fault_file]);
        args.extend(["--initial-cluster", self.founders.as_str()]);
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

    /// Node `i`'s process.
    ///
    /// # Panics
    /// When node `i` is stopped.
    #[must_use]
    pub fn process(&self, i: usize) -> &NodeProcess {
        self.nodes[i].as_ref().expect("node is running")
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

    /// The running nodes' addresses as a `--seeds` value (each node's
    /// gossip address is its gRPC address).
    #[must_use]
    pub fn seeds(&self) -> String {
        self.running()
            .iter()
            .map(|(_, a)| a.to_string())
            .collect::<Vec<_>>()
            .join(",")
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

    /// Whether every running node's ring shows `node` in `state` (a node
    /// that does not answer counts as not seeing it).
    pub async fn all_see_state(&self, node: &str, state: v1::NodeState) -> bool {
        for (_, addr) in self.running() {
            let seen = match admin(addr).await.get_ring(GetRingRequest {}).await {
                Ok(ring) => ring
                    .into_inner()
                    .nodes
                    .iter()
                    .any(|n| n.node_id == node && n.state == state as i32),
                Err(_) => false,
            };
            if !seen {
                return false;
            }
        }
        true
    }

    /// Waits until every running node's ring shows exactly `alive` live
    /// members at the running nodes' current addresses.
    ///
    /// # Panics
    /// After 30 seconds without agreement.
    pub async fn wait_until_alive(&self, alive: usize) {
        let all: Vec<usize> = self.running().iter().map(|(i, _)| *i).collect();
        self.wait_until_alive_among(&all, alive).await;
    }

    /// Waits until each of the `observers` sees exactly `alive` live
    /// members, all of them among the observers (the others are down,
    /// paused or cut off).
    ///
    /// # Panics
    /// After 30 seconds without agreement.
    pub async fn wait_until_alive_among(&self, observers: &[usize], alive: usize) {
        let started = Instant::now();
        let observed: Vec<(usize, SocketAddr)> = self
            .running()
            .into_iter()
            .filter(|(i, _)| observers.contains(i))
            .collect();
        let expected: Vec<String> = observed.iter().map(|(_, a)| a.to_string()).collect();
        loop {
            let mut agreed = true;
            let mut last = String::new();
            for &(i, addr) in &observed {
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
    /// The ring as a running node reports it, and each member's address.
    ///
    /// # Errors
    /// When no node answers.
    pub async fn ring(&self) -> Result<(Ring, HashMap<NodeId, String>), String> {
        let running = self.running();
        let (_, any) = running.first().ok_or("no node is running")?;
        let ring = admin(*any)
            .await
            .get_ring(GetRingRequest {})
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        let mut addresses = HashMap::new();
        // Members that left own nothing.
        let members: Vec<Member> = ring
            .nodes
            .iter()
            .filter(|node| node.state != v1::NodeState::Left as i32)
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
        Ok((Ring::new(members), addresses))
    }

    /// Compares every running replica's Merkle root (at `depth`) for every
    /// range of the ring with replication factor `n`. `Ok` when all agree;
    /// otherwise how many ranges differ and the first one.
    ///
    /// # Errors
    /// A description of the disagreement (or of an RPC that failed).
    pub async fn replicas_converged(&self, n: usize, depth: u32) -> Result<usize, String> {
        let (ring, addresses) = self.ring().await?;
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

/// Total hints `nodes` hold.
pub async fn hints_pending_at(nodes: &[(usize, SocketAddr)]) -> u64 {
    let mut total = 0;
    for &(_, addr) in nodes {
        if let Ok(status) = admin(addr)
            .await
            .get_node_status(GetNodeStatusRequest {})
            .await
        {
            total += status.into_inner().hints_pending;
        }
    }
    total
}

/// Runs `Admin.Repair` on each of `nodes` in turn and waits for
/// each; returns the keys the repairs merged.
///
/// # Panics
/// When a repair fails or takes longer than a minute.
pub async fn repair_all_at(nodes: &[(usize, SocketAddr)]) -> u64 {
    let mut keys = 0;
    for &(i, addr) in nodes {
        let mut node = admin(addr).await;
        let op = node
            .repair(RepairRequest::default())
            .await
            .expect("start repair")
            .into_inner();
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = node
                .get_progress(GetProgressRequest {
                    operation_id: op.id.clone(),
                })
                .await
                .expect("progress")
                .into_inner()
                .operations
                .remove(0);
            match OperationState::try_from(now.state) {
                Ok(OperationState::Succeeded) => {
                    keys += now.keys_transferred;
                    break;
                }
                Ok(OperationState::Failed) => {
                    panic!("repair on node-{i} failed: {}", now.error)
                }
                _ => assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "repair on node-{i} is stuck: {now:?}"
                ),
            }
        }
    }
    keys
}

/// The live values of each key as each of `nodes` stores it,
/// asserting that exactly `replicas` nodes hold each key and agree.
///
/// # Panics
/// When a key has another number of holders or they disagree.
pub async fn final_values_at(
    nodes: &[(usize, SocketAddr)],
    keys: impl IntoIterator<Item = String>,
    replicas: usize,
) -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    let running = nodes;
    for key in keys {
        let mut seen: Option<Vec<String>> = None;
        let mut holders = 0;
        for (i, addr) in running {
            let versions = stored_versions(*addr, &key).await;
            if versions.is_empty() {
                continue; // not a replica of this key
            }
            holders += 1;
            let mut values: Vec<String> = versions
                .iter()
                .filter(|v| !v.tombstone)
                .map(|v| String::from_utf8_lossy(&v.value).into_owned())
                .collect();
            values.sort();
            match &seen {
                Some(s) => assert_eq!(s, &values, "node-{i} disagrees on {key}"),
                None => seen = Some(values),
            }
        }
        assert_eq!(holders, replicas, "{key} is on {holders} nodes");
        out.insert(key, seen.unwrap_or_default());
    }
    out
}

async fn channel(addr: SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("connect")
}

/// Flips bytes in the first data block of every table in the store under
/// `data_dir` (a stopped node's): their checksums then fail. Returns how
/// many tables.
///
/// # Panics
/// If the store cannot be read or written.
#[must_use]
pub fn damage_tables(data_dir: &std::path::Path) -> usize {
    let mut damaged = 0;
    for entry in std::fs::read_dir(data_dir.join("engine")).expect("engine dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "sst") {
            let mut bytes = std::fs::read(&path).expect("read table");
            bytes[10] ^= 0x5a;
            std::fs::write(&path, bytes).expect("write table");
            damaged += 1;
        }
    }
    damaged
}

/// A KV client bound to one node: that node coordinates every request.
pub async fn kv(addr: SocketAddr) -> KvClient<Channel> {
    KvClient::new(channel(addr).await).max_decoding_message_size(64 << 20)
}

/// Deletes `key` through node `addr` at QUORUM, superseding what a QUORUM
/// read there finds (as `strata delete` does).
///
/// # Panics
/// When the read or the delete fails.
pub async fn delete_at_quorum(addr: SocketAddr, key: &[u8]) {
    let quorum = Some(v1::Consistency::named(v1::ConsistencyLevel::Quorum));
    let mut client = kv(addr).await;
    let context = client
        .get(v1::GetRequest {
            key: key.to_vec().into(),
            consistency: quorum,
        })
        .await
        .expect("get before the delete")
        .into_inner()
        .context;
    client
        .delete(v1::DeleteRequest {
            key: key.to_vec().into(),
            context,
            consistency: quorum,
            request_id: 0,
        })
        .await
        .expect("delete at QUORUM");
}

/// The operations one node runs and remembers (`Admin.GetProgress`).
///
/// # Errors
/// The node's status when it does not answer.
pub async fn operations(addr: SocketAddr) -> Result<Vec<v1::Operation>, tonic::Status> {
    admin(addr)
        .await
        .get_progress(GetProgressRequest::default())
        .await
        .map(|r| r.into_inner().operations)
}

/// The admin service of one node.
pub async fn admin(addr: SocketAddr) -> AdminClient<Channel> {
    AdminClient::new(channel(addr).await)
}

/// The ring node `addr` serves (`Admin.GetRing`).
///
/// # Panics
/// When the call fails.
pub async fn ring_at(addr: SocketAddr) -> v1::Ring {
    admin(addr)
        .await
        .get_ring(GetRingRequest {})
        .await
        .expect("ring")
        .into_inner()
}

/// The versions node `addr` itself stores for `key` (no coordinator
/// merge; empty if it holds none).
///
/// # Panics
/// When the replica read fails.
pub async fn stored_versions(addr: SocketAddr, key: &str) -> Vec<v1::Version> {
    replica(addr)
        .await
        .read(ReplicaReadRequest {
            key: key.as_bytes().to_vec().into(),
        })
        .await
        .expect("replica read")
        .into_inner()
        .versions
}

/// The internal replica service of one node: what it stores, unmerged
/// with other replicas.
pub async fn replica(addr: SocketAddr) -> ReplicaClient<Channel> {
    ReplicaClient::new(channel(addr).await)
}
