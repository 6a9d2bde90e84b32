//! `strata.v1.Admin`: ring, status, topology changes, repair, ping.

use strata_cluster::NodeId;
use strata_proto::v1::{
    ClusterStatus, DecommissionRequest, GetClusterStatusRequest, GetNodeStatusRequest,
    GetProgressRequest, GetProgressResponse, GetRingRequest, JoinRequest, NodeStatus, Operation,
    PingRequest, PingResponse, RepairRequest, Ring, admin_server::Admin,
};
use tonic::{Request, Response, Status};

use super::not_yet;

const MEMBERSHIP: &str = "gossip membership and the ring (cluster request-path issue)";
const TOPOLOGY: &str = "topology changes with range streaming (topology issue)";
const REPAIR: &str = "Merkle-tree anti-entropy (failure-survival issue)";

/// Operator-facing API of one node.
#[derive(Debug)]
pub(crate) struct AdminService {
    node_id: NodeId,
}

impl AdminService {
    pub(crate) fn new(node_id: NodeId) -> Self {
        Self { node_id }
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn get_ring(&self, _: Request<GetRingRequest>) -> Result<Response<Ring>, Status> {
        Err(not_yet("Admin.GetRing", MEMBERSHIP))
    }

    async fn get_node_status(
        &self,
        _: Request<GetNodeStatusRequest>,
    ) -> Result<Response<NodeStatus>, Status> {
        Err(not_yet("Admin.GetNodeStatus", MEMBERSHIP))
    }

    async fn get_cluster_status(
        &self,
        _: Request<GetClusterStatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        Err(not_yet("Admin.GetClusterStatus", MEMBERSHIP))
    }

    async fn join(&self, _: Request<JoinRequest>) -> Result<Response<Operation>, Status> {
        Err(not_yet("Admin.Join", TOPOLOGY))
    }

    async fn decommission(
        &self,
        _: Request<DecommissionRequest>,
    ) -> Result<Response<Operation>, Status> {
        Err(not_yet("Admin.Decommission", TOPOLOGY))
    }

    async fn repair(&self, _: Request<RepairRequest>) -> Result<Response<Operation>, Status> {
        Err(not_yet("Admin.Repair", REPAIR))
    }

    async fn get_progress(
        &self,
        _: Request<GetProgressRequest>,
    ) -> Result<Response<GetProgressResponse>, Status> {
        Err(not_yet("Admin.GetProgress", TOPOLOGY))
    }

    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Ok(Response::new(PingResponse {
            payload: request.into_inner().payload,
            node_id: self.node_id.to_string(),
        }))
    }
}
