//! The coordinator: turns a client request into replica operations and a
//! quorum decision.
//!
//! Write (`write.rs`): validate; if this node is not a replica of the key,
//! forward the request to one that is alive (a coordinator must hold the
//! key's sibling set, see below). Otherwise, under the key's stripe lock,
//! read the local sibling set, make the new version with the next dot and
//! the client's context, merge it in and apply it locally; then send the
//! merged set to the other replicas in parallel and answer after W acks or
//! fail with `Unavailable` at the deadline. Read (`read.rs`): ask R live
//! replicas (this node first, all of them on every `read_repair_period`-th
//! read, one more for each that fails), answer after R, merge; repair stale
//! replicas (blocking above ONE, in the background for the rest).
//!
//! Replicas on other nodes are reached through the context's
//! [`ReplicaTransport`](crate::transport::ReplicaTransport) (`remote.rs`).
//!
//! Replicas that gossip marks down are failed at once: a request whose
//! consistency cannot be met fails fast, before anything is written.

mod read;
pub(crate) mod remote;
mod write;

use std::sync::Arc;

use prost::Message as _;
use strata_cluster::{ClusterView, ReplicaTarget, Siblings};
use strata_proto::v1;

use crate::clock::now_micros;
use crate::context::Context;
use crate::dots::{DotCounter, DotError};
use crate::request::RequestError;
use crate::storage::{StorageError, check_clock_entries, clock_from_proto, clock_to_proto};

pub use strata_cluster::VersionVector;
pub use write::WriteRequest;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// The request is malformed.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The context is not one this cluster issued.
    #[error("malformed context: {0}")]
    Context(String),
    /// Fewer replicas answered than the consistency level needs.
    #[error("consistency needs {required} replicas, {acks} answered{}", why_not(.why))]
    Unavailable {
        /// Replicas that answered.
        acks: u32,
        /// Replicas required.
        required: u32,
        /// The last replica failure seen ("node-2: ..."), or that the
        /// others did not answer in time: what the operator looks at.
        why: Option<String>,
    },
    /// Too few of the key's replicas are up to try: failed before any
    /// replica was contacted, so nothing was read or written.
    #[error("{}", replicas_down(*.up, *.replicas, *.required))]
    ReplicasDown {
        /// Replicas gossip believes alive.
        up: u32,
        /// The key's replicas.
        replicas: u32,
        /// Replicas required.
        required: u32,
    },
    /// A write reached a node that is not a replica of the key after it
    /// was already forwarded once: the two nodes' ring views disagree.
    #[error(
        "this node is not a replica of the key and the request was already forwarded; ring views are converging, retry"
    )]
    NotReplica,
    /// A node that is not a replica of the key forwarded a write, and no
    /// live replica took it (each refused it unwritten, or could not be
    /// reached).
    #[error(
        "no replica of the key took the forwarded write ({tried} tried; ring views may be converging); retry"
    )]
    NoReplicaTook {
        /// Replicas the write was forwarded to.
        tried: u32,
        /// Replicas the consistency level required.
        required: u32,
    },
    /// A write was forwarded to this replica, whose store refuses writes
    /// (a full disk, an IO error, damage).
    #[error(
        "this replica's store refuses writes (see its status) and the request was already forwarded; retry"
    )]
    StoreRefusesWrites,
    /// This replica's store refuses writes and no other replica of the key
    /// was up to coordinate the write instead (with N = 1, none exists).
    #[error(
        "this node's store refuses writes and no other replica of the key is up to take the write: {0}"
    )]
    StoreFailed(String),
    /// The replica a write was forwarded to answered with an error.
    #[error("{}", .0.message())]
    Forwarded(tonic::Status),
    /// The local store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The write would leave the key with more siblings than the limit.
    #[error(
        "key has {siblings} siblings (limit {limit}): read it and write with the returned context to resolve them"
    )]
    TooManySiblings {
        /// Siblings the key would have.
        siblings: usize,
        /// The limit.
        limit: usize,
    },
    /// Dot counters could not be reserved.
    #[error(transparent)]
    Dots(#[from] DotError),
}

/// Coordinates requests on this node.
#[derive(Debug)]
pub struct Coordinator {
    ctx: Arc<Context>,
    dots: DotCounter,
    /// Per-key critical sections (striped by key hash): read, dot, merge and
    /// local apply happen under one, so this node's dots for a key follow
    /// its local causal order even when writes race. Async mutexes: the
    /// local apply (an fsync) is awaited while holding one.
    stripes: Box<[tokio::sync::Mutex<()>]>,
    reads: std::sync::atomic::AtomicU64,
    /// Recent replica-request latency per peer: reads ask slow replicas
    /// last.
    latency: Arc<crate::peer_latency::PeerLatency>,
}

