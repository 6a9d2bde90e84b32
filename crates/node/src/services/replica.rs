//! `strata.v1.Replica`: the node-to-node service.

use std::pin::Pin;
use std::sync::Arc;

use strata_cluster::Siblings;

use strata_proto::v1::{
    ApplyBatchResponse, DeliverHintsRequest, DeliverHintsResponse, KeyVersionsBatch,
    MerkleNodesRequest, MerkleNodesResponse, ReplicaReadRequest, ReplicaReadResponse,
    ReplicaWriteRequest, ReplicaWriteResponse, StreamRangeRequest, replica_server::Replica,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::not_yet;
use crate::storage::{Storage, version_from_proto, version_to_proto};

const HINTS: &str = "hinted handoff (failure-survival issue)";
const ANTI_ENTROPY: &str = "Merkle-tree anti-entropy (failure-survival issue)";
const STREAMING: &str = "range streaming (topology issue)";

/// Serves other nodes: replica reads and writes, hints, repair, streaming.
#[derive(Debug)]
pub(crate) struct ReplicaService {
    storage: Arc<Storage>,
}

impl ReplicaService {
    pub(crate) fn new(storage: Arc<Storage>) -> Self {
        Self { storage }
    }
}

#[tonic::async_trait]
impl Replica for ReplicaService {
    type StreamRangeStream =
        Pin<Box<dyn Stream<Item = Result<KeyVersionsBatch, Status>> + Send + 'static>>;

    async fn write(
        &self,
        request: Request<ReplicaWriteRequest>,
    ) -> Result<Response<ReplicaWriteResponse>, Status> {
        let r = request.into_inner();
        if !r.hint_for.is_empty() {
            return Err(not_yet("Replica.Write with hint_for", HINTS));
        }
        crate::request::validate_key(&r.key)?;
        let versions = r
            .versions
            .into_iter()
            .map(version_from_proto)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(format!("unreadable version: {e}")))?;
        let siblings = Siblings::from_versions(versions);
        self.storage.apply_queued(&r.key, &siblings).await?;
        Ok(Response::new(ReplicaWriteResponse {}))
    }

    async fn read(
        &self,
        request: Request<ReplicaReadRequest>,
    ) -> Result<Response<ReplicaReadResponse>, Status> {
        let key = request.into_inner().key;
        crate::request::validate_key(&key)?;
        // Inline: see `coordinator::remote` on point reads.
        let siblings = self.storage.read(&key).map_err(Status::from)?;
        Ok(Response::new(ReplicaReadResponse {
            versions: siblings.versions().iter().map(version_to_proto).collect(),
        }))
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
