//! `strata.v1.Admin`: ring, status, topology changes, repair, ping.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use strata_cluster::{ConsistencyLevel, NodeId, NodeInfo, Token, TokenRange};
use strata_proto::v1::{
    CleanupRequest, ClusterStatus, DecommissionRequest, EngineStats, GetClusterStatusRequest,
    GetNodeStatusRequest, GetProgressRequest, GetProgressResponse, GetRingRequest, JoinRequest,
    LevelStats, NodeState, NodeStatus, Operation, PingRequest, PingResponse, RemoveNodeRequest,
    RepairRequest, ReplicationSettings, Ring, RingNode, admin_client::AdminClient,
    admin_server::Admin,
};

use crate::context::Context;
use crate::repair::Repairer;
use tonic::{Request, Response, Status};

use crate::changes::Changes;

/// Operator-facing API of one node: the ring and cluster as this node's
/// gossip sees them, its own status, repairs and their progress, ping.
#[derive(Debug)]
pub(crate) struct AdminService {
    node_id: NodeId,
    addr: SocketAddr,
    ctx: Arc<Context>,
    repairer: Arc<Repairer>,
    /// `None` without gossip (a fixed topology): no topology changes.
    changes: Option<Arc<Changes>>,
    started: Instant,
}

impl AdminService {
    pub(crate) fn new(
        node_id: NodeId,
        addr: SocketAddr,
        ctx: Arc<Context>,
        repairer: Arc<Repairer>,
        changes: Option<Arc<Changes>>,
    ) -> Self {
        Self {
            node_id,
            addr,
            ctx,
            repairer,
            changes,
            started: Instant::now(),
        }
    }

    fn replication(&self) -> ReplicationSettings {
        let r = self.ctx.settings.replication;
        ReplicationSettings {
            replication_factor: r.factor,
            write_quorum: level_count(r.write, r.factor),
            read_quorum: level_count(r.read, r.factor),
            last_write_wins: r.last_write_wins,
            strict_quorum: r.strict_quorum,
        }
    }

    fn status(&self) -> NodeStatus {
        let storage = &self.ctx.storage;
        let stats = storage.db().stats();
        let load = storage.load_bytes();
        NodeStatus {
            node_id: self.node_id.to_string(),
            grpc_address: self.addr.to_string(),
            state: self
                .ctx
                .view()
                .node(&self.node_id)
                .map_or(NodeState::Normal, |n| node_state(n.state)) as i32,
            alive: true,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: self.started.elapsed().as_secs(),
            load_bytes: load,
            engine: Some(EngineStats {
                levels: stats
                    .levels
                    .iter()
                    .enumerate()
                    .map(|(level, l)| LevelStats {
                        level: u32::try_from(level).unwrap_or(u32::MAX),
                        files: l.files as u64,
                        bytes: l.bytes,
                    })
                    .collect(),
                write_amplification: stats.write_amplification,
                stall_micros: stats.stall_micros,
                block_cache_hit_rate: stats.block_cache_hit_rate,
                memtable_bytes: stats.memtable_bytes as u64,
                failure: storage.failure().unwrap_or_default(),
            }),
            hints_pending: self.ctx.hints.pending().0,
            last_repair_micros: self.repairer.last_completed_micros(),
            tombstone_gc_paused: !storage.tombstone_gate().is_open(),
        }
    }
}

/// A level's replica count with replication factor `n` (0 if impossible).
/// A ring member's status as gossip reports it (no engine detail).
fn gossiped_status(id: &NodeId, node: &NodeInfo) -> NodeStatus {
    NodeStatus {
        node_id: id.to_string(),
        grpc_address: node.grpc_address.clone(),
        state: node_state(node.state) as i32,
        alive: node.alive,
        load_bytes: node.load_bytes,
        ..NodeStatus::default()
    }
}

fn node_state(state: strata_cluster::NodeState) -> NodeState {
    match state {
        strata_cluster::NodeState::Joining => NodeState::Joining,
        strata_cluster::NodeState::Normal => NodeState::Normal,
        strata_cluster::NodeState::Leaving => NodeState::Leaving,
        strata_cluster::NodeState::Left => NodeState::Left,
    }
}

impl AdminService {
    fn changes(&self) -> Result<&Arc<Changes>, Status> {
        self.changes.as_ref().ok_or_else(|| {
            Status::failed_precondition("this node runs without gossip: no topology changes")
        })
    }
}