/// A read's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The merged siblings (in last-write-wins mode, at most one).
    pub siblings: Siblings,
    /// Context covering every version the replicas returned.
    pub context: VersionVector,
    /// Replicas that answered.
    pub answered: u32,
}

/// A write's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Context covering the written version, for a follow-up write.
    pub context: Vec<u8>,
    /// Replicas that acknowledged.
    pub acked: u32,
}

impl Coordinator {
    /// A coordinator for the node `ctx` describes, issuing dots from `dots`.
    #[must_use]
    pub fn new(ctx: Arc<Context>, dots: DotCounter) -> Self {
        Self {
            ctx,
            dots,
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            reads: std::sync::atomic::AtomicU64::new(0),
            latency: Arc::default(),
        }
    }

    /// The shared state this coordinator works with.
    #[must_use]
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// The view to serve a request on. Until gossip has settled after this
    /// node's start (`gossip_settle.rs`), a request for which `enough`
    /// finds too few live replicas in the view, or whose view lacks a
    /// founder of the cluster, waits (at most the request timeout) for a
    /// view that has them or for gossip to settle, and takes the view as
    /// it is then: the replicas it has not heard yet are most likely up.
    async fn settled_view(&self, enough: impl Fn(&ClusterView) -> bool) -> Arc<ClusterView> {
        let view = self.ctx.view();
        if self.ctx.topology.may_serve(&view, &enough) {
            return view;
        }
        self.ctx.metrics.waited_for_gossip();
        self.ctx
            .topology
            .wait_to_serve(self.ctx.settings.request_timeout, &enough)
            .await;
        self.ctx.view()
    }
}

/// How many of `targets` are up, or [`CoordinatorError::ReplicasDown`]
/// when that is fewer than `required`: the request fails before any
/// replica is contacted. Quorums count only the replicas that are up.
/// `stand_ins` are live nodes that will hold hints for down replicas
/// (sloppy quorum); their acks count too.
fn enough_up(
    targets: &[ReplicaTarget],
    stand_ins: u32,
    required: u32,
) -> Result<u32, CoordinatorError> {
    let up = count(targets.iter().filter(|t| t.alive).count()) + stand_ins;
    if up < required {
        return Err(CoordinatorError::ReplicasDown {
            up,
            replicas: count(targets.len()),
            required,
        });
    }
    Ok(up)
}

/// [`CoordinatorError::ReplicasDown`]'s message: a key with fewer
/// replicas than required is a ring with fewer members than N, not a
/// node being down.
fn replicas_down(up: u32, replicas: u32, required: u32) -> String {
    if replicas < required {
        format!(
            "consistency needs {required} replicas but the key has only {replicas}: the ring has \
             fewer members than the replication factor (more nodes must join, or use a lower \
             consistency); no replica was asked, so nothing was read or written"
        )
    } else {
        format!(
            "consistency needs {required} replicas but only {up} of the key's {replicas} are up; \
             no replica was asked, so nothing was read or written"
        )
    }
}

/// The tail of [`CoordinatorError::Unavailable`]'s message.
fn why_not(why: &Option<String>) -> String {
    why.as_ref()
        .map(|why| format!("; {why}"))
        .unwrap_or_default()
}

/// The replica failures one request met, for its error if it misses its
/// consistency level: which replica failed and how (a damaged table, a
/// full disk, a refusal, a timeout), not just a count.
#[derive(Debug, Default)]
struct Failures {
    /// "replica: error", for the first [`Failures::MAX_NAMED`].
    named: Vec<String>,
    /// Every failure, named or not.
    count: usize,
}

impl Failures {
    /// Longest part of a replica's error kept (a peer's message is not
    /// ours to trust with the size of ours).
    const MAX_ERROR: usize = 400;
    /// Most replicas named (N may be up to 64; the message travels in a
    /// header, `grpc-message`).
    const MAX_NAMED: usize = 8;

    fn add(&mut self, replica: &strata_cluster::NodeId, error: &dyn std::fmt::Display) {
        self.count += 1;
        if self.named.len() == Self::MAX_NAMED {
            return;
        }
        let mut error = error.to_string();
        if error.len() > Self::MAX_ERROR {
            let mut end = Self::MAX_ERROR;
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            error.truncate(end);
            error.push('…');
        }
        self.named.push(format!("{replica}: {error}"));
    }

