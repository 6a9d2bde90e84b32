//! `strata.v1.Replica`: the node-to-node service.

use std::pin::Pin;
use std::sync::Arc;

use strata_cluster::{NodeId, Siblings};

use strata_proto::v1::{
    ApplyBatchResponse, DeliverHintsRequest, DeliverHintsResponse, KeyVersions, KeyVersionsBatch,
    MerkleNodesRequest, MerkleNodesResponse, ReplicaReadRequest, ReplicaReadResponse,
    ReplicaWriteRequest, ReplicaWriteResponse, StreamRangeRequest, Version,
    replica_server::Replica,
};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::not_yet;
use crate::coordinator::Coordinator;
use crate::hints::{HintError, HintStore};
use crate::storage::{Storage, version_from_proto, version_to_proto};

const ANTI_ENTROPY: &str = "Merkle-tree anti-entropy (failure-survival issue)";
const STREAMING: &str = "range streaming (topology issue)";

/// Serves other nodes: replica reads and writes, hints, repair, streaming.
#[derive(Debug)]
pub(crate) struct ReplicaService {
    storage: Arc<Storage>,
    hints: Arc<HintStore>,
}

impl ReplicaService {
    pub(crate) fn new(coordinator: &Coordinator) -> Self {
        Self {
            storage: Arc::clone(coordinator.storage()),
            hints: Arc::clone(coordinator.hints()),
        }
    }
}

/// Versions from the wire, validated.
fn siblings_from(versions: Vec<Version>) -> Result<Siblings, Status> {
    versions
        .into_iter()
        .map(version_from_proto)
        .collect::<Result<Vec<_>, _>>()
        .map(Siblings::from_versions)
        .map_err(|e| Status::invalid_argument(format!("unreadable version: {e}")))
}

impl ReplicaService {
    /// Merges every entry into the store; the writer thread batches them.
    async fn apply_all(&self, entries: Vec<KeyVersions>) -> Result<u32, Status> {
        let mut parsed = Vec::with_capacity(entries.len());
        for entry in entries {
            crate::request::validate_key(&entry.key)?;
            parsed.push((entry.key, siblings_from(entry.versions)?));
        }
        let applied = futures::future::try_join_all(
            parsed
                .iter()
                .map(|(key, siblings)| self.storage.apply_queued(key, siblings)),
        )
        .await?;
        Ok(u32::try_from(applied.len()).unwrap_or(u32::MAX))
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
        crate::request::validate_key(&r.key)?;
        let siblings = siblings_from(r.versions)?;
        if r.hint_for.is_empty() {
            self.storage.apply_queued(&r.key, &siblings).await?;
        } else {
            // A stand-in: hold the write for the replica that is down.
            let target = NodeId::new(r.hint_for)
                .map_err(|e| Status::invalid_argument(format!("hint_for: {e}")))?;
            self.hints
                .store(&target, &r.key, &siblings)
                .await
                .map_err(|e| match e {
                    HintError::Full { .. } | HintError::Overloaded => {
                        Status::resource_exhausted(e.to_string())
                    }
                    HintError::Stopped | HintError::Io(_) => Status::unavailable(e.to_string()),
                })?;
        }
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
        request: Request<DeliverHintsRequest>,
    ) -> Result<Response<DeliverHintsResponse>, Status> {
        let r = request.into_inner();
        let applied = self.apply_all(r.entries).await?;
        tracing::debug!(from = %r.from_node_id, applied, "hints delivered to this node");
        Ok(Response::new(DeliverHintsResponse { applied }))
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
