//! A ring-aware client of a Strata cluster.
//!
//! The client fetches the ring from the node it was given (and again every
//! few seconds, in the background), sends each request to a live replica
//! of its key (the replica coordinates it: no forwarding hop), and on a
//! routing error — the node could not be reached, or went silent (its
//! connection's HTTP/2 keep-alive fails within ~2 s) — tries the next
//! candidate and tries that node last for a while (`suspects.rs`). Reads are also
//! retried on a replica-side `UNAVAILABLE` or deadline. Writes are retried
//! when the request provably reached no coordinator (an error without
//! Strata's `strata-node-error` marker), and when the node it went to gave
//! no answer at all within the attempt's deadline (a paused or hung
//! process: otherwise every write routed to it would fail until it came
//! back). The retry carries the same request id, so a coordinator that
//! already holds the write adds nothing; only if the silent node also
//! applies it later can the key show the value twice, as two siblings
//! that the next write with the context resolves. A node's answer,
//! error or not, is never retried: the write may be in place. The one
//! exception is an overloaded node (`RESOURCE_EXHAUSTED`: its write budget
//! refused the request before doing anything), retried on the next
//! replica after a backoff (`next_attempt`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use strata_proto::metadata::{is_from_a_node, is_refusal, is_transport_failure};
use strata_proto::v1::{
    BatchGetRequest, BatchGetResponse, CleanupRequest, ClusterStatus, Consistency,
    DecommissionRequest, DeleteRequest, DeleteResponse, GetClusterStatusRequest,
    GetProgressRequest, GetRequest, GetResponse, GetRingRequest, JoinRequest, Operation,
    PingRequest, PingResponse, PutRequest, PutResponse, RemoveNodeRequest, RepairRequest, Ring,
    admin_client::AdminClient, kv_client::KvClient,
};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::Error;
use crate::routing::Routing;
use crate::session::{self, Failed, Session};
use crate::suspects::Suspects;

/// Largest message the client sends or accepts.
const MAX_MESSAGE_BYTES: usize = 128 << 20;

/// Tunables of a [`Client`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Nodes one request is tried on, at most.
    pub attempts: usize,
    /// Deadline of one attempt.
    pub timeout: Duration,
    /// Send every request to the endpoint the client was created with
    /// instead of to a replica of its key (any node coordinates). For a
    /// network where only that endpoint is reachable, such as
    /// `kubectl port-forward`; costs one extra hop per request.
    pub direct: bool,
    /// Bearer token sent with every request, for a cluster with client
    /// authentication (`--auth-tokens-file` on the nodes).
    pub token: Option<String>,
    /// TLS, for nodes serving it (`--tls-cert`): `None` is plaintext.
    pub tls: Option<TlsOptions>,
    /// Send Gets, Puts, Deletes and Pings on one long-lived stream per node
    /// (`KV.Session`) instead of a unary call each: less CPU per request on
    /// both ends. Off: every request is its own call. Nodes that do not
    /// serve sessions get unary calls either way.
    pub sessions: bool,
}

/// A client's TLS settings (PEM bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// The CA that signed the nodes' certificates.
    pub ca: Vec<u8>,
    /// A client certificate and key, for nodes that require one
    /// (`--tls-client-ca`).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsOptions")
            .field("ca_bytes", &self.ca.len())
            .field("identity", &self.identity.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl TlsOptions {
    fn config(&self) -> tonic::transport::ClientTlsConfig {
        let config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca));
        match &self.identity {
            Some((cert, key)) => config.identity(tonic::transport::Identity::from_pem(cert, key)),
            None => config,
        }
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            attempts: 3,
            timeout: Duration::from_secs(10),
            direct: false,
            token: None,
            tls: None,
            sessions: true,
        }
    }
}

/// Clears a flag when dropped.
struct Reset<'a>(&'a AtomicBool);

impl Drop for Reset<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A ring older than this is fetched again (in the background) by the
/// next request: liveness changes and joins reach the client without an
/// error first.
const RING_MAX_AGE: Duration = Duration::from_secs(5);

impl Link {
    fn new(channel: Channel, credentials: &Credentials) -> Self {
        let session = Session::new(kv_client(channel.clone(), credentials.clone()));
        Self {
            channel,
            session: Arc::new(session),
        }
    }
}

/// A client of a Strata cluster. Cheap to clone: clones share connections
/// and the ring.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The endpoint the client was created with (ping, ring and status go
    /// there; also the fallback when the ring is empty).
    seed: String,
    /// The connection and session to the seed (ping goes there).
    seed_link: Link,
    links: Mutex<HashMap<String, Link>>,
    /// The routing and when its ring was fetched.
    routing: RwLock<(Arc<Routing>, Instant)>,
    /// Whether a ring fetch runs in the background.
    refreshing: AtomicBool,
    suspects: Suspects,
    options: ClientOptions,
    credentials: Credentials,
}

/// A channel that carries the client's credentials.
pub(crate) type Conn = InterceptedService<Channel, Credentials>;

/// The connection to one node and the session stream on it.
#[derive(Debug, Clone)]
struct Link {
    channel: Channel,
    session: Arc<Session>,
}