    /// The failures, as [`CoordinatorError::Unavailable`] carries them.
    fn why(mut self) -> Option<String> {
        let unnamed = self.count - self.named.len();
        if unnamed > 0 {
            self.named.push(format!("{unnamed} more replicas failed"));
        }
        (!self.named.is_empty()).then(|| self.named.join("; "))
    }

    /// The failures, and that the deadline passed before the others
    /// answered.
    fn why_after(self, timeout: std::time::Duration) -> Option<String> {
        let why = self.why().map(|why| format!("{why}; ")).unwrap_or_default();
        Some(format!("{why}no other answer within {timeout:?}"))
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

const STRIPES: usize = 1024;
/// Most siblings a write may leave on a key (Riak's `max_siblings` default).
pub const MAX_SIBLINGS: usize = 100;

fn stripe_of(key: &[u8], stripes: usize) -> usize {
    let token = strata_cluster::Token::of(key).0;
    usize::try_from(token % stripes as u64).expect("below the stripe count")
}

/// The opaque context clients see for the key whose token is `key`: an
/// encoded `strata.v1.CausalContext`, the clock bound to the key.
#[must_use]
pub fn encode_context(key: strata_cluster::Token, context: &VersionVector) -> Vec<u8> {
    v1::CausalContext {
        clock: Some(clock_to_proto(context)),
        key_token: key.0,
    }
    .encode_to_vec()
}

/// `CausalContext.clock` (1), `VectorClock.entries` (1).
const CONTEXT_CLOCK_ENTRIES: &[u32] = &[1, 1];

/// Decodes a client context for the key whose token is `key`; empty means
/// none.
///
/// # Errors
/// [`CoordinatorError::Context`] for bytes this cluster did not issue, or
/// a context issued for another key.
pub fn decode_context(
    key: strata_cluster::Token,
    bytes: &[u8],
) -> Result<VersionVector, CoordinatorError> {
    if bytes.is_empty() {
        return Ok(VersionVector::new());
    }
    // Counted on the wire first: decoded, each entry of a few bytes takes
    // dozens, and a context may be as large as the request.
    let entries = strata_proto::wire::count(bytes, CONTEXT_CLOCK_ENTRIES)
        .map_err(|e| CoordinatorError::Context(e.to_string()))?;
    check_clock_entries(entries).map_err(|e| CoordinatorError::Context(e.to_string()))?;
    let context =
        v1::CausalContext::decode(bytes).map_err(|e| CoordinatorError::Context(e.to_string()))?;
    if context.key_token != key.0 {
        return Err(CoordinatorError::Context(
            "the context was issued for a different key; read this key to get its context".into(),
        ));
    }
    let clock = context.clock.unwrap_or_default();
    clock_from_proto(clock).map_err(|e| CoordinatorError::Context(e.to_string()))
}

#[cfg(test)]
mod context_tests;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod transport_tests;

#[cfg(test)]
mod tests {
    use super::fixtures::{coordinator, coordinator_with, values};
    use super::*;
    use strata_cluster::{ConsistencyLevel, NodeId, Token};

    #[test]
    fn a_missed_quorum_names_each_failed_replica_and_bounds_what_a_peer_said() {
        let mut failures = Failures::default();
        failures.add(
            &NodeId::new("node-1").expect("id"),
            &"replica refused: disk full",
        );
        failures.add(&NodeId::new("node-2").expect("id"), &"é".repeat(1000));
        let why = failures
            .why_after(std::time::Duration::from_secs(2))
            .expect("why");
        let parts: Vec<&str> = why.split("; ").collect();
        assert_eq!(parts[0], "node-1: replica refused: disk full");
        assert!(parts[1].starts_with("node-2: éé") && parts[1].ends_with('…'));
        assert!(parts[1].len() <= "node-2: ".len() + Failures::MAX_ERROR + '…'.len_utf8());
        assert_eq!(parts[2], "no other answer within 2s");
        assert_eq!(Failures::default().why(), None);
        let mut many = Failures::default();
        for i in 0..64 {
            many.add(
                &NodeId::new(format!("node-{i}")).expect("id"),
                &"x".repeat(2000),
            );
        }
        let why = many.why().expect("why");
        assert!(why.len() < 4096, "{} bytes", why.len());
        assert!(why.starts_with("node-0: xxx") && why.ends_with("; 56 more replicas failed"));
        let err = CoordinatorError::Unavailable {
            acks: 0,
            required: 1,
            why: None,
        };
        assert_eq!(err.to_string(), "consistency needs 1 replicas, 0 answered");
    }

    #[tokio::test]
    async fn concurrent_writes_become_siblings_and_a_context_resolves_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = coordinator(dir.path(), 1);
        c.put(b"k".to_vec(), Some(b"a".to_vec()), &[], None)
            .await
            .expect("put a");
        c.put(b"k".to_vec(), Some(b"b".to_vec()), &[], None)
            .await
            .expect("put b");
        let read = c.read(b"k".to_vec().into(), None).await.expect("get");
        assert_eq!(values(&read), [&b"a"[..], b"b"]);

        let context = encode_context(Token::of(b"k"), &read.context);
        let put = c
            .put(b"k".to_vec(), Some(b"c".to_vec()), &context, None)
            .await
            .expect("put c");
        assert_eq!(put.acked, 1);
        assert_eq!(
            values(&c.read(b"k".to_vec().into(), None).await.expect("get")),
            [&b"c"[..]]
        );

        let context = encode_context(
            Token::of(b"k"),
            &c.read(b"k".to_vec().into(), None)
                .await
                .expect("get")
                .context,
        );
        c.put(b"k".to_vec(), None, &context, None)
            .await
            .expect("delete");
        assert!(values(&c.read(b"k".to_vec().into(), None).await.expect("get")).is_empty());
    }

    #[tokio::test]
    async fn a_retry_with_the_same_request_id_writes_no_second_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = coordinator(dir.path(), 1);
        let first = c
            .put_with_id(b"k".to_vec(), Some(b"v".to_vec()), &[], 7)
            .await
            .expect("put");
        let retry = c
            .put_with_id(b"k".to_vec(), Some(b"v".to_vec()), &[], 7)
            .await
            .expect("retry");
        assert_eq!(retry.acked, 1);
        assert_eq!(
            retry.context, first.context,
            "answered from the first write"
        );
        assert_eq!(
            c.context()
                .storage
                .read(b"k")
                .expect("read")
                .versions()
                .len(),
            1
        );
        // Another request (or none) is a new write: a sibling.
        c.put_with_id(b"k".to_vec(), Some(b"v".to_vec()), &[], 8)
            .await
            .expect("put");
        c.put_with_id(b"k".to_vec(), Some(b"v".to_vec()), &[], 0)
            .await
            .expect("put");
        assert_eq!(
            c.context()
                .storage
                .read(b"k")
                .expect("read")
                .versions()
                .len(),
            3
        );
        // The id survives in storage, so it is recognized after a restart
        // or on another replica that received the version.
        assert!(
            c.context()
                .storage
                .read(b"k")
                .expect("read")
                .versions()
                .iter()
                .any(|v| v.request_id == 7)
        );
    }

