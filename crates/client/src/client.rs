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

use strata_cluster::LatencyMeans;
use strata_proto::metadata::{is_from_a_node, is_refusal, is_transport_failure};
use strata_proto::v1::{
    BatchGetRequest, BatchGetResponse, CleanupRequest, ClusterStatus, Consistency,
    DecommissionRequest, DeleteRequest, DeleteResponse, GetClusterStatusRequest,
    GetProgressRequest, GetRequest, GetResponse, GetRingRequest, JoinRequest, Operation,
    PingRequest, PingResponse, PutRequest, PutResponse, RemoveNodeRequest, RepairRequest, Ring,
    admin_client::AdminClient,
};
use tonic::transport::Channel;

use crate::Error;
use crate::credentials::{Conn, Credentials};
use crate::lane::{Lane, Link};
use crate::options::{ClientOptions, endpoint_for};
use crate::retry::{Retry, at_node, is_silence, next_attempt, no_answer, reported, with_causes};
use crate::routing::Routing;
use crate::suspects::Suspects;

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
    /// Recent request latency per node address: a node clearly slower
    /// than the key's other candidates is tried after them.
    latency: Mutex<LatencyMeans<String>>,
    options: ClientOptions,
    credentials: Credentials,
}

/// A node's latency mean is forgotten this long after its last request:
/// a node passed for being slow is tried in its place again.
const LATENCY_FORGET_AFTER: Duration = Duration::from_secs(10);

impl Client {
    /// Connects to `endpoint` (`http://host:port`, `host:port`, or `host`
    /// for port [`DEFAULT_PORT`](crate::DEFAULT_PORT)) and fetches the ring from it. Several endpoints separated by commas are
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
                            latency: Mutex::new(LatencyMeans::new(LATENCY_FORGET_AFTER)),
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
    /// down; a node whose requests took clearly longer than the others'
    /// lately goes after those that did not (`strata_cluster::LatencyMeans`:
    /// a slow disk or a starved process is up for the ring, and a write
    /// it coordinates waits for its own disk), and nodes that failed a
    /// request in the last few seconds go last. Empty when the ring is
    /// (requests then go to the seed endpoint).
    #[must_use]
    pub fn nodes_for(&self, key: &[u8]) -> Vec<String> {
        let mut candidates = self.routing().candidates(key);
        let now = Instant::now();
        self.latency()
            .slow_ones_last(&mut candidates, |address| address, now);
        self.inner.suspects.last(&mut candidates, now);
        candidates
    }

    fn latency(&self) -> std::sync::MutexGuard<'_, LatencyMeans<String>> {
        self.inner
            .latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
            let started = Instant::now();
            let attempt = tokio::time::timeout(self.inner.options.timeout, call(lane)).await;
            // Every attempt is a latency sample (one given up: the timeout).
            let now = Instant::now();
            self.latency()
                .observe(address, now.saturating_duration_since(started), now);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::{NoSessions, serve_at};

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
}
