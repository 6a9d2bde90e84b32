//! `strata.v1.Replica`: the node-to-node service.

use std::pin::Pin;

use strata_proto::v1::{
    ApplyBatchResponse, DeliverHintsRequest, DeliverHintsResponse, KeyVersionsBatch,
    MerkleNodesRequest, MerkleNodesResponse, ReplicaReadRequest, ReplicaReadResponse,
    ReplicaWriteRequest, ReplicaWriteResponse, StreamRangeRequest, replica_server::Replica,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::not_yet;

const REPLICA_PATH: &str = "the replica path over the engine (cluster request-path issue)";
const HINTS: &str = "hinted handoff (failure-survival issue)";
const ANTI_ENTROPY: &str = "Merkle-tree anti-entropy (failure-survival issue)";
const STREAMING: &str = "range streaming (topology issue)";

/// Serves other nodes: replica reads and writes, hints, repair, streaming.
#[derive(Debug, Default)]
pub(crate) struct ReplicaService;

#[tonic::async_trait]
impl Replica for ReplicaService {
    type StreamRangeStream =
        Pin<Box<dyn Stream<Item = Result<KeyVersionsBatch, Status>> + Send + 'static>>;

    async fn write(
        &self,
        _: Request<ReplicaWriteRequest>,
    ) -> Result<Response<ReplicaWriteResponse>, Status> {
        Err(not_yet("Replica.Write", REPLICA_PATH))
    }

    async fn read(
        &self,
        _: Request<ReplicaReadRequest>,
    ) -> Result<Response<ReplicaReadResponse>, Status> {
        Err(not_yet("Replica.Read", REPLICA_PATH))
    }

    async fn deliver_hints(
        &self,
        _: Request<DeliverHintsRequest>,
    ) -> Result<Response<DeliverHintsResponse>, Status> {
        Err(not_yet("Replica.DeliverHints", HINTS))
    }

    async fn merkle_nodes(
        &self,
        _: Request<MerkleNodesRequest>,
    ) -> Result<Response<MerkleNodesResponse>, Status> {
        Err(not_yet("Replica.MerkleNodes", ANTI_ENTROPY))
    }

    async fn stream_range(
        &self,
        _: Request<StreamRangeRequest>,
    ) -> Result<Response<Self::StreamRangeStream>, Status> {
        Err(not_yet("Replica.StreamRange", STREAMING))
    }

    async fn apply_batch(
        &self,
        _: Request<KeyVersionsBatch>,
    ) -> Result<Response<ApplyBatchResponse>, Status> {
        Err(not_yet("Replica.ApplyBatch", ANTI_ENTROPY))
    }
}
