//! The coordinator: turns a client request into replica operations and a
//! quorum decision.
//!
//! Write: validate; read the local sibling set (the one read on the write
//! path: it keeps this node's dots for the key in causal order, see
//! `strata_cluster::Siblings`); make the new version with the next dot and
//! the client's context; merge it in; send the merged set to the replicas;
//! answer after W acks. Read: ask R replicas, merge, answer.
//!
//! Replicas are reached through [`Replicas`]. Today the node knows only
//! itself (membership arrives with gossip), so a request whose consistency
//! needs more replicas than are reachable fails with `Unavailable`, exactly
//! as it will in a cluster with nodes down.

use std::sync::Arc;

use prost::Message as _;
use strata_cluster::{
    ConsistencyLevel, Dot, Member, NodeId, NodeState, Progress, ReadQuorum, Ring, Siblings, Token,
    Version, VersionVector, WriteQuorum, tokens_for,
};
use strata_proto::v1;

use crate::dots::{DotCounter, DotError};
use crate::request::{RequestError, required_acks, validate_key, validate_value};
use crate::storage::{Storage, StorageError, clock_from_proto, clock_to_proto};

/// Cluster-wide replication settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// N.
    pub factor: u32,
    /// Default write consistency (W).
    pub write: ConsistencyLevel,
    /// Default read consistency (R).
    pub read: ConsistencyLevel,
}

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
    #[error("consistency needs {required} replicas, {acks} answered")]
    Unavailable {
        /// Replicas that answered.
        acks: u32,
        /// Replicas required.
        required: u32,
    },
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

/// Where keys live: the ring and the local store. Until membership lands
/// the ring holds only this node.
#[derive(Debug)]
pub struct Replicas {
    local: Arc<Storage>,
    ring: Ring,
}

impl Replicas {
    /// A ring of this node alone, with `vnodes` tokens.
    #[must_use]
    pub fn local_only(node: &NodeId, vnodes: usize, local: Arc<Storage>) -> Self {
        let me = Member {
            id: node.clone(),
            tokens: tokens_for(node, vnodes),
            state: NodeState::Normal,
        };
        Self {
            local,
            ring: Ring::new([me]),
        }
    }

    /// How many replicas hold `key` with replication factor `n`.
    fn count(&self, key: &[u8], n: u32) -> u32 {
        let placement = self.ring.placement(Token::of(key), n as usize);
        u32::try_from(placement.replicas.len()).unwrap_or(u32::MAX)
    }
}

/// Coordinates requests on this node.
#[derive(Debug)]
pub struct Coordinator {
    node: NodeId,
    replicas: Replicas,
    dots: Arc<DotCounter>,
    /// Per-key critical sections (striped by key hash): read, dot, merge and
    /// local apply happen under one, so this node's dots for a key follow
    /// its local causal order even when writes race.
    stripes: Arc<[std::sync::Mutex<()>]>,
    replication: Replication,
    max_value_bytes: usize,
}

