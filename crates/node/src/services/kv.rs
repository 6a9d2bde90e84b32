//! `strata.v1.KV`: the public key-value API, served by the coordinator.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt as _;
use strata_proto::v1::{
    self, BatchGetRequest, BatchGetResponse, BatchGetResult, BatchWriteRequest, BatchWriteResponse,
    DeleteRequest, DeleteResponse, GetRequest, GetResponse, ItemError, PingRequest, PingResponse,
    PutRequest, PutResponse, SessionReply, SessionRequest, Sibling, WriteOp, WriteResult,
    batch_get_result, kv_server::Kv, write_op, write_result,
};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::admission::{Admitted, WriteBudget};
use crate::arrival::AdmittedOnArrival;
use crate::coordinator::{Coordinator, ReadOutcome, WriteRequest, encode_context};
use crate::metrics::Metrics;
use crate::request::{level_of, validate_batch};

/// Coordinates client requests. Cheap to clone: a session stream holds a
/// clone for the operations it runs in tasks of their own.
#[derive(Debug, Clone)]
pub(crate) struct KvService {
    coordinator: Arc<Coordinator>,
    metrics: Arc<Metrics>,
    /// Client writes in flight, by bytes (`admission.rs`).
    budget: Arc<WriteBudget>,
    /// This node's id, as a session's Ping answers it.
    node_id: Arc<str>,
    /// Becomes true when the server stops: open sessions end.
    stopping: watch::Receiver<bool>,
}

impl KvService {
    pub(crate) fn new(
        coordinator: Arc<Coordinator>,
        metrics: Arc<Metrics>,
        budget: Arc<WriteBudget>,
        node_id: &str,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            coordinator,
            metrics,
            budget,
            node_id: node_id.into(),
            stopping,
        }
    }

    /// A unary Get, or a session's.
    pub(super) async fn get_request(&self, r: GetRequest) -> Result<GetResponse, Status> {
        let started = Instant::now();
        let result = self.get_one(r.key, r.consistency.as_ref()).await;
        self.finish("Get", started, result)
    }

    /// A unary Put, or a session's (never `forwarded`), `admitted` already
    /// when its header arrived (`arrival.rs`).
    pub(super) async fn put_request(
        &self,
        r: PutRequest,
        forwarded: bool,
        admitted: Option<Admitted>,
    ) -> Result<PutResponse, Status> {
        let started = Instant::now();
        let result = match self.admit_unless(admitted, prost::Message::encoded_len(&r)) {
            Ok(_admitted) => self.put_one(r, None, forwarded).await,
            Err(status) => Err(status),
        };
        self.finish("Put", started, result)
    }

    /// A unary Delete, or a session's (never `forwarded`), as
    /// [`put_request`](Self::put_request).
    pub(super) async fn delete_request(
        &self,
        r: DeleteRequest,
        forwarded: bool,
        admitted: Option<Admitted>,
    ) -> Result<DeleteResponse, Status> {
        let started = Instant::now();
        let result = match self.admit_unless(admitted, prost::Message::encoded_len(&r)) {
            Ok(_admitted) => self.delete_one(r, None, forwarded).await,
            Err(status) => Err(status),
        };
        self.finish("Delete", started, result)
    }

    /// The node's metrics.
    pub(super) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A session's Ping: the payload back and this node's id.
    pub(super) fn ping(&self, r: PingRequest) -> PingResponse {
        PingResponse {
            payload: r.payload,
            node_id: self.node_id.to_string(),
        }
    }

    /// Admits a write request of `bytes` encoded bytes, or the status that
    /// refuses it (counted).
    fn admit(&self, bytes: usize) -> Result<Admitted, Status> {
        self.budget.admit(bytes).map_err(|e| {
            self.metrics.write_refused_overloaded();
            e.into()
        })
    }

    /// The share taken on arrival, or one admitted now.
    fn admit_unless(&self, admitted: Option<Admitted>, bytes: usize) -> Result<Admitted, Status> {
        admitted.map_or_else(|| self.admit(bytes), Ok)
    }

    /// Records `result` of `rpc` started at `started`.
    fn finish<T>(
        &self,
        rpc: &'static str,
        started: Instant,
        result: Result<T, Status>,
    ) -> Result<T, Status> {
        let code = result
            .as_ref()
            .map_or_else(Status::code, |_| tonic::Code::Ok);
        self.metrics.record(rpc, code, started.elapsed());
        result
    }

    async fn get_one(
        &self,
        key: bytes::Bytes,
        consistency: Option<&v1::Consistency>,
    ) -> Result<GetResponse, Status> {
        let consistency = level_of(consistency)?;
        let token = strata_cluster::Token::of(&key);
        let ReadOutcome {
            siblings,
            context,
            answered,
        } = self.coordinator.read(key, consistency).await?;
        Ok(GetResponse {
            // Deletes are versions too; they are reported only through the
            // context (which covers them), not as values.
            siblings: siblings
                .versions()
                .iter()
                .filter_map(|v| v.value.clone())
                .map(|value| Sibling {
                    value,
                    tombstone: false,
                })
                .collect(),
            context: encode_context(token, &context).into(),
            replicas_answered: answered,
        })
    }

    async fn put_one(
        &self,
        r: PutRequest,
        fallback: Option<&v1::Consistency>,
        forwarded: bool,
    ) -> Result<PutResponse, Status> {
        let outcome = self
            .coordinator
            .write(WriteRequest {
                key: r.key,
                value: Some(r.value),
                context: &r.context,
                consistency: level_of(r.consistency.as_ref().or(fallback))?,
                forwarded,
                request_id: r.request_id,
            })
            .await?;
        Ok(PutResponse {
            context: outcome.context.into(),
            replicas_acked: outcome.acked,
        })
    }

    async fn delete_one(
        &self,
        r: DeleteRequest,
        fallback: Option<&v1::Consistency>,
        forwarded: bool,
    ) -> Result<DeleteResponse, Status> {
        let outcome = self
            .coordinator
            .write(WriteRequest {
                key: r.key,
                value: None,
                context: &r.context,
                consistency: level_of(r.consistency.as_ref().or(fallback))?,
                forwarded,
                request_id: r.request_id,
            })
            .await?;
        Ok(DeleteResponse {
            context: outcome.context.into(),
            replicas_acked: outcome.acked,
        })
    }
}

