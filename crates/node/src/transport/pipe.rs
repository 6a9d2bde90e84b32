//! `Replica.Pipe`: one long-lived gRPC stream per peer that carries the
//! coordinator's replica reads and write batches, answered by id in any
//! order. Both ends are here: [`Pipe`] (the caller's side) and [`serve`]
//! (the peer's side).
//!
//! Why: a unary call per replica operation costs an HTTP/2 stream (HEADERS
//! both ways with HPACK, stream state, a trailers frame), a server task and
//! the tower stack, and each side flushes its frames in a socket write of
//! their own (docs/benchmarks.md has the syscall counts). On one stream an
//! operation is one length-prefixed DATA frame each way, and the frames
//! queued while the connection task was busy leave in one write.

use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use strata_proto::outstanding::{Forget, Outstanding};
use strata_proto::v1::{
    ApplyBatchResponse, KeyVersionsBatch, PipeError, PipeReply, PipeRequest, ReplicaReadRequest,
    ReplicaReadResponse, pipe_reply, pipe_request,
};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use super::{ReplicaError, replica_client};

/// Requests queued for one stream at most; callers wait beyond
/// (backpressure while the peer is slow).
const QUEUE: usize = 4096;

/// What a caller gets back: the peer's answer or why there is none.
type Answer = Result<pipe_reply::Result, ReplicaError>;

/// The caller's side of the pipe to one peer. Opens the stream on first
/// use and again after it broke; a broken stream fails every operation
/// waiting on it at once (the callers then keep hints, as for any failed
/// replica write).
#[derive(Debug)]
pub struct Pipe {
    channel: Channel,
    session: Mutex<Option<Arc<Session>>>,
}

/// One open stream: its request queue and the operations awaiting replies.
#[derive(Debug)]
struct Session {
    requests: mpsc::Sender<PipeRequest>,
    calls: Outstanding<pipe_reply::Result, ReplicaError>,
}

impl Pipe {
    /// A pipe over `channel`; nothing is sent until the first operation.
    #[must_use]
    pub fn new(channel: Channel) -> Self {
        Self {
            channel,
            session: Mutex::new(None),
        }
    }

    /// The peer's sibling set for a key, as `Replica.Read` answers it.
    ///
    /// # Errors
    /// As [`Pipe::call`]; a reply of the wrong kind is an error too.
    pub async fn read(
        &self,
        request: ReplicaReadRequest,
        timeout: Duration,
    ) -> Result<ReplicaReadResponse, ReplicaError> {
        match self.call(pipe_request::Op::Read(request), timeout).await? {
            pipe_reply::Result::Read(response) => Ok(response),
            other => Err(unexpected(&other)),
        }
    }

