//! `strata.v1.Replica`: the node-to-node service.

use std::pin::Pin;
use std::sync::Arc;

use strata_cluster::{MAX_DEPTH, NodeId, NodeState, Siblings, Token, TokenRange};

use strata_proto::v1::{
    self, ApplyBatchResponse, DeliverHintsRequest, DeliverHintsResponse, IngestRangeResponse,
    KeyVersions, KeyVersionsBatch, MerkleNodesRequest, MerkleNodesResponse, PipeReply, PipeRequest,
    ReplicaReadRequest, ReplicaReadResponse, ReplicaWriteRequest, ReplicaWriteResponse,
    StreamRangeRequest, Version, replica_server::Replica,
};
use tokio::sync::watch;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::changes::{RunError, Runs};
use crate::context::{Context, Topology};
use crate::hints::HintStore;
use crate::repair::Repairer;
use crate::storage::{Storage, siblings_from_proto, version_to_proto};
use crate::transport::{PipeHandler, serve_pipe};

/// Serves other nodes: replica reads and writes, hints, repair, streaming.
#[derive(Debug)]
pub(crate) struct ReplicaService {
    ops: Arc<StoreOps>,
    hints: Arc<HintStore>,
    repairer: Arc<Repairer>,
    /// Becomes true when the server stops: open pipes end.
    stopping: watch::Receiver<bool>,
    /// `IngestRange` calls loading at once (each holds up to two 16 MiB
    /// runs); more wait for a permit, held back by flow control.
    ingesting: tokio::sync::Semaphore,
}

/// `IngestRange` calls that load at once: a change streams 4 ranges at a
/// time, so one sender never waits; senders beyond that do.
const INGESTS_AT_ONCE: usize = 8;

impl ReplicaService {
    pub(crate) fn new(
        ctx: &Context,
        repairer: Arc<Repairer>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            ops: Arc::new(StoreOps {
                id: ctx.id.clone(),
                topology: ctx.topology.clone(),
                storage: Arc::clone(&ctx.storage),
            }),
            hints: Arc::clone(&ctx.hints),
            repairer,
            stopping,
            ingesting: tokio::sync::Semaphore::new(INGESTS_AT_ONCE),
        }
    }
}

/// Point reads and batch merges against this node's store: what the
/// unary calls and the pipe have in common.
#[derive(Debug)]
struct StoreOps {
    id: NodeId,
    topology: Topology,
    storage: Arc<Storage>,
}

impl StoreOps {
    /// Refuses writes once this node has left the ring: its store is no
    /// replica of anything then, and a sender that counted the write (a
    /// coordinator, a hint replay, a hand-over whose view is behind)
    /// would lose the copy it meant to make. Refused, the sender treats
    /// the node as any failed replica (a hint, which then goes to the
    /// key's replicas: `hints/departed.rs`).
    fn taking_writes(&self) -> Result<(), Status> {
        let view = self.topology.view();
        match view.node(&self.id) {
            Some(me) if me.state == NodeState::Left => Err(Status::failed_precondition(format!(
                "{} has left the ring and takes no writes; its keys have other replicas",
                self.id
            ))),
            _ => Ok(()),
        }
    }