/// What one attempt of a key's request goes through: a node's session, or
/// a unary call when sessions are off, the node has none, or the request
/// is too large for one.
#[derive(Debug)]
struct Lane {
    link: Link,
    credentials: Credentials,
    /// Whether the client uses sessions at all.
    sessions: bool,
}

/// Adds `authorization: Bearer <token>` to every request, when the client
/// has a token. (Its `Debug` never shows the token.)
#[derive(Clone)]
pub(crate) struct Credentials {
    header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.header.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Credentials {
    fn new(token: Option<&str>) -> Result<Self, Error> {
        let header = token
            .map(|t| {
                let mut value: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
                    format!("Bearer {}", t.trim())
                        .parse()
                        .map_err(|_| Error::InvalidToken)?;
                value.set_sensitive(true);
                Ok::<_, Error>(value)
            })
            .transpose()?;
        Ok(Self { header })
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// Whether a request should be retried on another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads: idempotent, retried on any unavailability.
    Read,
    /// Writes: retried when no coordinator saw them or none answered.
    Write,
}

impl Client {
    /// Connects to `endpoint` (`http://host:port`, `host:port`, or `host`
    /// for port [`DEFAULT_PORT`]) and fetches the ring from it. Several endpoints separated by commas are
    /// tried in order, and the first that answers becomes the client's
    /// seed: a client that knows a few nodes starts while any one is up.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`], [`Error::Connect`], or [`Error::Status`]
    /// when the node does not serve the ring; [`Error::NoEndpointAnswered`]
    /// when several were given and none answered.
    pub async fn connect(endpoint: &str) -> Result<Self, Error> {
        Self::connect_with(endpoint, ClientOptions::default()).await
    }

    /// [`Client::connect`] with explicit options.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub async fn connect_with(endpoints: &str, options: ClientOptions) -> Result<Self, Error> {
        let list: Vec<&str> = endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        let credentials = Credentials::new(options.token.as_deref())?;
        let mut failures = Vec::new();
        for endpoint in &list {
            match seed_ring(endpoint, &options, &credentials).await {
                Ok((seed_channel, ring)) => {
                    let seed_link = Link::new(seed_channel, &credentials);
                    return Ok(Self {
                        inner: Arc::new(Inner {
                            seed: (*endpoint).to_owned(),
                            seed_link,
                            links: Mutex::new(HashMap::new()),
                            routing: RwLock::new((
                                Arc::new(Routing::from_ring(&ring)),
                                Instant::now(),
                            )),
                            refreshing: AtomicBool::new(false),
                            suspects: Suspects::default(),
                            options,
                            credentials,
                        }),
                    });
                }
                Err(e) => failures.push(e),
            }
        }
        // One failure per endpoint tried.
        match failures.len() {
            0 => Err(Error::InvalidEndpoint {
                endpoint: endpoints.to_owned(),
                reason: "no endpoint given".to_owned(),
            }),
            1 => Err(failures.remove(0)),
            _ => Err(Error::NoEndpointAnswered {
                errors: failures
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            }),
        }
    }

    /// Round trip to the node without touching storage.
    ///
    /// # Errors
    /// [`Error::Status`] from the node.
    pub async fn ping(&self, payload: Vec<u8>) -> Result<PingResponse, Error> {
        let request = PingRequest {
            payload: payload.into(),
        };
        let lane = self.lane(self.inner.seed_link.clone());
        let timeout = self.inner.options.timeout;
        match tokio::time::timeout(timeout, lane.ping(request)).await {
            Ok(answer) => Ok(answer.map_err(|s| at_node(s, &self.inner.seed))?),
            Err(_) => Err(Error::Status(no_answer(&self.inner.seed, timeout))),
        }
    }

    /// All siblings of `key` and their context.
    ///
    /// # Errors
    /// [`Error::Status`] from the last node tried.
    pub async fn get(
        &self,
        key: Vec<u8>,
        consistency: Option<Consistency>,
    ) -> Result<GetResponse, Error> {
        let request = GetRequest {
            key: key.into(),
            consistency,
        };
        self.route(&request.key.clone(), Retry::Read, move |lane| {
            let request = request.clone();
            async move { lane.get(request).await }
        })
        .await
    }

    /// Writes `value`, superseding the siblings `context` covers.
    ///
    /// # Errors
    /// [`Error::Status`] from the last node tried.
    pub async fn put(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        context: Vec<u8>,
        consistency: Option<Consistency>,
    ) -> Result<PutResponse, Error> {
        // One id for the write, the same on every attempt: a node that
        // already holds the version an earlier attempt wrote answers from
        // it instead of writing a duplicate sibling.
        let request = PutRequest {
            key: key.into(),
            value: value.into(),
            context: context.into(),
            consistency,
            request_id: new_request_id(),
        };
        self.route(&request.key.clone(), Retry::Write, move |lane| {
            let request = request.clone();
            async move { lane.put(request).await }
        })
        .await
    }

    /// Deletes `key`, superseding the siblings `context` covers. An empty
    /// context covers nothing: the tombstone is concurrent with every value
    /// stored, which stays. To delete what a read returned, pass that
    /// read's context.
    ///
    /// # Errors
    /// [`Error::Status`] from the last node tried.
    pub async fn delete(
        &self,
        key: Vec<u8>,
        context: Vec<u8>,
        consistency: Option<Consistency>,
    ) -> Result<DeleteResponse, Error> {
        let request = DeleteRequest {
            key: key.into(),
            context: context.into(),
            consistency,
            request_id: new_request_id(),
        };
        self.route(&request.key.clone(), Retry::Write, move |lane| {
            let request = request.clone();
            async move { lane.delete(request).await }
        })
        .await
    }

    /// Several keys in one round trip; each succeeds or fails alone. Sent
    /// to a replica of the first key (any node can coordinate reads).
    ///
    /// # Errors
    /// [`Error::Status`] when the whole call fails.
    pub async fn batch_get(
        &self,
        keys: Vec<Vec<u8>>,
        consistency: Option<Consistency>,
    ) -> Result<BatchGetResponse, Error> {
        let first = keys.first().cloned().unwrap_or_default();
        let request = BatchGetRequest {
            keys: keys.into_iter().map(Into::into).collect(),
            consistency,
        };
        self.route(&first, Retry::Read, move |lane| {
            let request = request.clone();
            let mut kv = lane.unary();
            async move { kv.batch_get(request).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    /// The ring as the node this client was created with sees it.
    ///
    /// # Errors
    /// [`Error::Status`] from the node.
    pub async fn ring(&self) -> Result<Ring, Error> {
        self.within(&self.inner.seed, self.admin().get_ring(GetRingRequest {}))
            .await
    }

    /// Every member's status as the node sees it.
    ///
    /// # Errors
    /// [`Error::Status`] from the node.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, Error> {
        let request = GetClusterStatusRequest {};
        self.within(&self.inner.seed, self.admin().get_cluster_status(request))
            .await
    }

    /// Starts an anti-entropy repair of every range the endpoint node
    /// replicates; returns its operation (poll it with [`Client::progress`]).
    ///
    /// # Errors
    /// [`Error::Status`]: `FAILED_PRECONDITION` while a repair runs there.
    pub async fn repair(&self) -> Result<Operation, Error> {
        let request = RepairRequest { ranges: Vec::new() };
        self.within(&self.inner.seed, self.admin().repair(request))
            .await
    }

    /// The endpoint node's operations (`id` empty: all it remembers).
    ///
    /// # Errors
    /// [`Error::Status`]: `NOT_FOUND` for an unknown id.
    pub async fn progress(&self, id: &str) -> Result<Vec<Operation>, Error> {
        let request = GetProgressRequest {
            operation_id: id.to_owned(),
        };
        Ok(self
            .within(&self.inner.seed, self.admin().get_progress(request))
            .await?
            .operations)
    }

    /// Makes the endpoint node join the ring (a node started with
    /// `--auto-bootstrap false` waits for this).
    ///
    /// # Errors
    /// [`Error::Status`]: `FAILED_PRECONDITION` with the reason.
    pub async fn join(&self) -> Result<Operation, Error> {
        self.within(&self.inner.seed, self.admin().join(JoinRequest {}))
            .await
    }

    /// Decommissions `node` (`None`: the endpoint node): it streams its
    /// ranges to their next owners and leaves. The operation runs on that
    /// node; follow it with [`Client::progress_of`].
    ///
    /// # Errors
    /// [`Error::Status`]: `FAILED_PRECONDITION` when fewer than N normal
    /// nodes would remain or another change is in progress.
    pub async fn decommission(&self, node: Option<&str>) -> Result<Operation, Error> {
        let request = DecommissionRequest {
            node_id: node.unwrap_or_default().to_owned(),
        };
        self.within(&self.inner.seed, self.admin().decommission(request))
            .await
    }

    /// Removes `node`, which must be down for good: the endpoint node
    /// copies its ranges from the surviving replicas to their new owners.
    ///
    /// # Errors
    /// [`Error::Status`]: `FAILED_PRECONDITION` with the reason.
    pub async fn remove_node(&self, node: &str) -> Result<Operation, Error> {
        let request = RemoveNodeRequest {
            node_id: node.to_owned(),
        };
        self.within(&self.inner.seed, self.admin().remove_node(request))
            .await
    }

    /// Makes the endpoint node delete the ranges it no longer replicates.
    ///
    /// # Errors
    /// [`Error::Status`]: `FAILED_PRECONDITION` while a change is in
    /// progress.
    pub async fn cleanup(&self) -> Result<Operation, Error> {
        self.within(&self.inner.seed, self.admin().cleanup(CleanupRequest {}))
            .await
    }

    /// Operation `id` (empty: all) as node `node_id` reports it (the node
    /// that runs it: a decommission runs on the node leaving).
    ///
    /// # Errors
    /// [`Error::Status`] from the node, or `NOT_FOUND` when the ring has
    /// no such node.
    pub async fn progress_of(&self, node_id: &str, id: &str) -> Result<Vec<Operation>, Error> {
        let ring = self.ring().await?;
        let address = ring
            .nodes
            .iter()
            .find(|n| n.node_id == node_id)
            .map(|n| n.grpc_address.clone())
            .ok_or_else(|| {
                Error::Status(tonic::Status::not_found(format!(
                    "no node {node_id} in the ring"
                )))
            })?;
        let request = GetProgressRequest {
            operation_id: id.to_owned(),
        };
        let mut admin = self.admin_on(self.channel(&address)?);
        Ok(self
            .within(&address, admin.get_progress(request))
            .await?
            .operations)
    }

    /// Fetches the ring again, from the seed node or any node it knows
    /// (nodes that just failed a request last). Returns whether a node
    /// answered.
    pub async fn refresh_ring(&self) -> bool {
        let mut addresses = vec![self.inner.seed.clone()];
        addresses.extend(
            self.routing()
                .addresses()
                .into_iter()
                .filter(|a| *a != self.inner.seed),
        );
        self.inner.suspects.last(&mut addresses, Instant::now());
        let timeout = ring_timeout(self.inner.options.timeout);
        for address in addresses {
            let channel = if address == self.inner.seed {
                self.inner.seed_link.channel.clone()
            } else {
                match self.channel(&address) {
                    Ok(channel) => channel,
                    Err(_) => continue,
                }
            };
            let mut admin = self.admin_on(channel);
            let fetch = admin.get_ring(ring_request(timeout));
            // A paused node accepts the connection and never answers.
            if let Ok(Ok(ring)) = tokio::time::timeout(timeout, fetch).await {
                *self.inner.routing.write().expect("routing lock") = (
                    Arc::new(Routing::from_ring(&ring.into_inner())),
                    Instant::now(),
                );
                return true;
            }
        }
        false
    }

    /// Starts a ring fetch in the background unless one is running: the
    /// request that asks does not wait for it.
    fn refresh_ring_soon(&self) {
        if self.inner.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let client = self.clone();
        tokio::spawn(async move {
            // Reset also if the task is dropped before it finishes (its
            // runtime shutting down): later requests may start another.
            let _done = Reset(&client.inner.refreshing);
            client.refresh_ring().await;
        });
    }

    /// The addresses of the nodes a request for `key` is sent to, in the
    /// order they are tried: the key's replicas that the ring holds alive,
    /// then other live nodes (which forward), then replicas believed
    /// down; nodes that failed a request in the last few seconds go last.
    /// Empty when the ring is (requests then go to the seed endpoint).
    #[must_use]
    pub fn nodes_for(&self, key: &[u8]) -> Vec<String> {
        let mut candidates = self.routing().candidates(key);
        self.inner.suspects.last(&mut candidates, Instant::now());
        candidates
    }

    /// The ring epoch of the last refresh (as reported by the node).
    #[must_use]
    pub fn ring_epoch(&self) -> u64 {
        self.routing().epoch
    }

    /// Awaits one admin call within the attempt deadline: a node that
    /// accepted the connection and stopped answering (paused, hung) is an
    /// error, not a hang.
    async fn within<T>(
        &self,
        address: &str,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.inner.options.timeout, call).await {
            Ok(answer) => Ok(answer.map_err(|s| at_node(s, address))?.into_inner()),
            Err(_) => Err(Error::Status(no_answer(
                address,
                self.inner.options.timeout,
            ))),
        }
    }

    fn routing(&self) -> Arc<Routing> {
        Arc::clone(&self.inner.routing.read().expect("routing lock").0)
    }

    fn admin(&self) -> AdminClient<Conn> {
        self.admin_on(self.inner.seed_link.channel.clone())
    }

    fn admin_on(&self, channel: Channel) -> AdminClient<Conn> {
        AdminClient::with_interceptor(channel, self.inner.credentials.clone())
    }

    fn channel(&self, address: &str) -> Result<Channel, Error> {
        self.link(address).map(|link| link.channel)
    }

    /// The connection to `address`, made on first use.
    fn link(&self, address: &str) -> Result<Link, Error> {
        let mut links = self.inner.links.lock().expect("link lock");
        if let Some(link) = links.get(address) {
            return Ok(link.clone());
        }
        let channel = endpoint_for(address, self.inner.options.tls.as_ref())?.connect_lazy();
        let link = Link::new(channel, &self.inner.credentials);
        links.insert(address.to_owned(), link.clone());
        Ok(link)
    }

    /// What a request to the node at the end of `link` goes through.
    fn lane(&self, link: Link) -> Lane {
        Lane {
            link,
            credentials: self.inner.credentials.clone(),
            sessions: self.inner.options.sessions,
        }
    }

    /// Sends `call` to the best candidate node for `key`, moving on to the
    /// next one as `retry` allows.
    async fn route<T, F, Fut>(&self, key: &[u8], retry: Retry, mut call: F) -> Result<T, Error>
    where
        F: FnMut(Lane) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let mut candidates = if self.inner.options.direct {
            Vec::new()
        } else {
            let fetched = self.inner.routing.read().expect("routing lock").1;
            if fetched.elapsed() > RING_MAX_AGE {
                self.refresh_ring_soon();
            }
            self.nodes_for(key)
        };
        if candidates.is_empty() {
            candidates.push(self.inner.seed.clone());
        }
        let mut last = None;
        // An overloaded node may be asked again after its backoff (the only
        // replica, or all of them busy); other failures move on once.
        let attempts = self.inner.options.attempts.max(1);
        for tried in 0..attempts {
            let address = &candidates[tried % candidates.len()];
            let lane = self.lane(self.link(address)?);
            let attempt = tokio::time::timeout(self.inner.options.timeout, call(lane)).await;
            let (status, silent) = match attempt {
                Ok(Ok(response)) => {
                    self.inner.suspects.clear(address);
                    return Ok(response);
                }
                Ok(Err(status)) => (at_node(status, address), false),
                Err(_) => (no_answer(address, self.inner.options.timeout), true),
            };
            // The connection failed or the node said nothing: later
            // requests try it last until the ring (fetched again now,
            // without waiting) says whether it is down. A node's refusal
            // is an answer: the node is up.
            let lost = silent || (is_transport_failure(&status) && !is_refusal(&status));
            if lost && !self.inner.options.direct {
                self.inner.suspects.mark(address, Instant::now());
                self.refresh_ring_soon();
            }
            let again = next_attempt(retry, &status, silent, tried);
            last = Some(reported(last, status, lost));
            match again {
                Some(pause) if !pause.is_zero() && tried + 1 < attempts => {
                    tokio::time::sleep(pause).await;
                }
                Some(_) if tried + 1 < candidates.len() => {}
                _ => break,
            }
        }
        Err(last.map_or_else(
            || Error::Status(tonic::Status::unavailable("no node to send the request to")),
            |(status, _)| Error::Status(status),
        ))
    }
}

/// Connects to one seed `endpoint` and fetches its ring, within the
/// client's timeout; errors say what is likely wrong.
async fn seed_ring(
    endpoint: &str,
    options: &ClientOptions,
    credentials: &Credentials,
) -> Result<(Channel, Ring), Error> {
    let seed_channel = endpoint_for(endpoint, options.tls.as_ref())?
        .connect()
        .await
        .map_err(|source| Error::Connect {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    let mut admin = AdminClient::with_interceptor(seed_channel.clone(), credentials.clone());
    let fetch = admin.get_ring(ring_request(options.timeout));
    let ring = tokio::time::timeout(options.timeout, fetch)
        .await
        .unwrap_or_else(|_| Err(no_answer(endpoint, options.timeout)))
        .map_err(|status| {
            // A TLS server answering a plaintext HTTP/2 preface closes
            // the connection: say what is likely wrong.
            // Transport-level failures (no Strata node's marker, a
            // code no service returns on purpose), not a refusal.
            let garbled = is_transport_failure(&status);
            let detail = || with_causes(&status);
            match &options.tls {
                _ if garbled && is_silence(&detail()) => Error::Silent {
                    endpoint: endpoint.to_owned(),
                },
                None if garbled => Error::NotGrpc {
                    endpoint: endpoint.to_owned(),
                    detail: detail(),
                },
                // The server ends a TLS session whose client sent no
                // certificate only after the handshake, on first use.
                Some(tls) if garbled && tls.identity.is_none() => Error::NoClientCertificate {
                    endpoint: endpoint.to_owned(),
                    detail: detail(),
                },
                // Every Strata node serves GetRing: a refusal without a
                // node's marker comes from something else.
                _ if status.code() == tonic::Code::Unimplemented && !is_from_a_node(&status) => {
                    Error::NotStrata {
                        endpoint: endpoint.to_owned(),
                        detail: detail(),
                    }
                }
                _ => Error::Status(status),
            }
        })?
        .into_inner();
    Ok((seed_channel, ring))
}

/// A KV client over `channel` with the client's credentials and limits.
fn kv_client(channel: Channel, credentials: Credentials) -> KvClient<Conn> {
    KvClient::with_interceptor(channel, credentials)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

impl Lane {
    async fn get(self, request: GetRequest) -> Result<GetResponse, tonic::Status> {
        let size = prost::Message::encoded_len(&request);
        match self
            .on_session(size, || session::Op::Get(request.clone()))
            .await
        {
            Some(Ok(session::Reply::Get(response))) => Ok(response),
            Some(Ok(other)) => Err(wrong_reply(&other)),
            Some(Err(status)) => Err(status),
            None => self
                .unary()
                .get(request)
                .await
                .map(tonic::Response::into_inner),
        }
    }

    async fn put(self, request: PutRequest) -> Result<PutResponse, tonic::Status> {
        let size = prost::Message::encoded_len(&request);
        match self
            .on_session(size, || session::Op::Put(request.clone()))
            .await
        {
            Some(Ok(session::Reply::Put(response))) => Ok(response),
            Some(Ok(other)) => Err(wrong_reply(&other)),
            Some(Err(status)) => Err(status),
            None => self
                .unary()
                .put(request)
                .await
                .map(tonic::Response::into_inner),
        }
    }

    async fn delete(self, request: DeleteRequest) -> Result<DeleteResponse, tonic::Status> {
        let size = prost::Message::encoded_len(&request);
        match self
            .on_session(size, || session::Op::Delete(request.clone()))
            .await
        {
            Some(Ok(session::Reply::Delete(response))) => Ok(response),
            Some(Ok(other)) => Err(wrong_reply(&other)),
            Some(Err(status)) => Err(status),
            None => self
                .unary()
                .delete(request)
                .await
                .map(tonic::Response::into_inner),
        }
    }

    async fn ping(self, request: PingRequest) -> Result<PingResponse, tonic::Status> {
        let size = prost::Message::encoded_len(&request);
        match self
            .on_session(size, || session::Op::Ping(request.clone()))
            .await
        {
            Some(Ok(session::Reply::Ping(response))) => Ok(response),
            Some(Ok(other)) => Err(wrong_reply(&other)),
            Some(Err(status)) => Err(status),
            None => AdminClient::with_interceptor(self.link.channel, self.credentials)
                .ping(request)
                .await
                .map(tonic::Response::into_inner),
        }
    }

    /// The session's answer to the request `op` makes, or `None` when it
    /// goes as a unary call (sessions off or unsupported, or `size` over
    /// the session's limit).
    async fn on_session(
        &self,
        size: usize,
        op: impl FnOnce() -> session::Op,
    ) -> Option<Result<session::Reply, tonic::Status>> {
        if !self.sessions {
            return None;
        }
        let session = &self.link.session;
        if size > session::MAX_REQUEST_BYTES || session.is_unsupported() {
            return None;
        }
        match session.call(op()).await {
            Ok(reply) => Some(Ok(reply)),
            Err(Failed::Status(status)) => Some(Err(status)),
            Err(Failed::Unsupported) => None,
        }
    }

    /// A unary KV client on the lane's connection: built only when the
    /// session does not carry the request.
    fn unary(self) -> KvClient<Conn> {
        kv_client(self.link.channel, self.credentials)
    }
}

/// A session reply of another kind than the request's: a broken node, so
/// the status carries no node marker (the request counts as unanswered).
fn wrong_reply(reply: &session::Reply) -> tonic::Status {
    tonic::Status::internal(format!(
        "the node answered with the wrong kind of reply: {reply:?}"
    ))
}

/// Deadline of one ring fetch: the ring is small and any node serves it,
/// so a node that takes longer is skipped for the next one.
fn ring_timeout(attempt: Duration) -> Duration {
    attempt.min(Duration::from_secs(2))
}

fn ring_request(timeout: Duration) -> tonic::Request<GetRingRequest> {
    let mut request = tonic::Request::new(GetRingRequest {});
    request.set_timeout(timeout);
    request
}

/// The failure a request reports if no later attempt succeeds, given the
/// one so far and an attempt's `status` (`lost`: the connection failed or
/// the node said nothing): the latest, unless it is a lost connection and
/// a node answered before. "Only 1 of the key's 3 replicas are up" says
/// more about why than "keep-alive timed out" on the next node does.
fn reported(
    so_far: Option<(tonic::Status, bool)>,
    status: tonic::Status,
    lost: bool,
) -> (tonic::Status, bool) {
    match so_far {
        Some(answered) if lost && !answered.1 => answered,
        _ => (status, lost),
    }
}

/// A failure of the connection to `address` (no node marker) says which
/// node and what the transport saw: tonic's message alone is often just
/// "http2 error". A node's own answer is returned as it is.
fn at_node(status: tonic::Status, address: &str) -> tonic::Status {
    if is_from_a_node(&status) {
        return status;
    }
    let detail = with_causes(&status);
    tonic::Status::with_metadata(
        status.code(),
        format!("{address}: {detail}"),
        status.metadata().clone(),
    )
}

/// A status's message followed by its error's causes.
fn with_causes(status: &tonic::Status) -> String {
    let mut detail = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !detail.contains(&cause_text) {
            detail = format!("{detail}: {cause_text}");
        }
        source = cause.source();
    }
    detail
}

/// Whether a transport failure is the connection's keep-alive giving up:
/// the node accepted the connection and stopped answering.
fn is_silence(detail: &str) -> bool {
    detail.contains("keep-alive timed out")
}

/// The error of an attempt the node never answered.
fn no_answer(address: &str, timeout: Duration) -> tonic::Status {
    tonic::Status::deadline_exceeded(format!("no answer from {address} within {timeout:?}"))
}

/// Whether a request that failed with `status` on its `attempt`-th node
/// (from 0) goes to the next one, and after what pause. `silent`: the node
/// gave no answer within the attempt's deadline.
///
/// - An overloaded node (`RESOURCE_EXHAUSTED` from a node: its write
///   budget refused the request before doing anything) is retried after a
///   backoff, 50 ms doubling per attempt up to 1 s, for reads and writes:
///   backing off is what relieves it.
/// - A write: after a transport failure (the node unreachable, or its
///   connection lost mid-request, as when the process is killed) or no
///   answer; never after a node's answer, which says what happened. A
///   write whose outcome is unknown goes to the next replica under the
///   same request id: a replica holding that version answers without
///   making another.
/// - A read: after a transport failure, any `UNAVAILABLE`, or a deadline.
fn next_attempt(
    retry: Retry,
    status: &tonic::Status,
    silent: bool,
    attempt: usize,
) -> Option<Duration> {
    let from_node = is_from_a_node(status);
    if from_node && status.code() == Code::ResourceExhausted {
        let doublings = u32::try_from(attempt).unwrap_or(u32::MAX).min(5);
        return Some((Duration::from_millis(50) * 2u32.pow(doublings)).min(Duration::from_secs(1)));
    }
    let again = match retry {
        Retry::Write => silent || is_transport_failure(status),
        Retry::Read => {
            is_transport_failure(status)
                || matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
        }
    };
    again.then_some(Duration::ZERO)
}

/// A random, non-zero id for one write and its retries.
#[must_use]
pub fn new_request_id() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS once per process and then varied;
    // mixing in a sequence number keeps ids distinct within the process.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(SEQUENCE.fetch_add(1, Ordering::Relaxed));
    hasher.finish().max(1)
}

/// The port a node's gRPC server listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7400;

/// `host:port` as given, or `host` with [`DEFAULT_PORT`] (without it the
/// URI's scheme would pick port 80 or 443, where no node listens).
fn with_default_port(bare: &str) -> std::borrow::Cow<'_, str> {
    match format!("http://{bare}").parse::<tonic::transport::Uri>() {
        Ok(uri) if uri.port().is_none() && uri.host().is_some_and(|h| !h.is_empty()) => {
            std::borrow::Cow::Owned(format!("{bare}:{DEFAULT_PORT}"))
        }
        _ => std::borrow::Cow::Borrowed(bare),
    }
}

fn endpoint_for(endpoint: &str, tls: Option<&TlsOptions>) -> Result<Endpoint, Error> {
    let bare = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or(endpoint);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let invalid = |reason: String| Error::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let with_port = with_default_port(bare);
    let built = Endpoint::from_shared(format!("{scheme}://{with_port}"))
        .map_err(|e| invalid(e.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        // A connection whose peer vanished without a reset (a partition,
        // a powered-off host) fails within ~15 s instead of holding a
        // session's requests until each times out.
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(1));
    match tls {
        Some(tls) => built
            .tls_config(tls.config())
            .map_err(|e| invalid(format!("TLS settings: {e}"))),
        None => Ok(built),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::metadata::FROM_NODE;

    #[test]
    fn an_endpoint_without_a_port_gets_the_nodes_default() {
        for (given, used) in [
            ("db-0.kv", "db-0.kv:7400"),
            ("127.0.0.1", "127.0.0.1:7400"),
            ("[::1]", "[::1]:7400"),
            ("db-0.kv:9000", "db-0.kv:9000"),
            ("[::1]:9000", "[::1]:9000"),
        ] {
            assert_eq!(with_default_port(given), used);
        }
        let endpoint = endpoint_for("http://127.0.0.1", None).expect("valid");
        assert_eq!(endpoint.uri().port_u16(), Some(7400));
    }

    fn from_node(mut status: tonic::Status) -> tonic::Status {
        status
            .metadata_mut()
            .insert(FROM_NODE, tonic::metadata::MetadataValue::from_static("1"));
        status
    }

    #[test]
    fn a_nodes_answer_is_reported_over_a_later_lost_connection() {
        let refusal = {
            let mut status = tonic::Status::unavailable("only 1 of the key's 3 are up");
            status.metadata_mut().insert(
                strata_proto::metadata::REFUSED,
                tonic::metadata::MetadataValue::from_static("1"),
            );
            status
        };
        let lost = || tonic::Status::unavailable("keep-alive timed out");
        let first = reported(None, lost(), true);
        assert_eq!(first.0.message(), "keep-alive timed out");
        let answered = reported(Some(first), refusal.clone(), false);
        assert_eq!(answered.0.message(), refusal.message());
        let kept = reported(Some(answered), lost(), true);
        assert_eq!(kept.0.message(), refusal.message(), "the answer stays");
        let newer = reported(Some(kept), tonic::Status::unavailable("1 of 2"), false);
        assert_eq!(newer.0.message(), "1 of 2", "a later answer replaces it");
    }

    #[test]
    fn a_transport_failure_names_the_node_and_keeps_its_metadata() {
        let mut refusal = tonic::Status::unavailable("not a replica of the key");
        refusal.metadata_mut().insert(
            strata_proto::metadata::REFUSED,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        let named = at_node(refusal, "10.0.0.7:7400");
        assert_eq!(named.message(), "10.0.0.7:7400: not a replica of the key");
        assert!(is_refusal(&named), "still a refusal: {named:?}");
        assert!(is_transport_failure(&named), "still retried elsewhere");
        let answer = from_node(tonic::Status::unavailable("1 of 2 acknowledged"));
        assert_eq!(at_node(answer, "x").message(), "1 of 2 acknowledged");
    }

    #[test]
    fn an_overloaded_node_is_retried_after_a_growing_backoff() {
        let busy = from_node(tonic::Status::resource_exhausted("node overloaded"));
        for retry in [Retry::Write, Retry::Read] {
            let pauses: Vec<_> = (0..8)
                .map(|n| next_attempt(retry, &busy, false, n).expect("retried"))
                .collect();
            assert_eq!(pauses[0], Duration::from_millis(50));
            assert_eq!(pauses[1], Duration::from_millis(100));
            assert_eq!(pauses[4], Duration::from_millis(800));
            assert_eq!(pauses[7], Duration::from_secs(1), "capped");
        }
        // Not a node's refusal (no marker): not an overload.
        let other = tonic::Status::resource_exhausted("message too large");
        assert_eq!(next_attempt(Retry::Write, &other, false, 0), None);
    }

    #[test]
    fn writes_are_retried_only_when_no_node_answered() {
        let refused = tonic::Status::unavailable("connection refused");
        assert_eq!(
            next_attempt(Retry::Write, &refused, false, 0),
            Some(Duration::ZERO)
        );
        let quorum = from_node(tonic::Status::unavailable("1 of 2 acks"));
        assert_eq!(next_attempt(Retry::Write, &quorum, false, 0), None);
        let silent = tonic::Status::deadline_exceeded("no answer");
        assert_eq!(
            next_attempt(Retry::Write, &silent, true, 0),
            Some(Duration::ZERO)
        );
        let bad = from_node(tonic::Status::invalid_argument("key too long"));
        assert_eq!(next_attempt(Retry::Write, &bad, false, 0), None);
        assert_eq!(
            next_attempt(Retry::Read, &quorum, false, 0),
            Some(Duration::ZERO)
        );
        assert_eq!(next_attempt(Retry::Read, &bad, false, 0), None);
    }

    #[test]
    fn a_connection_lost_mid_request_is_retried_elsewhere() {
        // What tonic reports when the node's process dies with the
        // request in flight.
        let reset = tonic::Status::unknown("transport error");
        let cut = tonic::Status::internal("h2 protocol error");
        for status in [&reset, &cut] {
            for retry in [Retry::Write, Retry::Read] {
                assert_eq!(
                    next_attempt(retry, status, false, 0),
                    Some(Duration::ZERO),
                    "{retry:?} after {status}"
                );
            }
        }
        // The same codes from a node are its answer.
        let failed = from_node(tonic::Status::internal("dot reservation failed"));
        assert_eq!(next_attempt(Retry::Write, &failed, false, 0), None);
        assert_eq!(next_attempt(Retry::Read, &failed, false, 0), None);
    }

    /// A node of an older version: unary Put works, `Session` is refused
    /// as its router or its token policy refuses a method it does not know.
    struct NoSessions {
        refusal: fn() -> tonic::Status,
    }

    #[tonic::async_trait]
    impl strata_proto::v1::kv_server::Kv for NoSessions {
        async fn get(
            &self,
            _: tonic::Request<GetRequest>,
        ) -> Result<tonic::Response<GetResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("not in this fake"))
        }

        async fn put(
            &self,
            request: tonic::Request<PutRequest>,
        ) -> Result<tonic::Response<PutResponse>, tonic::Status> {
            Ok(tonic::Response::new(PutResponse {
                context: request.into_inner().value,
                replicas_acked: 1,
            }))
        }

        async fn delete(
            &self,
            _: tonic::Request<DeleteRequest>,
        ) -> Result<tonic::Response<DeleteResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("not in this fake"))
        }

        async fn batch_get(
            &self,
            _: tonic::Request<BatchGetRequest>,
        ) -> Result<tonic::Response<BatchGetResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("not in this fake"))
        }

