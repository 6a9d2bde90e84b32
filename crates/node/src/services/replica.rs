//! `strata.v1.Replica`: the node-to-node service.

use std::pin::Pin;
use std::sync::Arc;

use strata_cluster::{MAX_DEPTH, NodeId, Siblings, Token, TokenRange};

use strata_proto::v1::{
    self, ApplyBatchResponse, DeliverHintsRequest, DeliverHintsResponse, KeyVersions,
    KeyVersionsBatch, MerkleNodesRequest, MerkleNodesResponse, PipeReply, PipeRequest,
    ReplicaReadRequest, ReplicaReadResponse, ReplicaWriteRequest, ReplicaWriteResponse,
    StreamRangeRequest, Version, replica_server::Replica,
};
use tokio::sync::watch;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::context::Context;
use crate::hints::HintStore;
use crate::repair::Repairer;
use crate::storage::{Storage, version_from_proto, version_to_proto};
use crate::transport::{PipeHandler, serve_pipe};

/// Serves other nodes: replica reads and writes, hints, repair, streaming.
#[derive(Debug)]
pub(crate) struct ReplicaService {
    ops: Arc<StoreOps>,
    hints: Arc<HintStore>,
    repairer: Arc<Repairer>,
    /// Becomes true when the server stops: open pipes end.
    stopping: watch::Receiver<bool>,
}

impl ReplicaService {
    pub(crate) fn new(
        ctx: &Context,
        repairer: Arc<Repairer>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            ops: Arc::new(StoreOps {
                storage: Arc::clone(&ctx.storage),
            }),
            hints: Arc::clone(&ctx.hints),
            repairer,
            stopping,
        }
    }
}

/// Point reads and batch merges against this node's store: what the
/// unary calls and the pipe have in common.
#[derive(Debug)]
struct StoreOps {
    storage: Arc<Storage>,
}

impl StoreOps {
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

impl PipeHandler for StoreOps {
    fn read(&self, request: ReplicaReadRequest) -> Result<ReplicaReadResponse, Status> {
        crate::request::validate_key(&request.key)?;
        // Inline: see `coordinator::remote` on point reads.
        let siblings = self.storage.read(&request.key).map_err(Status::from)?;
        Ok(ReplicaReadResponse {
            versions: siblings.versions().iter().map(version_to_proto).collect(),
        })
    }

    async fn apply(&self, batch: KeyVersionsBatch) -> Result<ApplyBatchResponse, Status> {
        refuse_stored(&batch)?;
        let applied = self.apply_all(batch.entries).await?;
        Ok(ApplyBatchResponse { applied })
    }
}

fn range_from(range: Option<v1::TokenRange>) -> Result<TokenRange, Status> {
    let r = range.ok_or_else(|| Status::invalid_argument("range is required"))?;
    Ok(TokenRange {
        start: Token(r.start),
        end: Token(r.end),
    })
}

/// `StreamRange` batches: at least 4 KiB, at most 16 MiB, 1 MiB if unset.
fn batch_limit(requested: u32) -> usize {
    match requested {
        0 => 1 << 20,
        n => (n as usize).clamp(4 << 10, 16 << 20),
    }
}

/// `ApplyBatch` takes `entries` only: stored-form keys are refused rather
/// than silently dropped.
fn refuse_stored(batch: &KeyVersionsBatch) -> Result<(), Status> {
    if batch.stored.is_empty() {
        Ok(())
    } else {
        Err(Status::invalid_argument(
            "ApplyBatch takes keys in `entries`; `stored` is only for StreamRange replies",
        ))
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
            self.ops.storage.apply_queued(&r.key, &siblings).await?;
        } else {
            // A stand-in: hold the write for the replica that is down.
            let target = NodeId::new(r.hint_for)
                .map_err(|e| Status::invalid_argument(format!("hint_for: {e}")))?;
            self.hints.store(&target, &r.key, &siblings).await?;
        }
        Ok(Response::new(ReplicaWriteResponse {}))
    }