    /// Merges every entry into the store; the writer thread batches them.
    async fn apply_all(&self, entries: Vec<KeyVersions>) -> Result<u32, Status> {
        self.taking_writes()?;
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

/// The status an `IngestRange` fails with.
fn ingest_status(e: RunError) -> Status {
    match e {
        RunError::Bad(why) => Status::invalid_argument(why),
        RunError::Storage(e) => Status::from(e),
    }
}

/// Versions from the wire, validated.
fn siblings_from(versions: Vec<Version>) -> Result<Siblings, Status> {
    siblings_from_proto(versions)
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
        self.ops.taking_writes()?;
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
        // A session asks for one level at a time, and the widest level is
        // the leaves': more positions than that is not a session's request
        // (and would be answered with 16 bytes each).
        let leaves = 1usize << r.depth;
        if r.positions.len() > leaves {
            return Err(Status::invalid_argument(format!(
                "{} positions asked; a tree of depth {} has {leaves} on its widest level",
                r.positions.len(),
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

    async fn ingest_range(
        &self,
        request: Request<Streaming<KeyVersionsBatch>>,
    ) -> Result<Response<IngestRangeResponse>, Status> {
        let mut batches = request.into_inner();
        let mut runs = Runs::default();
        // Taken with the first batch: an empty stream (a sender asking
        // whether this node has the call) is answered at once.
        let mut permit = None;
        while let Some(batch) = batches.message().await? {
            if permit.is_none() {
                permit = Some(
                    self.ingesting
                        .acquire()
                        .await
                        .map_err(|_| Status::unavailable("the node is stopping"))?,
                );
            }
            self.ops.taking_writes()?;
            runs.add(batch, &self.ops.storage)
                .await
                .map_err(ingest_status)?;
        }
        let loaded = runs
            .finish(&self.ops.storage)
            .await
            .map_err(ingest_status)?;
        drop(permit);
        Ok(Response::new(IngestRangeResponse {
            keys: loaded.keys,
            ingested: loaded.ingested,
        }))
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
    use std::time::Duration;

    use strata_cluster::{ClusterView, Dot, VersionVector};
    use strata_proto::v1::StoredVersions;

    use super::*;
    use crate::repair::RepairSettings;
    use crate::testing::{ContextBuilder, member};

    /// This node (`strata-0`) in `state`, with its replica service.
    fn service(dir: &std::path::Path, state: NodeState) -> (Arc<Context>, ReplicaService) {
        let me = NodeId::new("strata-0").expect("id");
        let view = ClusterView::from_peers([member(&me, "memory-0", state, true)]);
        let ctx = ContextBuilder::new(dir)
            .topology(Topology::Fixed(Arc::new(view)))
            .build();
        let repairer = Arc::new(Repairer::new(
            Arc::clone(&ctx),
            RepairSettings {
                depth: 4,
                bytes_per_second: 0,
                interval: None,
                timeout: Duration::from_secs(1),
            },
        ));
        let service = ReplicaService::new(&ctx, repairer, watch::channel(false).1);
        (ctx, service)
    }

    fn entry(key: &str) -> KeyVersions {
        let version = strata_cluster::Version {
            dot: Dot {
                node: NodeId::new("strata-9").expect("id"),
                counter: 1,
            },
            context: VersionVector::new(),
            value: Some(b"v".to_vec().into()),
            timestamp_micros: 1,
            request_id: 0,
        };
        KeyVersions {
            key: key.as_bytes().to_vec().into(),
            versions: vec![version_to_proto(&version)],
        }
    }

    fn write(key: &str, hint_for: &str) -> Request<ReplicaWriteRequest> {
        let e = entry(key);
        Request::new(ReplicaWriteRequest {
            key: e.key,
            versions: e.versions,
            hint_for: hint_for.to_owned(),
        })
    }

    #[tokio::test]
    async fn a_node_that_has_left_takes_no_writes_hints_or_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ctx, left) = service(dir.path(), NodeState::Left);
        let refusals = [
            left.write(write("a", "")).await.map(drop),
            left.write(write("b", "strata-1")).await.map(drop),
            left.deliver_hints(Request::new(DeliverHintsRequest {
                from_node_id: "strata-1".into(),
                entries: vec![entry("c")],
            }))
            .await
            .map(drop),
            left.apply_batch(Request::new(KeyVersionsBatch {
                entries: vec![entry("d")],
                stored: Vec::new(),
            }))
            .await
            .map(drop),
        ];
        for refused in refusals {
            let status = refused.expect_err("refused");
            assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
            assert!(status.message().contains("has left the ring"), "{status}");
        }
        for key in ["a", "c", "d"] {
            assert!(
                ctx.storage
                    .read(key.as_bytes())
                    .expect("read")
                    .versions()
                    .is_empty()
            );
        }
        assert!(ctx.hints.targets().is_empty());

        // The same node, normal, takes them.
        let dir = tempfile::tempdir().expect("tempdir");
        let (ctx, normal) = service(dir.path(), NodeState::Normal);
        normal.write(write("a", "")).await.expect("a write");
        normal.write(write("b", "strata-1")).await.expect("a hint");
        assert_eq!(ctx.storage.read(b"a").expect("read").versions().len(), 1);
        assert_eq!(ctx.hints.targets().len(), 1);
    }

    #[tokio::test]
    async fn merkle_nodes_answers_one_level_and_refuses_what_no_session_asks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_ctx, service) = service(dir.path(), NodeState::Normal);
        let ask = |depth: u32, positions: Vec<u64>| {
            service.merkle_nodes(Request::new(MerkleNodesRequest {
                range: Some(v1::TokenRange { start: 0, end: 0 }),
                depth,
                positions,
            }))
        };
        // The leaves of a depth-3 tree: 8 hashes of 16 bytes.
        let leaves = ask(3, (8..16).collect()).await.expect("leaves");
        let hashes = leaves.into_inner().hashes;
        assert_eq!(hashes.len(), 8);
        assert!(hashes.iter().all(|h| h.len() == 16));

        let refusals = [
            (ask(3, (1..=9).collect()).await, "widest level"),
            (ask(3, vec![0]).await, "outside a tree"),
            (ask(3, vec![16]).await, "outside a tree"),
            (ask(MAX_DEPTH + 1, vec![1]).await, "deeper than"),
            (
                ask(MAX_DEPTH, vec![1; (1 << MAX_DEPTH) + 1]).await,
                "widest level",
            ),
        ];
        for (refused, why) in refusals {
            let status = refused.expect_err("refused");
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
            assert!(status.message().contains(why), "{status}");
        }
    }

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