        async fn batch_write(
            &self,
            _: tonic::Request<strata_proto::v1::BatchWriteRequest>,
        ) -> Result<tonic::Response<strata_proto::v1::BatchWriteResponse>, tonic::Status> {
            Err(tonic::Status::unimplemented("not in this fake"))
        }

        type SessionStream = tokio_stream::wrappers::ReceiverStream<
            Result<strata_proto::v1::SessionReply, tonic::Status>,
        >;

        async fn session(
            &self,
            _: tonic::Request<tonic::Streaming<strata_proto::v1::SessionRequest>>,
        ) -> Result<tonic::Response<Self::SessionStream>, tonic::Status> {
            Err((self.refusal)())
        }
    }

    /// Serves `kv` on a loopback port until the test's runtime ends.
    async fn serve(kv: NoSessions) -> Channel {
        let address = serve_at(kv).await;
        endpoint_for(&address.to_string(), None)
            .expect("endpoint")
            .connect_lazy()
    }

    /// Serves `kv` alone (no `Admin`) and returns its loopback address.
    async fn serve_at(kv: NoSessions) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(strata_proto::v1::kv_server::KvServer::new(kv))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        address
    }

    #[tokio::test]
    async fn a_server_without_strata_s_admin_service_is_named_as_not_a_node() {
        let address = serve_at(NoSessions {
            refusal: || tonic::Status::unimplemented(""),
        })
        .await;
        let error = Client::connect(&address.to_string())
            .await
            .expect_err("not a node");
        assert!(
            matches!(&error, Error::NotStrata { endpoint, .. } if *endpoint == address.to_string()),
            "{error:?}"
        );
        assert!(error.to_string().contains("--listen port"), "{error}");
    }

    #[tokio::test]
    async fn a_node_without_sessions_gets_unary_calls() {
        let refusals: [fn() -> tonic::Status; 2] = [
            || tonic::Status::unimplemented(""),
            || tonic::Status::permission_denied("/strata.v1.KV/Session needs the admin role"),
        ];
        for refusal in refusals {
            let channel = serve(NoSessions { refusal }).await;
            let credentials = Credentials::new(None).expect("no token");
            let link = Link::new(channel, &credentials);
            let session = Arc::clone(&link.session);
            let put = |value: &'static [u8]| PutRequest {
                key: b"k".to_vec().into(),
                value: value.to_vec().into(),
                ..PutRequest::default()
            };
            let lane = || Lane {
                link: link.clone(),
                credentials: credentials.clone(),
                sessions: true,
            };
            let first = lane()
                .put(put(b"first"))
                .await
                .expect("falls back to unary");
            assert_eq!(&first.context[..], b"first");
            assert!(session.is_unsupported(), "the session stays off");
            let second = lane()
                .put(put(b"second"))
                .await
                .expect("unary from the start");
            assert_eq!(&second.context[..], b"second");
        }
    }
}