    #[tokio::test]
    async fn last_write_wins_returns_only_the_latest_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = coordinator_with(dir.path(), 1, true);
        for value in [&b"first"[..], b"second", b"third"] {
            c.put(b"k".to_vec(), Some(value.to_vec()), &[], None)
                .await
                .expect("blind put");
        }
        let read = c.read(b"k".to_vec().into(), None).await.expect("get");
        assert_eq!(values(&read), [&b"third"[..]]);
        // Nothing piles up: each write superseded the previous one.
        assert_eq!(
            c.context()
                .storage
                .read(b"k")
                .expect("stored")
                .versions()
                .len(),
            1
        );
        c.put(b"k".to_vec(), None, &[], None).await.expect("delete");
        assert!(values(&c.read(b"k".to_vec().into(), None).await.expect("get")).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_writes_to_one_key_all_survive_as_siblings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Arc::new(coordinator(dir.path(), 1));
        let writers: Vec<_> = (0..20u8)
            .map(|i| {
                let c = Arc::clone(&c);
                tokio::spawn(async move { c.put(b"hot".to_vec(), Some(vec![i]), &[], None).await })
            })
            .collect();
        for w in writers {
            w.await.expect("task").expect("write");
        }
        let read = c.read(b"hot".to_vec().into(), None).await.expect("get");
        let mut seen: Vec<u8> = read.siblings.live_values().map(|v| v[0]).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
    }