impl KvService {
    /// One item of a `BatchWrite`.
    async fn write_op(&self, op: WriteOp, fallback: Option<&v1::Consistency>) -> WriteResult {
        let outcome = match op.op {
            Some(write_op::Op::Put(put)) => self
                .put_one(put, fallback, false)
                .await
                .map(|p| (p.context, p.replicas_acked)),
            Some(write_op::Op::Delete(delete)) => self
                .delete_one(delete, fallback, false)
                .await
                .map(|d| (d.context, d.replicas_acked)),
            None => Err(Status::invalid_argument(
                "batch op has neither put nor delete",
            )),
        };
        match outcome {
            Ok((context, acked)) => WriteResult {
                outcome: Some(write_result::Outcome::Context(context)),
                replicas_acked: acked,
            },
            Err(status) => WriteResult {
                outcome: Some(write_result::Outcome::Error(item_error(&status))),
                replicas_acked: 0,
            },
        }
    }
}

/// Whether another node forwarded this request to us as a replica.
fn is_forwarded<T>(request: &Request<T>) -> bool {
    request
        .metadata()
        .contains_key(strata_proto::metadata::FORWARDED)
}

fn item_error(status: &Status) -> ItemError {
    ItemError {
        code: status.code() as i32,
        message: status.message().to_owned(),
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        self.get_request(request.into_inner())
            .await
            .map(Response::new)
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let admitted = AdmittedOnArrival::take(request.extensions());
        self.put_request(request.into_inner(), forwarded, admitted)
            .await
            .map(Response::new)
    }

    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let forwarded = is_forwarded(&request);
        let admitted = AdmittedOnArrival::take(request.extensions());
        self.delete_request(request.into_inner(), forwarded, admitted)
            .await
            .map(Response::new)
    }

    type SessionStream = ReceiverStream<Result<SessionReply, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<SessionRequest>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let credentials = request
            .extensions()
            .get::<crate::auth::SessionCredentials>()
            .cloned();
        Ok(Response::new(super::session::serve(
            request.into_inner(),
            Arc::new(self.clone()),
            credentials,
            self.stopping.clone(),
        )))
    }

    async fn batch_get(
        &self,
        request: Request<BatchGetRequest>,
    ) -> Result<Response<BatchGetResponse>, Status> {
        let started = Instant::now();
        let r = request.into_inner();
        if let Err(e) = validate_batch(r.keys.len()) {
            return self
                .finish("BatchGet", started, Err(e.into()))
                .map(Response::new);
        }
        let consistency = r.consistency.as_ref();
        let results = futures::stream::iter(r.keys)
            .map(|key| async move {
                let outcome = match self.get_one(key.clone(), consistency).await {
                    Ok(response) => batch_get_result::Outcome::Response(response),
                    Err(status) => batch_get_result::Outcome::Error(item_error(&status)),
                };
                BatchGetResult {
                    key,
                    outcome: Some(outcome),
                }
            })
            .buffered(BATCH_CONCURRENCY)
            .collect()
            .await;
        self.finish("BatchGet", started, Ok(BatchGetResponse { results }))
            .map(Response::new)
    }

    async fn batch_write(
        &self,
        request: Request<BatchWriteRequest>,
    ) -> Result<Response<BatchWriteResponse>, Status> {
        let started = Instant::now();
        let admitted = AdmittedOnArrival::take(request.extensions());
        let r = request.into_inner();
        if let Err(e) = validate_batch(r.ops.len()) {
            return self
                .finish("BatchWrite", started, Err(e.into()))
                .map(Response::new);
        }
        let _admitted = match self.admit_unless(admitted, prost::Message::encoded_len(&r)) {
            Ok(admitted) => admitted,
            Err(status) => {
                return self
                    .finish("BatchWrite", started, Err(status))
                    .map(Response::new);
            }
        };
        let fallback = r.consistency.as_ref();
        let chains = same_key_chains(&r.ops);
        let mut ops: Vec<Option<WriteOp>> = r.ops.into_iter().map(Some).collect();
        let chains: Vec<Vec<(usize, WriteOp)>> = chains
            .into_iter()
            .map(|chain| {
                chain
                    .into_iter()
                    .filter_map(|i| ops[i].take().map(|op| (i, op)))
                    .collect()
            })
            .collect();
        let mut results = vec![WriteResult::default(); ops.len()];
        let done: Vec<Vec<(usize, WriteResult)>> = futures::stream::iter(chains)
            .map(|chain| async move {
                let mut out = Vec::with_capacity(chain.len());
                for (i, op) in chain {
                    out.push((i, self.write_op(op, fallback).await));
                }
                out
            })
            .buffer_unordered(BATCH_CONCURRENCY)
            .collect()
            .await;
        for (i, result) in done.into_iter().flatten() {
            results[i] = result;
        }
        self.finish("BatchWrite", started, Ok(BatchWriteResponse { results }))
            .map(Response::new)
    }
}