fn level_count(level: ConsistencyLevel, n: u32) -> u32 {
    level.required_acks(n).unwrap_or(0)
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn get_ring(&self, _: Request<GetRingRequest>) -> Result<Response<Ring>, Status> {
        let epoch = self.ctx.topology.epoch();
        let view = self.ctx.view();
        let nodes = view
            .nodes()
            .map(|(id, node)| {
                // A member that left keeps gossiping its last tokens, but
                // owns none of them.
                let mut tokens: Vec<u64> = if node.state == strata_cluster::NodeState::Left {
                    Vec::new()
                } else {
                    node.tokens.iter().map(|t| t.0).collect()
                };
                tokens.sort_unstable();
                RingNode {
                    node_id: id.to_string(),
                    grpc_address: node.grpc_address.clone(),
                    state: node_state(node.state) as i32,
                    tokens,
                    load_bytes: node.load_bytes,
                    alive: node.alive,
                    rejoining: node.rejoining,
                }
            })
            .collect();
        Ok(Response::new(Ring {
            nodes,
            replication: Some(self.replication()),
            epoch,
            cleaning: self.changes.as_ref().is_some_and(|c| c.cleaning()),
        }))
    }

    async fn get_node_status(
        &self,
        _: Request<GetNodeStatusRequest>,
    ) -> Result<Response<NodeStatus>, Status> {
        Ok(Response::new(self.status()))
    }

    async fn get_cluster_status(
        &self,
        _: Request<GetClusterStatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        let view = self.ctx.view();
        // Each live member reports its own status (engine detail included);
        // gossip fills in for members that are down or slow to answer.
        let asks = view.nodes().map(|(id, node)| async move {
            if *id == self.node_id {
                return self.status();
            }
            if node.alive
                && let Ok(channel) = self.ctx.peers.channel(&node.internal_address)
            {
                let mut request = Request::new(GetNodeStatusRequest {});
                request.set_timeout(std::time::Duration::from_secs(1));
                if let Ok(status) = AdminClient::new(channel).get_node_status(request).await {
                    return status.into_inner();
                }
            }
            gossiped_status(id, node)
        });
        let nodes = futures::future::join_all(asks).await;
        Ok(Response::new(ClusterStatus {
            nodes,
            replication: Some(self.replication()),
            topology_change: self.changes.as_ref().and_then(|c| c.running()),
        }))
    }

    async fn join(&self, _: Request<JoinRequest>) -> Result<Response<Operation>, Status> {
        self.changes()?
            .join()
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn decommission(
        &self,
        request: Request<DecommissionRequest>,
    ) -> Result<Response<Operation>, Status> {
        let target = request.into_inner().node_id;
        if target.is_empty() || target == self.node_id.as_str() {
            return self
                .changes()?
                .decommission()
                .await
                .map(Response::new)
                .map_err(Status::from);
        }
        // Another node: it runs its own decommission; ask it.
        let view = self.ctx.view();
        let node = NodeId::new(&target)
            .ok()
            .and_then(|id| view.node(&id).cloned())
            .ok_or_else(|| Status::not_found(format!("no member {target:?} in the ring")))?;
        if !node.alive {
            return Err(Status::failed_precondition(format!(
                "{target} is down: a decommission streams from the node itself; bring it back, or remove it"
            )));
        }
        let channel = self
            .ctx
            .peers
            .channel(&node.internal_address)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        AdminClient::new(channel)
            .decommission(DecommissionRequest { node_id: target })
            .await
    }

    async fn cleanup(&self, _: Request<CleanupRequest>) -> Result<Response<Operation>, Status> {
        self.changes()?
            .cleanup()
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn remove_node(
        &self,
        request: Request<RemoveNodeRequest>,
    ) -> Result<Response<Operation>, Status> {
        let target = request.into_inner().node_id;
        let target =
            NodeId::new(&target).map_err(|e| Status::invalid_argument(format!("node_id: {e}")))?;
        self.changes()?
            .remove_node(&target)
            .await
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn repair(&self, request: Request<RepairRequest>) -> Result<Response<Operation>, Status> {
        let ranges: Vec<TokenRange> = request
            .into_inner()
            .ranges
            .into_iter()
            .map(|r| TokenRange {
                start: Token(r.start),
                end: Token(r.end),
            })
            .collect();
        self.repairer
            .start(&ranges, false)
            .map(Response::new)
            .map_err(Status::from)
    }

    async fn get_progress(
        &self,
        request: Request<GetProgressRequest>,
    ) -> Result<Response<GetProgressResponse>, Status> {
        let id = request.into_inner().operation_id;
        let mut operations = self
            .changes
            .as_ref()
            .map(|c| c.operations(&id))
            .unwrap_or_default();
        operations.extend(self.repairer.operations(&id));
        if !id.is_empty() && operations.is_empty() {
            return Err(Status::not_found(format!(
                "no operation {id:?} on this node (finished operations are kept until {} newer ones)",
                16
            )));
        }
        Ok(Response::new(GetProgressResponse { operations }))
    }

    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse {
            payload: request.into_inner().payload,
            node_id: self.node_id.to_string(),
        }))
    }
}