    /// Merges every entry of `batch` into the peer's store, as
    /// `Replica.ApplyBatch` does.
    ///
    /// # Errors
    /// As [`Pipe::call`]; a reply of the wrong kind is an error too.
    pub async fn apply(
        &self,
        batch: KeyVersionsBatch,
        timeout: Duration,
    ) -> Result<ApplyBatchResponse, ReplicaError> {
        match self.call(pipe_request::Op::Apply(batch), timeout).await? {
            pipe_reply::Result::Applied(response) => Ok(response),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends `op` and waits for its reply, all within `timeout`.
    ///
    /// # Errors
    /// The peer's error (code and message), a broken stream, or no answer
    /// within `timeout`.
    pub async fn call(&self, op: pipe_request::Op, timeout: Duration) -> Answer {
        // A stream that ends between lookup and registration is replaced
        // once; a second failure means the peer is refusing streams.
        let mut attempt = 0;
        let (session, id, answer) = loop {
            let session = self.session();
            match session.calls.register() {
                Some((id, answer)) => break (session, id, answer),
                None if attempt == 0 => attempt += 1,
                None => return Err(session.calls.why().unwrap_or_else(closed)),
            }
        };
        // Forgets the operation however this future ends (answered, timed
        // out, or dropped by its caller), so nothing waits forever.
        let _forget = Forget::new(&session.calls, id);
        let exchange = async {
            if session
                .requests
                .send(PipeRequest { id, op: Some(op) })
                .await
                .is_err()
            {
                return Err(session.ended().await);
            }
            match answer.await {
                Ok(answer) => answer,
                Err(_) => Err(session.ended().await),
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(ReplicaError::Timeout(timeout)),
        }
    }

    /// The open stream, or a new one when there is none or it ended.
    fn session(&self) -> Arc<Session> {
        let mut current = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(session) = current.as_ref().filter(|s| s.calls.is_open()) {
            return Arc::clone(session);
        }
        tracing::debug!(
            replaces_a_broken_one = current.is_some(),
            "opening a replica stream"
        );
        let (requests, outgoing) = mpsc::channel(QUEUE);
        let session = Arc::new(Session {
            requests,
            calls: Outstanding::default(),
        });
        tokio::spawn(run(
            self.channel.clone(),
            ReceiverStream::new(outgoing),
            Arc::downgrade(&session),
        ));
        *current = Some(Arc::clone(&session));
        session
    }
}

impl Session {
    fn complete(&self, reply: PipeReply) {
        let answer = match reply.result {
            Some(pipe_reply::Result::Error(e)) => Err(ReplicaError::Rejected {
                code: tonic::Code::from_i32(e.code),
                message: e.message,
            }),
            Some(result) => Ok(result),
            None => Err(ReplicaError::BadReply("an empty reply".to_owned())),
        };
        self.calls.complete(reply.id, answer);
    }

    /// Why the stream ended, waiting for the task driving it to say so.
    async fn ended(&self) -> ReplicaError {
        self.calls.ended().await.unwrap_or_else(closed)
    }
}

/// Drives one stream: opens it, hands replies to their callers, and
/// closes the session when the stream ends or fails. Holds the session
/// weakly: once the pipe and every caller let go of it, its request queue
/// closes, which ends the request stream, and the peer then ends the reply
/// stream after answering what it received.
async fn run(channel: Channel, outgoing: ReceiverStream<PipeRequest>, session: Weak<Session>) {
    let mut client = replica_client(channel);
    let outcome = async {
        let mut replies = client.pipe(outgoing).await?.into_inner();
        while let Some(reply) = replies.message().await? {
            if let Some(session) = session.upgrade() {
                session.complete(reply);
            }
        }
        Ok::<(), Status>(())
    }
    .await;
    let Some(session) = session.upgrade() else {
        return;
    };
    let why = match outcome {
        Ok(()) => ReplicaError::StreamClosed("the replica ended the stream".to_owned()),
        Err(status) => {
            tracing::debug!(code = ?status.code(), error = %status.message(), "replica stream broke");
            match ReplicaError::from_status(&status) {
                unreachable @ ReplicaError::Unreachable(_) => unreachable,
                _ => {
                    ReplicaError::StreamClosed(format!("{:?}: {}", status.code(), status.message()))
                }
            }
        }
    };
    session.calls.close(&why);
}

fn closed() -> ReplicaError {
    ReplicaError::StreamClosed("the replica stream closed".to_owned())
}

fn unexpected(result: &pipe_reply::Result) -> ReplicaError {
    ReplicaError::BadReply(format!("the wrong kind of reply: {result:?}"))
}

/// What a node does with the operations arriving on a pipe.
pub trait PipeHandler: Send + Sync + 'static {
    /// A point read (served from the memtable or block cache, so inline).
    ///
    /// # Errors
    /// The status to send back for this operation.
    fn read(&self, request: ReplicaReadRequest) -> Result<ReplicaReadResponse, Status>;

    /// Merges a batch; completes once it is durable.
    fn apply(
        &self,
        batch: KeyVersionsBatch,
    ) -> impl Future<Output = Result<ApplyBatchResponse, Status>> + Send;
}

/// Replies not yet written to the stream at most; operations wait beyond.
const REPLIES: usize = 1024;
/// Operations of one stream running at once at most; beyond, the server
/// stops reading the stream and HTTP/2 flow control holds the sender back.
const RUNNING: usize = 1024;

/// The peer's side: answers every request arriving on `incoming`, each in
/// a task of its own (a slow batch does not hold up the reads behind it),
/// until the caller ends the stream or `stopping` turns true; then the
/// reply stream ends once the requests already received are answered.
pub fn serve<H: PipeHandler>(
    mut incoming: Streaming<PipeRequest>,
    handler: Arc<H>,
    mut stopping: watch::Receiver<bool>,
) -> ReceiverStream<Result<PipeReply, Status>> {
    let (replies, outgoing) = mpsc::channel(REPLIES);
    let running = Arc::new(Semaphore::new(RUNNING));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = Arc::clone(&running).acquire_owned().await else {
                return;
            };
            let next = tokio::select! {
                next = incoming.message() => next,
                _ = stopping.wait_for(|s| *s) => return,
            };
            let request = match next {
                Ok(Some(request)) => request,
                Ok(None) => return,
                Err(status) => {
                    tracing::debug!(error = %status, "replica stream from a peer broke");
                    return;
                }
            };
            let (replies, handler) = (replies.clone(), Arc::clone(&handler));
            tokio::spawn(async move {
                let id = request.id;
                let result = match request.op {
                    Some(pipe_request::Op::Read(read)) => {
                        handler.read(read).map(pipe_reply::Result::Read)
                    }
                    Some(pipe_request::Op::Apply(batch)) => {
                        handler.apply(batch).await.map(pipe_reply::Result::Applied)
                    }
                    None => Err(Status::invalid_argument("a pipe request needs an op")),
                };
                let result = result.unwrap_or_else(|status| {
                    pipe_reply::Result::Error(PipeError {
                        code: status.code() as i32,
                        message: status.message().to_owned(),
                    })
                });
                let _ = replies
                    .send(Ok(PipeReply {
                        id,
                        result: Some(result),
                    }))
                    .await;
                drop(permit);
            });
        }
    });
    ReceiverStream::new(outgoing)
}