/// Items of one batch in flight at once. Items on the same key run in
/// their batch order (one after another), so a batch that writes a key
/// twice means what it says; different keys run concurrently.
const BATCH_CONCURRENCY: usize = 32;

/// Indices of `ops` grouped by key, each group in batch order; groups in
/// order of their first item.
fn same_key_chains(ops: &[WriteOp]) -> Vec<Vec<usize>> {
    let mut by_key: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::new();
    let mut chains: Vec<Vec<usize>> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let key: &[u8] = match &op.op {
            Some(write_op::Op::Put(p)) => &p.key,
            Some(write_op::Op::Delete(d)) => &d.key,
            None => {
                chains.push(vec![i]);
                continue;
            }
        };
        match by_key.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => chains[*e.get()].push(i),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(chains.len());
                chains.push(vec![i]);
            }
        }
    }
    chains
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> WriteOp {
        WriteOp {
            op: Some(write_op::Op::Put(PutRequest {
                key: key.as_bytes().to_vec().into(),
                ..PutRequest::default()
            })),
        }
    }

    fn service(dir: &std::path::Path, budget: usize) -> KvService {
        let ctx = crate::testing::ContextBuilder::new(dir).build();
        let dots = crate::dots::DotCounter::open(dir, ctx.id.clone()).expect("dots");
        let metrics = Arc::clone(&ctx.metrics);
        let id = ctx.id.to_string();
        KvService::new(
            Arc::new(Coordinator::new(ctx, dots)),
            metrics,
            Arc::new(WriteBudget::new(budget)),
            &id,
            watch::channel(false).1,
        )
    }

    fn put_request(key: &str, value: &[u8]) -> Request<PutRequest> {
        Request::new(PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: value.to_vec().into(),
            ..PutRequest::default()
        })
    }

    #[tokio::test]
    async fn writes_past_the_byte_budget_are_refused_and_write_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = service(dir.path(), 1000);
        let held = kv.budget.admit(950).expect("room");
        let status = kv
            .put(put_request("k", &[7; 100]))
            .await
            .expect_err("no room for 100 more bytes");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
        assert!(
            status.message().contains("950 bytes of writes in flight"),
            "{status}"
        );
        let batch = BatchWriteRequest {
            ops: vec![WriteOp {
                op: Some(write_op::Op::Put(put_request("k", &[7; 100]).into_inner())),
            }],
            ..BatchWriteRequest::default()
        };
        let status = kv
            .batch_write(Request::new(batch))
            .await
            .expect_err("the batch does not fit either");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
        let got = kv
            .get(Request::new(GetRequest {
                key: b"k".to_vec().into(),
                ..GetRequest::default()
            }))
            .await
            .expect("get")
            .into_inner();
        assert!(got.siblings.is_empty(), "a refused write wrote nothing");

        drop(held);
        kv.put(put_request("k", &[7; 100]))
            .await
            .expect("room again");
        assert_eq!(
            kv.budget.in_flight(),
            0,
            "an answered write returns its bytes"
        );
        let text = kv.metrics.render(&strata_engine::Stats::default());
        assert!(
            text.contains("strata_writes_refused_overloaded_total 2"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn open_sessions_are_counted_until_their_client_ends_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = service(dir.path(), 1 << 20);
        let metrics = Arc::clone(&kv.metrics);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(v1::kv_server::KvServer::new(kv))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut client = v1::kv_client::KvClient::new(channel);
        let gauge = |text: &str, name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
        };
        let (requests, outgoing) = tokio::sync::mpsc::channel(1);
        let mut replies = client
            .session(ReceiverStream::new(outgoing))
            .await
            .expect("session")
            .into_inner();
        let ping = v1::SessionRequest {
            id: 1,
            op: Some(v1::session_request::Op::Ping(PingRequest::default())),
        };
        requests.send(ping).await.expect("sent");
        let reply = replies.message().await.expect("stream").expect("reply");
        assert_eq!(reply.id, 1);
        let text = metrics.render(&strata_engine::Stats::default());
        assert_eq!(gauge(&text, "strata_sessions_open"), Some(1.0), "{text}");
        assert_eq!(
            gauge(&text, "strata_sessions_opened_total"),
            Some(1.0),
            "{text}"
        );

        drop(requests);
        assert!(
            replies.message().await.expect("ends cleanly").is_none(),
            "the node ends the replies after the client's requests end"
        );
        let text = metrics.render(&strata_engine::Stats::default());
        assert_eq!(gauge(&text, "strata_sessions_open"), Some(0.0), "{text}");
    }

    #[test]
    fn writes_to_one_key_stay_in_batch_order() {
        let ops = [put("a"), put("b"), put("a"), WriteOp { op: None }, put("a")];
        assert_eq!(same_key_chains(&ops), [vec![0, 2, 4], vec![1], vec![3]]);
    }
}