    async fn read(
        &self,
        request: Request<ReplicaReadRequest>,
    ) -> Result<Response<ReplicaReadResponse>, Status> {
        self.ops.read(request.into_inner()).map(Response::new)
    }

    async fn deliver_hints(
        &self,
        request: Request<DeliverHintsRequest>,
    ) -> Result<Response<DeliverHintsResponse>, Status> {
        let r = request.into_inner();
        let applied = self.ops.apply_all(r.entries).await?;
        tracing::debug!(from = %r.from_node_id, applied, "hints delivered to this node");
        Ok(Response::new(DeliverHintsResponse { applied }))
    }

    async fn merkle_nodes(
        &self,
        request: Request<MerkleNodesRequest>,
    ) -> Result<Response<MerkleNodesResponse>, Status> {
        let r = request.into_inner();
        let range = range_from(r.range)?;
        if r.depth > MAX_DEPTH {
            return Err(Status::invalid_argument(format!(
                "depth {} is deeper than {MAX_DEPTH}",
                r.depth
            )));
        }
        let leaves_end = 2u64 << r.depth;
        if let Some(bad) = r.positions.iter().find(|&&p| p == 0 || p >= leaves_end) {
            return Err(Status::invalid_argument(format!(
                "position {bad} is outside a tree of depth {} (1 ..= {})",
                r.depth,
                leaves_end - 1
            )));
        }
        // Asking for the root starts a session: build from what is stored
        // now; deeper levels reuse that tree.
        let fresh = r.positions.contains(&1);
        let (storage, repairer) = (Arc::clone(&self.ops.storage), Arc::clone(&self.repairer));
        let tree = tokio::task::spawn_blocking(move || {
            repairer.trees().get(&storage, range, r.depth, fresh)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        let hashes = r
            .positions
            .iter()
            .map(|&p| {
                tree.hash_at(p)
                    .unwrap_or_default()
                    .to_le_bytes()
                    .to_vec()
                    .into()
            })
            .collect();
        Ok(Response::new(MerkleNodesResponse { hashes }))
    }

    async fn stream_range(
        &self,
        request: Request<StreamRangeRequest>,
    ) -> Result<Response<Self::StreamRangeStream>, Status> {
        let r = request.into_inner();
        let range = range_from(r.range)?;
        let limit = batch_limit(r.max_batch_bytes);
        let batches = self
            .ops
            .storage
            .batches(range, r.start_after.to_vec(), limit, r.stored_form);
        let rx = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::ReceiverStream::new(batches),
            |batch| batch.map_err(Status::from),
        );
        Ok(Response::new(Box::pin(rx)))
    }

    async fn apply_batch(
        &self,
        request: Request<KeyVersionsBatch>,
    ) -> Result<Response<ApplyBatchResponse>, Status> {
        let batch = request.into_inner();
        refuse_stored(&batch)?;
        let applied = self.ops.apply_all(batch.entries).await?;
        Ok(Response::new(ApplyBatchResponse { applied }))
    }

    type PipeStream = ReceiverStream<Result<PipeReply, Status>>;

    async fn pipe(
        &self,
        request: Request<Streaming<PipeRequest>>,
    ) -> Result<Response<Self::PipeStream>, Status> {
        Ok(Response::new(serve_pipe(
            request.into_inner(),
            Arc::clone(&self.ops),
            self.stopping.clone(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use strata_proto::v1::StoredVersions;

    use super::*;

    #[test]
    fn apply_batch_refuses_stored_form_keys_instead_of_dropping_them() {
        assert!(refuse_stored(&KeyVersionsBatch::default()).is_ok());
        let stored = KeyVersionsBatch {
            entries: Vec::new(),
            stored: vec![StoredVersions {
                key: b"k".to_vec().into(),
                value: b"\x01".to_vec().into(),
            }],
        };
        let refused = refuse_stored(&stored).expect_err("stored keys are refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    }
}
