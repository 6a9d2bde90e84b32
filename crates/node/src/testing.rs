//! Test fixtures: a node's [`Context`] over a temporary directory, built
//! step by step (`ContextBuilder::new(dir).factor(3).build()`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use strata_cluster::{ConsistencyLevel, NodeGossip, NodeId, NodeState, Peer, Rejoin, tokens_for};

use crate::context::{Context, Replication, Settings, Topology};
use crate::hints::{HintLimits, HintStore};
use crate::metrics::Metrics;
use crate::storage::Storage;
use crate::transport::{Peers, ReplicaTransport};

/// Builds a [`Context`] for node `strata-0` (by default) alone on its ring,
/// with N = 1, QUORUM reads and writes, 1 KiB values, a 2 s timeout and
/// read repair on every read.
pub(crate) struct ContextBuilder<'a> {
    dir: &'a Path,
    id: NodeId,
    topology: Option<Topology>,
    transport: Option<Arc<dyn ReplicaTransport>>,
    hint_limits: HintLimits,
    settings: Settings,
}

impl<'a> ContextBuilder<'a> {
    pub(crate) fn new(dir: &'a Path) -> Self {
        Self {
            dir,
            id: NodeId::new("strata-0").expect("id"),
            topology: None,
            transport: None,
            hint_limits: HintLimits::default(),
            settings: Settings {
                replication: Replication {
                    factor: 1,
                    write: ConsistencyLevel::Quorum,
                    read: ConsistencyLevel::Quorum,
                    last_write_wins: false,
                    strict_quorum: false,
                },
                max_value_bytes: 1024,
                max_write_bytes_in_flight: 64 << 20,
                request_timeout: Duration::from_secs(2),
                read_repair_period: 1,
                speculative_retry: None,
            },
        }
    }

    pub(crate) fn id(mut self, id: &NodeId) -> Self {
        self.id = id.clone();
        self
    }

    pub(crate) fn factor(mut self, factor: u32) -> Self {
        self.settings.replication.factor = factor;
        self
    }

    pub(crate) fn last_write_wins(mut self, on: bool) -> Self {
        self.settings.replication.last_write_wins = on;
        self
    }

    pub(crate) fn strict_quorum(mut self, on: bool) -> Self {
        self.settings.replication.strict_quorum = on;
        self
    }

    pub(crate) fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.request_timeout = timeout;
        self
    }

    pub(crate) fn speculative_retry(mut self, after: Option<Duration>) -> Self {
        self.settings.speculative_retry = after;
        self
    }

    pub(crate) fn read_repair_period(mut self, period: u32) -> Self {
        self.settings.read_repair_period = period;
        self
    }

    pub(crate) fn topology(mut self, topology: Topology) -> Self {
        self.topology = Some(topology);
        self
    }

    pub(crate) fn hint_window(mut self, window: Duration) -> Self {
        self.hint_limits.window = window;
        self
    }

    pub(crate) fn transport(mut self, transport: Arc<dyn ReplicaTransport>) -> Self {
        self.transport = Some(transport);
        self
    }

    pub(crate) fn build(self) -> Arc<Context> {
        let metrics = Arc::new(Metrics::new());
        let storage = Arc::new(
            Storage::open(
                &self.dir.join("engine"),
                strata_engine::Durability::SyncEachGroup,
            )
            .expect("open storage"),
        );
        let hints = Arc::new(
            HintStore::open(&self.dir.join("hints"), self.hint_limits, metrics.hints())
                .expect("open hints"),
        );
        let timeout = self.settings.request_timeout;
        let peers = Arc::new(Peers::new(timeout.min(Duration::from_secs(1)), timeout));
        let transport = self
            .transport
            .unwrap_or_else(|| Arc::clone(&peers) as Arc<dyn ReplicaTransport>);
        Arc::new(Context {
            topology: self
                .topology
                .unwrap_or_else(|| Topology::single(&self.id, 16)),
            id: self.id,
            storage,
            hints,
            peers,
            transport,
            metrics,
            settings: self.settings,
        })
    }
}

/// A sibling set of one version of `value`, written by `node` (its first
/// write: counter 1, empty context, timestamp 1).
pub(crate) fn one_version(node: &str, value: &str) -> strata_cluster::Siblings {
    strata_cluster::Siblings::from_versions([strata_cluster::Version {
        dot: strata_cluster::Dot {
            node: NodeId::new(node).expect("id"),
            counter: 1,
        },
        context: strata_cluster::VersionVector::new(),
        value: Some(value.as_bytes().to_vec().into()),
        timestamp_micros: 1,
        request_id: 0,
    }])
}

/// A member for a fixed test view: 16 tokens, both addresses `address`
/// (the in-memory transport resolves members by id).
pub(crate) fn member(id: &NodeId, address: &str, state: NodeState, alive: bool) -> Peer {
    Peer {
        id: id.clone(),
        generation: 0,
        gossip: NodeGossip {
            grpc_address: address.to_owned(),
            internal_address: address.to_owned(),
            gossip_address: String::new(),
            tokens: tokens_for(id, 16),
            state,
            load_bytes: 0,
            incarnation: 1,
            departures: Vec::new(),
            rejoin: Rejoin::None,
        },
        alive,
    }
}

/// Serves `ctx`'s `Replica` service on a loopback port until the returned
/// sender is dropped, as a node that predates the methods in `missing`
/// would (they answer `UNIMPLEMENTED`, as tonic does for a method it
/// does not know).
pub(crate) async fn serve_replica(
    ctx: &Arc<Context>,
    missing: &'static [&'static str],
) -> (tonic::transport::Channel, tokio::sync::oneshot::Sender<()>) {
    use crate::repair::{RepairSettings, Repairer};
    use crate::services::ReplicaService;
    use crate::transport::MAX_MESSAGE_BYTES;

    let repairer = Arc::new(Repairer::new(
        Arc::clone(ctx),
        RepairSettings {
            depth: 4,
            bytes_per_second: 0,
            interval: None,
            timeout: Duration::from_secs(1),
        },
    ));
    let (stop_pipes, stopping) = tokio::sync::watch::channel(false);
    let service = strata_proto::v1::replica_server::ReplicaServer::new(ReplicaService::new(
        ctx, repairer, stopping,
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(tower::layer::layer_fn(move |inner| Missing {
                inner,
                missing,
            }))
            .add_service(service)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move {
                    let _ = stopped.await;
                    let _ = stop_pipes.send(true);
                },
            ),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_lazy();
    (channel, stop)
}

/// Answers `UNIMPLEMENTED` for the paths in `missing` (`/package.Service/Method`).
#[derive(Clone)]
struct Missing<S> {
    inner: S,
    missing: &'static [&'static str],
}

impl<S, B> tower::Service<http::Request<B>> for Missing<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if self.missing.contains(&request.uri().path()) {
            let response = tonic::Status::unimplemented("").into_http();
            return Box::pin(async move { Ok(response) });
        }
        Box::pin(self.inner.call(request))
    }
}