/// A replica server whose only working method is `Pipe`, for tests.
#[cfg(test)]
pub(crate) mod fake {
    use std::pin::Pin;
    use std::sync::Arc;

    use strata_proto::v1::{
        ApplyBatchResponse, DeliverHintsRequest, DeliverHintsResponse, KeyVersionsBatch,
        MerkleNodesRequest, MerkleNodesResponse, PipeReply, PipeRequest, ReplicaReadRequest,
        ReplicaReadResponse, ReplicaWriteRequest, ReplicaWriteResponse, StreamRangeRequest,
        replica_server::{Replica, ReplicaServer},
    };
    use tokio::sync::watch;
    use tokio_stream::wrappers::ReceiverStream;
    use tonic::transport::Channel;
    use tonic::{Request, Response, Status, Streaming};

    use super::PipeHandler;

    pub(crate) struct Fake<H> {
        handler: Arc<H>,
        stopping: watch::Receiver<bool>,
    }

    impl<H> Fake<H> {
        /// Serves `handler` until `stopping` turns true.
        pub(crate) fn new(handler: H, stopping: watch::Receiver<bool>) -> Self {
            Self {
                handler: Arc::new(handler),
                stopping,
            }
        }
    }

    type Batches =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<KeyVersionsBatch, Status>> + Send>>;

    #[tonic::async_trait]
    impl<H: PipeHandler> Replica for Fake<H> {
        type StreamRangeStream = Batches;
        type PipeStream = ReceiverStream<Result<PipeReply, Status>>;

        async fn pipe(
            &self,
            request: Request<Streaming<PipeRequest>>,
        ) -> Result<Response<Self::PipeStream>, Status> {
            Ok(Response::new(super::serve(
                request.into_inner(),
                Arc::clone(&self.handler),
                self.stopping.clone(),
            )))
        }

        async fn apply_batch(
            &self,
            _: Request<KeyVersionsBatch>,
        ) -> Result<Response<ApplyBatchResponse>, Status> {
            Err(Status::unimplemented("not used"))
        }

        async fn ingest_range(
            &self,
            _: Request<Streaming<KeyVersionsBatch>>,
        ) -> Result<Response<strata_proto::v1::IngestRangeResponse>, Status> {
            Err(Status::unimplemented("not used"))
        }

        async fn write(
            &self,
            _: Request<ReplicaWriteRequest>,
        ) -> Result<Response<ReplicaWriteResponse>, Status> {
            Err(Status::unimplemented("not used"))
        }

        async fn read(
            &self,
            _: Request<ReplicaReadRequest>,
        ) -> Result<Response<ReplicaReadResponse>, Status> {
            Err(Status::unimplemented("not used"))
        }

        async fn deliver_hints(
            &self,
            _: Request<DeliverHintsRequest>,
        ) -> Result<Response<DeliverHintsResponse>, Status> {
            Err(Status::unimplemented("not used"))
        }