/// A read's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The merged siblings.
    pub siblings: Siblings,
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
    /// A coordinator for `node`.
    #[must_use]
    pub fn new(
        node: NodeId,
        replicas: Replicas,
        dots: DotCounter,
        replication: Replication,
        max_value_bytes: usize,
    ) -> Self {
        Self {
            node,
            replicas,
            dots: Arc::new(dots),
            stripes: (0..STRIPES).map(|_| std::sync::Mutex::new(())).collect(),
            replication,
            max_value_bytes,
        }
    }

    /// Writes `value` (`None`: a delete) under `context`.
    ///
    /// # Errors
    /// See [`CoordinatorError`].
    pub async fn write(
        &self,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        context: &[u8],
        consistency: Option<&v1::Consistency>,
    ) -> Result<WriteOutcome, CoordinatorError> {
        validate_key(&key)?;
        if let Some(value) = &value {
            validate_value(value, self.max_value_bytes)?;
        }
        let required = required_acks(consistency, self.replication.write, self.replication.factor)?;
        let context = decode_context(context)?;
        let mut quorum = WriteQuorum::new(required, self.contacted(&key));
        if let Progress::Unreachable { acks, required } = quorum.progress() {
            return Err(CoordinatorError::Unavailable { acks, required });
        }
        let local = Arc::clone(&self.replicas.local);
        let (dots, stripes, node) = (
            Arc::clone(&self.dots),
            Arc::clone(&self.stripes),
            self.node.clone(),
        );
        let merged = blocking(move || {
            let stripe = stripe_of(&key, stripes.len());
            let _key_lock = stripes[stripe].lock().expect("stripe lock");
            let mut siblings = local.read(&key)?;
            // Blind writes to one key pile up siblings; past the limit the
            // client must resolve them (writing with a context covers them).
            let kept = siblings
                .versions()
                .iter()
                .filter(|v| !context.covers(&v.dot))
                .count();
            if kept >= MAX_SIBLINGS {
                return Err(CoordinatorError::TooManySiblings {
                    siblings: kept + 1,
                    limit: MAX_SIBLINGS,
                });
            }
            let counter = dots.next(&context)?;
            siblings.insert(Version {
                dot: Dot { node, counter },
                context,
                value,
                timestamp_micros: now_micros(),
            });
            local.apply(&key, &siblings)?;
            Ok(siblings)
        })
        .await?;
        match quorum.record(&self.node, true) {
            Progress::Reached => Ok(WriteOutcome {
                context: encode_context(&merged.context()),
                acked: quorum.acks(),
            }),
            Progress::Pending | Progress::Unreachable { .. } => {
                Err(CoordinatorError::Unavailable {
                    acks: quorum.acks(),
                    required,
                })
            }
        }
    }

    /// Reads `key` at `consistency`.
    ///
    /// # Errors
    /// See [`CoordinatorError`].
    pub async fn read(
        &self,
        key: Vec<u8>,
        consistency: Option<&v1::Consistency>,
    ) -> Result<ReadOutcome, CoordinatorError> {
        validate_key(&key)?;
        let required = required_acks(consistency, self.replication.read, self.replication.factor)?;
        let mut quorum = ReadQuorum::new(required, self.contacted(&key));
        if let Progress::Unreachable { acks, required } = quorum.progress() {
            return Err(CoordinatorError::Unavailable { acks, required });
        }
        let local = Arc::clone(&self.replicas.local);
        let siblings = blocking(move || Ok(local.read(&key)?)).await?;
        match quorum.record(&self.node, Some(siblings)) {
            Progress::Reached => Ok(ReadOutcome {
                siblings: quorum.resolve().merged,
                answered: quorum.answered(),
            }),
            Progress::Pending | Progress::Unreachable { .. } => {
                Err(CoordinatorError::Unavailable {
                    acks: quorum.answered(),
                    required,
                })
            }
        }
    }

    /// The ring as this node sees it.
    #[must_use]
    pub fn ring(&self) -> &Ring {
        &self.replicas.ring
    }

    /// The replication settings.
    #[must_use]
    pub fn replication(&self) -> Replication {
        self.replication
    }

    /// The local replica store.
    #[must_use]
    pub fn storage(&self) -> &Storage {
        &self.replicas.local
    }

    /// Replicas a request for `key` is sent to.
    fn contacted(&self, key: &[u8]) -> u32 {
        self.replicas.count(key, self.replication.factor)
    }
}

const STRIPES: usize = 1024;
/// Most siblings a write may leave on a key (Riak's `max_siblings` default).
pub const MAX_SIBLINGS: usize = 100;

fn stripe_of(key: &[u8], stripes: usize) -> usize {
    let token = strata_cluster::Token::of(key).0;
    usize::try_from(token % stripes as u64).expect("below the stripe count")
}

/// Runs blocking engine work off the async executor.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CoordinatorError> + Send + 'static,
) -> Result<T, CoordinatorError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| {
            Err(CoordinatorError::Storage(StorageError::Engine(
                strata_engine::Error::Background(format!("storage task failed: {join}")),
            )))
        })
}

/// The opaque context clients see: an encoded `strata.v1.VectorClock`.
#[must_use]
pub fn encode_context(context: &VersionVector) -> Vec<u8> {
    clock_to_proto(context).encode_to_vec()
}