    /// A write whose own read of the key is what finds the store damaged:
    /// forwarded to this replica, it is refused as nothing written (the
    /// forwarder tries the next replica), not failed with `DATA_LOSS`; from
    /// a client, with no other replica, it gets the store's failure.
    #[tokio::test]
    async fn a_read_or_write_that_meets_damage_names_it_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys: Vec<Vec<u8>> = (0..100).map(|i| format!("k{i}").into_bytes()).collect();
        {
            let c = coordinator(dir.path(), 1);
            for key in &keys {
                c.put(key.clone(), Some(b"v".to_vec()), &[], None)
                    .await
                    .expect("put");
            }
            c.context().storage.db().flush().expect("flush");
        }
        for entry in std::fs::read_dir(dir.path().join("engine")).expect("engine dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "sst") {
                let mut bytes = std::fs::read(&path).expect("read");
                bytes[10] ^= 0x5a;
                std::fs::write(&path, bytes).expect("write");
            }
        }
        // First in token order: in the first, damaged, block.
        let first = keys
            .iter()
            .min_by_key(|k| Token::of(k).0)
            .expect("keys")
            .clone();
        let c = coordinator(dir.path(), 1);
        // A read of it fails and says why: the damage, not just a count.
        let err = c
            .read(first.clone().into(), None)
            .await
            .expect_err("damaged block");
        assert!(
            matches!(&err, CoordinatorError::Unavailable { acks: 0, required: 1, why: Some(why) }
                if why.contains("corrupt") && why.contains(".sst")),
            "{err}"
        );
        let forwarded = c
            .write(WriteRequest {
                key: first.clone().into(),
                value: Some(b"w".to_vec().into()),
                context: &[],
                consistency: None,
                forwarded: true,
                request_id: 0,
            })
            .await
            .expect_err("refused");
        assert!(
            matches!(forwarded, CoordinatorError::StoreRefusesWrites),
            "{forwarded}"
        );
        let err = c
            .put(first, Some(b"w".to_vec()), &[], None)
            .await
            .expect_err("no other replica");
        assert!(
            matches!(&err, CoordinatorError::StoreFailed(failure) if failure.contains("corrupt")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn bad_requests_and_unreachable_quorums_are_specific_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = coordinator(dir.path(), 1);
        let err = one
            .put(Vec::new(), Some(b"v".to_vec()), &[], None)
            .await
            .expect_err("empty key");
        assert!(matches!(
            err,
            CoordinatorError::Request(RequestError::EmptyKey)
        ));
        let err = one
            .put(b"k".to_vec(), Some(vec![0; 2048]), &[], None)
            .await
            .expect_err("too big");
        assert!(matches!(
            err,
            CoordinatorError::Request(RequestError::ValueTooLarge { .. })
        ));
        let err = one
            .put(b"k".to_vec(), Some(b"v".to_vec()), b"\xff\xff", None)
            .await
            .expect_err("context");
        assert!(matches!(err, CoordinatorError::Context(_)));

        // Blind writes stop at the sibling limit; a write with the context passes.
        for i in 0..MAX_SIBLINGS {
            one.put(b"hot".to_vec(), Some(vec![1; i % 7 + 1]), &[], None)
                .await
                .expect("sibling");
        }
        let err = one
            .put(b"hot".to_vec(), Some(b"x".to_vec()), &[], None)
            .await
            .expect_err("limit");
        assert!(
            matches!(
                err,
                CoordinatorError::TooManySiblings {
                    siblings: 101,
                    limit: 100
                }
            ),
            "{err}"
        );
        let context = encode_context(
            Token::of(b"hot"),
            &one.read(b"hot".to_vec().into(), None)
                .await
                .expect("get")
                .context,
        );
        one.put(b"hot".to_vec(), Some(b"resolved".to_vec()), &context, None)
            .await
            .expect("resolves");
        let read = one.read(b"hot".to_vec().into(), None).await.expect("get");
        assert_eq!(read.siblings.versions().len(), 1);

        // A store that refuses writes, with no other replica to take them:
        // the answer is its failure, what the user must fix.
        one.context()
            .storage
            .db()
            .refuse_writes(&strata_engine::Error::Background("disk full".into()));
        let err = one
            .put(b"k".to_vec(), Some(b"v".to_vec()), &[], None)
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, CoordinatorError::StoreFailed(failure) if failure.contains("disk full")),
            "{err}"
        );
        drop(one);

        // N = 3 with one reachable replica: QUORUM cannot be met.
        let three = coordinator(dir.path(), 3);
        let err = three
            .put(b"k".to_vec(), Some(b"v".to_vec()), &[], None)
            .await
            .expect_err("unavailable");
        assert!(
            matches!(
                err,
                CoordinatorError::ReplicasDown {
                    up: 1,
                    replicas: 1,
                    required: 2
                }
            ),
            "{err}"
        );
        three
            .put(
                b"k".to_vec(),
                Some(b"v".to_vec()),
                &[],
                Some(ConsistencyLevel::One),
            )
            .await
            .expect("ONE succeeds");
    }
}