        async fn merkle_nodes(
            &self,
            _: Request<MerkleNodesRequest>,
        ) -> Result<Response<MerkleNodesResponse>, Status> {
            Err(Status::unimplemented("not used"))
        }

        async fn stream_range(
            &self,
            _: Request<StreamRangeRequest>,
        ) -> Result<Response<Batches>, Status> {
            Err(Status::unimplemented("not used"))
        }
    }

    /// Serves `handler` on a loopback port until the test's runtime ends;
    /// returns a lazily connecting channel to it.
    pub(crate) async fn serve<H: PipeHandler>(handler: H) -> Channel {
        let (channel, stop) = serve_until_stopped(handler).await;
        // Never stops: the sender lives as long as the runtime.
        tokio::spawn(async move { stop.closed().await });
        channel
    }

    /// As [`serve`], with the sender that stops the server's pipes.
    pub(crate) async fn serve_until_stopped<H: PipeHandler>(
        handler: H,
    ) -> (Channel, watch::Sender<bool>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopping) = watch::channel(false);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ReplicaServer::new(Fake::new(handler, stopping)))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_lazy();
        (channel, stop)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use strata_proto::v1::{KeyVersions, Version};

    use super::*;

    /// Answers a read with one version whose timestamp is the key's
    /// length (so each caller can tell its own reply); a read of "bad"
    /// fails; a batch with the key "slow" signals `started` and then waits
    /// until `gate` opens.
    #[derive(Debug)]
    struct Echo {
        applied: AtomicUsize,
        started: Arc<tokio::sync::Notify>,
        /// No permits: the gate is closed until a test adds one.
        gate: Arc<tokio::sync::Semaphore>,
    }

    impl Default for Echo {
        fn default() -> Self {
            Self {
                applied: AtomicUsize::new(0),
                started: Arc::default(),
                gate: Arc::new(tokio::sync::Semaphore::new(0)),
            }
        }
    }

    impl Echo {
        /// An echo server's handler plus handles on its slow-batch signals.
        fn gated() -> (Self, Arc<tokio::sync::Notify>, Arc<tokio::sync::Semaphore>) {
            let echo = Self::default();
            let (started, gate) = (Arc::clone(&echo.started), Arc::clone(&echo.gate));
            (echo, started, gate)
        }
    }

    impl PipeHandler for Echo {
        fn read(&self, request: ReplicaReadRequest) -> Result<ReplicaReadResponse, Status> {
            if &request.key[..] == b"bad" {
                return Err(Status::invalid_argument("bad key"));
            }
            Ok(ReplicaReadResponse {
                versions: vec![Version {
                    timestamp_micros: request.key.len() as u64,
                    request_id: 0,
                    ..Version::default()
                }],
            })
        }

        async fn apply(&self, batch: KeyVersionsBatch) -> Result<ApplyBatchResponse, Status> {
            if batch.entries.iter().any(|e| &e.key[..] == b"slow") {
                self.started.notify_one();
                let _open = self.gate.acquire().await;
            }
            let n = batch.entries.len();
            self.applied.fetch_add(n, Ordering::Relaxed);
            Ok(ApplyBatchResponse {
                applied: u32::try_from(n).expect("small"),
            })
        }
    }

    fn read_of(key: &str) -> ReplicaReadRequest {
        ReplicaReadRequest {
            key: key.as_bytes().to_vec().into(),
        }
    }

    fn batch_of(keys: &[&str]) -> KeyVersionsBatch {
        KeyVersionsBatch {
            entries: keys
                .iter()
                .map(|k| KeyVersions {
                    key: k.as_bytes().to_vec().into(),
                    versions: Vec::new(),
                })
                .collect(),
            stored: Vec::new(),
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_operations_share_one_stream_and_each_gets_its_own_reply() {
        let pipe = Arc::new(Pipe::new(fake::serve(Echo::default()).await));
        let reads: Vec<_> = (1..=50)
            .map(|n| {
                let pipe = Arc::clone(&pipe);
                tokio::spawn(async move { (n, pipe.read(read_of(&"k".repeat(n)), SECOND).await) })
            })
            .collect();
        for read in reads {
            let (n, answer) = read.await.expect("task");
            let versions = answer.expect("read answered").versions;
            assert_eq!(versions.len(), 1);
            assert_eq!(versions[0].timestamp_micros, n as u64, "reply {n} matched");
        }
        let applied = pipe
            .apply(batch_of(&["a", "b", "c"]), SECOND)
            .await
            .expect("batch applied");
        assert_eq!(applied.applied, 3);
        // Every operation went over the first stream.
        let first = pipe.session();
        assert_eq!(first.calls.issued(), Some(51));
        assert_eq!(first.calls.waiting(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_operation_reports_its_status_and_the_stream_stays_open() {
        let pipe = Pipe::new(fake::serve(Echo::default()).await);
        let err = pipe.read(read_of("bad"), SECOND).await.expect_err("bad");
        assert_eq!(
            err,
            ReplicaError::Rejected {
                code: tonic::Code::InvalidArgument,
                message: "bad key".into()
            }
        );
        let ok = pipe.read(read_of("good"), SECOND).await.expect("next read");
        assert_eq!(ok.versions[0].timestamp_micros, 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_batch_does_not_hold_up_reads_and_times_out_alone() {
        let (echo, started, gate) = Echo::gated();
        let pipe = Arc::new(Pipe::new(fake::serve(echo).await));
        let slow = {
            let pipe = Arc::clone(&pipe);
            tokio::spawn(async move {
                pipe.apply(batch_of(&["slow"]), Duration::from_millis(100))
                    .await
            })
        };
        // The batch is in the handler and stays there until the gate opens
        // (never, in this test): a server that ran one operation at a time
        // could not answer the read at all.
        started.notified().await;
        let read = pipe
            .read(read_of("k"), 5 * SECOND)
            .await
            .expect("read answered while the batch is stuck");
        assert_eq!(read.versions.len(), 1);
        let err = slow.await.expect("task").expect_err("past its deadline");
        assert_eq!(err, ReplicaError::Timeout(Duration::from_millis(100)));
        let session = pipe.session();
        assert!(
            session.calls.is_open() && session.calls.waiting() == 0,
            "the timed-out operation is forgotten"
        );
        gate.add_permits(1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_is_down_fails_operations_and_a_later_stream_reaches_it() {
        // Reserve a port, then free it: nothing listens there yet.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_lazy();
        let pipe = Pipe::new(channel);
        let err = pipe
            .read(read_of("k"), SECOND)
            .await
            .expect_err("nobody listens");
        assert!(matches!(err, ReplicaError::Unreachable(_)), "{err}");

        // The peer comes up on that port: the next operation opens a new
        // stream and is answered.
        let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
        let (_stop, stopping) = watch::channel(false);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(strata_proto::v1::replica_server::ReplicaServer::new(
                    fake::Fake::new(Echo::default(), stopping),
                ))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let mut answered = None;
        for _ in 0..50 {
            match pipe.read(read_of("kk"), SECOND).await {
                Ok(read) => {
                    answered = Some(read);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let read = answered.expect("answered once the peer is up");
        assert_eq!(read.versions[0].timestamp_micros, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopping_server_answers_what_it_received_then_ends_the_stream() {
        let (echo, started, gate) = Echo::gated();
        let (channel, stop) = fake::serve_until_stopped(echo).await;
        let pipe = Arc::new(Pipe::new(channel));
        pipe.read(read_of("k"), SECOND).await.expect("stream open");
        let slow = {
            let pipe = Arc::clone(&pipe);
            tokio::spawn(async move { pipe.apply(batch_of(&["slow"]), 5 * SECOND).await })
        };
        // The server has the batch; it is told to stop before answering it.
        started.notified().await;
        stop.send(true).expect("server running");
        gate.add_permits(1);
        let applied = slow.await.expect("task").expect("answered before the end");
        assert_eq!(applied.applied, 1);
        // The stream ends; the session closes instead of leaving callers
        // waiting for replies that will not come.
        let first = pipe.session();
        for _ in 0..100 {
            if !first.calls.is_open() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            !first.calls.is_open(),
            "the ended stream's session is closed"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_pipe_ends_its_stream() {
        let pipe = Pipe::new(fake::serve(Echo::default()).await);
        pipe.read(read_of("k"), SECOND).await.expect("answered");
        let session = Arc::downgrade(&pipe.session());
        drop(pipe);
        // Nothing holds the session any more (the task driving the stream
        // holds it weakly, and only while handing over a reply), so its
        // request queue closed and the request stream ends instead of
        // staying open for the node's lifetime.
        for _ in 0..100 {
            if session.upgrade().is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(session.upgrade().is_none(), "the session is gone");
    }
}