/// Decodes a client context; empty means none.
///
/// # Errors
/// [`CoordinatorError::Context`] for bytes this cluster did not issue.
pub fn decode_context(bytes: &[u8]) -> Result<VersionVector, CoordinatorError> {
    let clock =
        v1::VectorClock::decode(bytes).map_err(|e| CoordinatorError::Context(e.to_string()))?;
    clock_from_proto(clock).map_err(|e| CoordinatorError::Context(e.to_string()))
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coordinator(dir: &std::path::Path, factor: u32) -> Coordinator {
        let node = NodeId::new("strata-0").expect("id");
        let storage = Arc::new(
            Storage::open(
                &dir.join("engine"),
                strata_engine::Durability::SyncEachGroup,
            )
            .expect("open"),
        );
        Coordinator::new(
            node.clone(),
            Replicas::local_only(&node, 16, storage),
            DotCounter::open(dir, node).expect("dots"),
            Replication {
                factor,
                write: ConsistencyLevel::Quorum,
                read: ConsistencyLevel::Quorum,
            },
            1024,
        )
    }

    fn values(outcome: &ReadOutcome) -> Vec<&[u8]> {
        outcome.siblings.live_values().collect()
    }

    #[tokio::test]
    async fn concurrent_writes_become_siblings_and_a_context_resolves_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = coordinator(dir.path(), 1);
        c.write(b"k".to_vec(), Some(b"a".to_vec()), &[], None)
            .await
            .expect("put a");
        c.write(b"k".to_vec(), Some(b"b".to_vec()), &[], None)
            .await
            .expect("put b");
        let read = c.read(b"k".to_vec(), None).await.expect("get");
        assert_eq!(values(&read), [&b"a"[..], b"b"]);

        let context = encode_context(&read.siblings.context());
        let put = c
            .write(b"k".to_vec(), Some(b"c".to_vec()), &context, None)
            .await
            .expect("put c");
        assert_eq!(put.acked, 1);
        assert_eq!(
            values(&c.read(b"k".to_vec(), None).await.expect("get")),
            [&b"c"[..]]
        );

        let context = encode_context(
            &c.read(b"k".to_vec(), None)
                .await
                .expect("get")
                .siblings
                .context(),
        );
        c.write(b"k".to_vec(), None, &context, None)
            .await
            .expect("delete");
        assert!(values(&c.read(b"k".to_vec(), None).await.expect("get")).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_writes_to_one_key_all_survive_as_siblings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Arc::new(coordinator(dir.path(), 1));
        let writers: Vec<_> = (0..20u8)
            .map(|i| {
                let c = Arc::clone(&c);
                tokio::spawn(
                    async move { c.write(b"hot".to_vec(), Some(vec![i]), &[], None).await },
                )
            })
            .collect();
        for w in writers {
            w.await.expect("task").expect("write");
        }
        let read = c.read(b"hot".to_vec(), None).await.expect("get");
        let mut seen: Vec<u8> = read.siblings.live_values().map(|v| v[0]).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn bad_requests_and_unreachable_quorums_are_specific_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let one = coordinator(dir.path(), 1);
        let err = one
            .write(Vec::new(), Some(b"v".to_vec()), &[], None)
            .await
            .expect_err("empty key");
        assert!(matches!(
            err,
            CoordinatorError::Request(RequestError::EmptyKey)
        ));
        let err = one
            .write(b"k".to_vec(), Some(vec![0; 2048]), &[], None)
            .await
            .expect_err("too big");
        assert!(matches!(
            err,
            CoordinatorError::Request(RequestError::ValueTooLarge { .. })
        ));
        let err = one
            .write(b"k".to_vec(), Some(b"v".to_vec()), b"\xff\xff", None)
            .await
            .expect_err("context");
        assert!(matches!(err, CoordinatorError::Context(_)));

        // Blind writes stop at the sibling limit; a write with the context passes.
        for i in 0..MAX_SIBLINGS {
            one.write(b"hot".to_vec(), Some(vec![1; i % 7 + 1]), &[], None)
                .await
                .expect("sibling");
        }
        let err = one
            .write(b"hot".to_vec(), Some(b"x".to_vec()), &[], None)
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
            &one.read(b"hot".to_vec(), None)
                .await
                .expect("get")
                .siblings
                .context(),
        );
        one.write(b"hot".to_vec(), Some(b"resolved".to_vec()), &context, None)
            .await
            .expect("resolves");
        let read = one.read(b"hot".to_vec(), None).await.expect("get");
        assert_eq!(read.siblings.versions().len(), 1);
        drop(one);

        // N = 3 with one reachable replica: QUORUM cannot be met.
        let three = coordinator(dir.path(), 3);
        let err = three
            .write(b"k".to_vec(), Some(b"v".to_vec()), &[], None)
            .await
            .expect_err("unavailable");
        assert!(
            matches!(
                err,
                CoordinatorError::Unavailable {
                    acks: 0,
                    required: 2
                }
            ),
            "{err}"
        );
        let one = v1::Consistency::named(v1::ConsistencyLevel::One);
        three
            .write(b"k".to_vec(), Some(b"v".to_vec()), &[], Some(&one))
            .await
            .expect("ONE succeeds");
    }
}
