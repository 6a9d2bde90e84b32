//! The coordinator's quorum, stand-in and read-repair logic over the
//! in-memory transport: real stores, exact failures, no sockets.

use std::sync::Arc;
use std::time::Duration;

use strata_cluster::{ClusterView, ConsistencyLevel, NodeId, NodeState, Token};

use super::fixtures::{on, values};
use super::{Coordinator, CoordinatorError};
use crate::context::Topology;
use crate::hints::{HintLimits, HintStore};
use crate::metrics::HintMetrics;
use crate::storage::Storage;
use crate::testing::{ContextBuilder, member};
use crate::transport::memory::{Link, MemoryTransport};

const TIMEOUT: Duration = Duration::from_millis(300);

/// Node 0 coordinates; nodes 1.. live in the in-memory transport.
struct Net {
    _dir: tempfile::TempDir,
    ids: Vec<NodeId>,
    view: Arc<ClusterView>,
    transport: Arc<MemoryTransport>,
    coordinator: Coordinator,
}

fn id(i: usize) -> NodeId {
    NodeId::new(format!("node-{i}")).expect("id")
}

/// `nodes` nodes with replication factor `n`; gossip believes the nodes in
/// `down` are down. Reads ask every replica when `read_all`.
fn net(nodes: usize, n: u32, down: &[usize], read_all: bool) -> Net {
    net_with(nodes, n, down, &[], read_all)
}

/// As [`net`], with the nodes in `joining` joining the ring.
fn net_with(nodes: usize, n: u32, down: &[usize], joining: &[usize], read_all: bool) -> Net {
    let knobs = Knobs {
        read_all,
        ..Knobs::default()
    };
    build_net(nodes, n, down, joining, knobs)
}

/// As [`net`], with only replicas' own acks counting toward W.
fn strict_net(nodes: usize, n: u32, down: &[usize]) -> Net {
    let knobs = Knobs {
        strict: true,
        ..Knobs::default()
    };
    build_net(nodes, n, down, &[], knobs)
}

/// How the coordinating node serves requests.
#[derive(Debug, Clone, Copy, Default)]
struct Knobs {
    /// Every read asks every replica.
    read_all: bool,
    /// Only replicas' own acks count toward W.
    strict: bool,
    /// `Settings::speculative_retry`.
    speculate: Option<Duration>,
    /// The request timeout, [`TIMEOUT`] unless given.
    timeout: Option<Duration>,
    /// A node gossip shows alive but without an address yet.
    addressless: Option<usize>,
}

fn build_net(nodes: usize, n: u32, down: &[usize], joining: &[usize], knobs: Knobs) -> Net {
    let dir = tempfile::tempdir().expect("tempdir");
    let ids: Vec<NodeId> = (0..nodes).map(id).collect();
    let view = Arc::new(ClusterView::from_peers(ids.iter().enumerate().map(
        |(i, id)| {
            let state = if joining.contains(&i) {
                NodeState::Joining
            } else {
                NodeState::Normal
            };
            let address = if knobs.addressless == Some(i) {
                String::new()
            } else {
                format!("memory-{i}")
            };
            member(id, &address, state, !down.contains(&i))
        },
    )));
    let transport = Arc::new(MemoryTransport::default());
    for (i, node) in ids.iter().enumerate().skip(1) {
        let home = dir.path().join(format!("node-{i}"));
        let storage = Storage::open(
            &home.join("engine"),
            strata_engine::Durability::SyncEachGroup,
        )
        .expect("storage");
        let hints = HintStore::open(
            &home.join("hints"),
            HintLimits::default(),
            HintMetrics::default(),
        )
        .expect("hints");
        transport.add(node, Arc::new(storage), Arc::new(hints));
    }
    let home = dir.path().join("node-0");
    let ctx = ContextBuilder::new(&home)
        .id(&ids[0])
        .factor(n)
        .timeout(knobs.timeout.unwrap_or(TIMEOUT))
        .read_repair_period(u32::from(knobs.read_all))
        .strict_quorum(knobs.strict)
        .speculative_retry(knobs.speculate)
        .topology(Topology::Fixed(Arc::clone(&view)))
        .transport(Arc::clone(&transport) as _)
        .build();
    let coordinator = on(ctx, &home);
    Net {
        _dir: dir,
        ids,
        view,
        transport,
        coordinator,
    }
}

impl Net {
    /// The indices of `key`'s replicas other than node 0, in the order a
    /// read asks them (the ring's, while none is known to be slow).
    fn remote_replicas(&self, key: &[u8]) -> Vec<usize> {
        self.view
            .read_targets(Token::of(key), 3)
            .iter()
            .filter(|t| t.id != self.ids[0])
            .map(|t| self.ids.iter().position(|x| *x == t.id).expect("known"))
            .collect()
    }

    async fn put(
        &self,
        key: &[u8],
        value: &str,
        level: ConsistencyLevel,
    ) -> Result<u32, CoordinatorError> {
        self.coordinator
            .put(
                key.to_vec(),
                Some(value.as_bytes().to_vec()),
                &[],
                Some(level),
            )
            .await
            .map(|outcome| outcome.acked)
    }

    /// Live values node `i` stores for `key`.
    fn stored(&self, i: usize, key: &[u8]) -> Vec<Vec<u8>> {
        let storage = if i == 0 {
            Arc::clone(&self.coordinator.context().storage)
        } else {
            self.transport.storage(&self.ids[i])
        };
        let siblings = storage.read(key).expect("read");
        siblings.live_values().map(<[u8]>::to_vec).collect()
    }

    /// Waits (bounded) until the coordinator holds a hint for node `i`.
    async fn hint_kept_for(&self, i: usize) -> bool {
        for _ in 0..200 {
            if self
                .coordinator
                .context()
                .hints
                .targets()
                .iter()
                .any(|(target, _)| *target == self.ids[i])
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_write_survives_a_refusing_replica_which_gets_a_hint() {
    let net = net(3, 3, &[], false);
    net.transport.set_link(&net.ids[2], Link::Refuse);
    let acked = net
        .put(b"k", "v", ConsistencyLevel::Quorum)
        .await
        .expect("quorum");
    assert!(acked >= 2);
    assert_eq!(net.stored(1, b"k"), [b"v".to_vec()]);
    assert!(net.stored(2, b"k").is_empty());
    assert!(
        net.hint_kept_for(2).await,
        "the refused replica gets a hint"
    );
    // ALL cannot be met while it refuses: failed as soon as that is
    // certain, whoever else has answered by then.
    let err = net
        .put(b"k2", "v", ConsistencyLevel::All)
        .await
        .expect_err("ALL");
    assert!(
        matches!(
            err,
            CoordinatorError::Unavailable {
                acks: 1..=2,
                required: 3,
                ..
            }
        ),
        "{err}"
    );
    // The message names the replica that failed and how.
    let message = err.to_string();
    assert!(
        message.contains(&format!("{}: replica refused", net.ids[2]))
            && message.contains("refusing"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_an_address_is_named_and_gets_a_hint() {
    let knobs = Knobs {
        addressless: Some(2),
        ..Knobs::default()
    };
    let net = build_net(3, 3, &[], &[], knobs);
    let err = net
        .put(b"k", "v", ConsistencyLevel::All)
        .await
        .expect_err("ALL cannot reach node-2");
    let message = err.to_string();
    assert!(
        matches!(
            err,
            CoordinatorError::Unavailable {
                acks: 1..=2,
                required: 3,
                ..
            }
        ) && message.contains(&format!("{}: ", net.ids[2]))
            && message.contains("no address known"),
        "{message}"
    );
    assert!(net.hint_kept_for(2).await, "node-2 gets a hint");
    let acked = net
        .put(b"k2", "v", ConsistencyLevel::Quorum)
        .await
        .expect("quorum without node-2");
    assert_eq!(acked, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_few_answers_by_the_deadline_is_unavailable_with_the_count() {
    let net = net(3, 3, &[], false);
    net.transport.set_link(&net.ids[1], Link::Down);
    net.transport
        .set_link(&net.ids[2], Link::Delay(Duration::from_secs(10)));
    let err = net
        .put(b"k", "v", ConsistencyLevel::Quorum)
        .await
        .expect_err("one of three answers");
    assert!(
        matches!(
            err,
            CoordinatorError::Unavailable {
                acks: 1,
                required: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("is down"), "{err}");
    assert_eq!(
        net.put(b"k", "v", ConsistencyLevel::One)
            .await
            .expect("ONE"),
        1
    );
    let err = net
        .coordinator
        .read(b"k".to_vec().into(), Some(ConsistencyLevel::Quorum))
        .await
        .expect_err("one of three answers");
    assert!(matches!(err, CoordinatorError::Unavailable { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_gossip_sees_down_is_replaced_by_a_stand_in_holding_its_hint() {
    // Four nodes, N = 3: a key node 0 replicates, with node `down` among
    // its other replicas, marked down.
    let (key, [down, _]) = key_with_replicas(4);
    let net = net(4, 3, &[down], false);
    let targets = net.view.write_targets(Token::of(&key), 3);
    let stand_in = net.view.stand_ins(Token::of(&key), &targets, 1)[0].clone();
    let stand_in_index = net.ids.iter().position(|i| *i == stand_in).expect("known");

    let acked = net
        .put(&key, "v", ConsistencyLevel::Quorum)
        .await
        .expect("quorum");
    assert!(acked >= 2, "{acked}");
    // The stand-in holds the write as a hint for the down replica, not as
    // its own data; the down replica got nothing.
    let hints = net.transport.hints(&stand_in);
    for _ in 0..200 {
        if hints.pending().0 > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        hints.targets().iter().any(|(t, _)| *t == net.ids[down]),
        "stand-in {stand_in} holds a hint for {}",
        net.ids[down]
    );
    assert!(net.stored(stand_in_index, &key).is_empty());
    assert_eq!(net.transport.served(&net.ids[down]), (0, 0));
}

/// A key node 0 replicates on a ring of `nodes` with N = 3, and its two
/// other replicas.
fn key_with_replicas(nodes: usize) -> (Vec<u8>, [usize; 2]) {
    let probe = net(nodes, 3, &[], false);
    (0..1000)
        .find_map(|i| {
            let key = format!("key-{i}").into_bytes();
            let targets = probe.view.write_targets(Token::of(&key), 3);
            let ids: Vec<&NodeId> = targets.iter().map(|t| &t.id).collect();
            if !ids.contains(&&probe.ids[0]) {
                return None;
            }
            let others: Vec<usize> = (1..nodes)
                .filter(|&d| ids.contains(&&probe.ids[d]))
                .collect();
            Some((key, [others[0], others[1]]))
        })
        .expect("some key fits")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_strict_quorums_only_replicas_count_and_no_stand_in_is_written() {
    let (key, [a, b]) = key_with_replicas(5);

    // Two of three replicas down: a sloppy quorum is met by stand-ins, a
    // strict one fails before anything is written.
    let sloppy = net(5, 3, &[a, b], false);
    let acked = sloppy
        .put(&key, "v", ConsistencyLevel::Quorum)
        .await
        .expect("stand-ins count");
    assert!(acked >= 2, "{acked}");
    let strict = strict_net(5, 3, &[a, b]);
    let err = strict
        .put(&key, "v", ConsistencyLevel::Quorum)
        .await
        .expect_err("one replica up");
    assert!(
        matches!(
            err,
            CoordinatorError::ReplicasDown {
                up: 1,
                replicas: 3,
                required: 2
            }
        ),
        "{err}"
    );
    assert!(strict.stored(0, &key).is_empty(), "nothing written");
    for i in 1..5 {
        assert_eq!(strict.transport.served(&strict.ids[i]), (0, 0), "node {i}");
    }

    // One down: the two replicas up make the quorum; no stand-in is
    // asked, and this node keeps the down replica's hint.
    let strict = strict_net(5, 3, &[a]);
    let acked = strict
        .put(&key, "v", ConsistencyLevel::Quorum)
        .await
        .expect("two replicas up");
    assert_eq!(acked, 2);
    assert_eq!(strict.stored(b, &key), [b"v".to_vec()]);
    for i in (1..5).filter(|&i| i != b) {
        assert_eq!(strict.transport.served(&strict.ids[i]), (0, 0), "node {i}");
    }
    assert!(strict.hint_kept_for(a).await, "a hint for the down replica");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_repairs_the_replica_that_missed_a_write() {
    let net = net(3, 3, &[], true);
    net.transport.set_link(&net.ids[1], Link::Down);
    net.put(b"k", "v", ConsistencyLevel::Quorum)
        .await
        .expect("quorum");
    assert!(net.stored(1, b"k").is_empty());
    net.transport.set_link(&net.ids[1], Link::Up);
    let read = net
        .coordinator
        .read(b"k".to_vec().into(), Some(ConsistencyLevel::All))
        .await
        .expect("all");
    assert_eq!(values(&read), [&b"v"[..]]);
    // R > 1: the repair completes before the answer.
    assert_eq!(net.stored(1, b"k"), [b"v".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_asks_r_replicas_and_one_more_for_each_failure() {
    let net = net(3, 3, &[], false);
    net.put(b"k", "v", ConsistencyLevel::All)
        .await
        .expect("all");
    let reads =
        |net: &Net| net.transport.served(&net.ids[1]).0 + net.transport.served(&net.ids[2]).0;
    net.coordinator
        .read(b"k".to_vec().into(), Some(ConsistencyLevel::Quorum))
        .await
        .expect("quorum");
    assert_eq!(reads(&net), 1, "this node and one other replica");
    net.transport.set_link(&net.ids[1], Link::Refuse);
    net.transport.set_link(&net.ids[2], Link::Up);
    for _ in 0..4 {
        let read = net
            .coordinator
            .read(b"k".to_vec().into(), Some(ConsistencyLevel::Quorum))
            .await
            .expect("the other replica stands in");
        assert_eq!(read.answered, 2);
    }
    assert!(net.transport.served(&net.ids[2]).0 >= 4);
}

/// A replica that does not answer (a paused process gossip has not
/// convicted yet) costs a read the speculative delay, not the request
/// timeout: the read asks the third replica. Without speculation the read
/// waits for the slow replica and asks no one else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_asks_one_more_replica_when_one_it_asked_is_silent() {
    let timeout = Duration::from_secs(30);
    // The slow replica: silent for the whole timeout (the read must not
    // wait for it), or answering soon (so the read without speculation
    // succeeds without asking anyone else).
    for (speculate, delay) in [
        (Some(Duration::from_millis(30)), timeout),
        (None, Duration::from_millis(200)),
    ] {
        let knobs = Knobs {
            speculate,
            timeout: Some(timeout),
            ..Knobs::default()
        };
        let net = build_net(3, 3, &[], &[], knobs);
        net.put(b"k", "v", ConsistencyLevel::All)
            .await
            .expect("all");
        // The remote replica a QUORUM read asks first is the slow one.
        let remotes = net.remote_replicas(b"k");
        let (slow, other) = (remotes[0], remotes[1]);
        net.transport.set_link(&net.ids[slow], Link::Delay(delay));
        let read = net
            .coordinator
            .read(b"k".to_vec().into(), Some(ConsistencyLevel::Quorum));
        // Bounded far below the silent replica's 30 s.
        let read = tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .unwrap_or_else(|_| panic!("the read waited for the silent replica: {speculate:?}"))
            .expect("quorum read");
        assert_eq!(values(&read), [&b"v"[..]]);
        assert_eq!(read.answered, 2);
        let asked_other = net.transport.served(&net.ids[other]).0;
        assert_eq!(
            asked_other,
            usize::from(speculate.is_some()),
            "{speculate:?}"
        );
    }
}

/// A replica that is up but slow (no conviction by gossip) is asked last
/// once its answers have shown it slow: later reads go to the other
/// replica first and wait for no speculative delay (`peer_latency.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_ask_a_replica_that_answered_slowly_last() {
    let knobs = Knobs {
        speculate: Some(Duration::from_millis(30)),
        timeout: Some(Duration::from_secs(30)),
        ..Knobs::default()
    };
    let net = build_net(3, 3, &[], &[], knobs);
    net.put(b"k", "v", ConsistencyLevel::All)
        .await
        .expect("all");
    let remotes = net.remote_replicas(b"k");
    let (slow, other) = (remotes[0], remotes[1]);
    net.transport
        .set_link(&net.ids[slow], Link::Delay(Duration::from_millis(200)));
    // The first read asks the slow replica (nothing is known of it yet)
    // and, after the speculative delay, the other one.
    let read = net
        .coordinator
        .read(b"k".to_vec().into(), Some(ConsistencyLevel::Quorum))
        .await
        .expect("quorum read");
    assert_eq!(values(&read), [&b"v"[..]]);
    // Its slow answer arrives later, in the read's background part (the
    // write above sampled it fast).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while net
        .coordinator
        .latency
        .mean(&net.ids[slow], std::time::Instant::now())
        .is_none_or(|mean| mean < Duration::from_millis(20))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no sample of the slow replica"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (slow_before, other_before) = (
        net.transport.served(&net.ids[slow]).0,
        net.transport.served(&net.ids[other]).0,
    );
    for _ in 0..5 {
        let read = net
            .coordinator
            .read(b"k".to_vec().into(), Some(ConsistencyLevel::Quorum))
            .await
            .expect("quorum read");
        assert_eq!(values(&read), [&b"v"[..]]);
    }
    // Requests count on arrival: one sent to the slow replica would show
    // now, before its delay is over.
    assert_eq!(
        net.transport.served(&net.ids[slow]).0,
        slow_before,
        "the slow replica was asked again"
    );
    assert_eq!(net.transport.served(&net.ids[other]).0, other_before + 5);
}

/// A replica whose disk is slow answers reads at once but takes writes
/// late: a QUORUM read that pairs the coordinator's answer with its stale
/// one must put the merged set on a second replica before answering. It
/// does not wait for the slow replica's write: after the speculative delay
/// the merged set also goes to the replica whose answer is not in, and
/// the slow replica's repair finishes in the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_read_repair_does_not_wait_for_a_replica_slow_to_write() {
    let knobs = Knobs {
        read_all: true,
        speculate: Some(Duration::from_millis(30)),
        timeout: Some(Duration::from_secs(30)),
        ..Knobs::default()
    };
    let net = build_net(3, 3, &[], &[], knobs);
    let (behind, other) = (1, 2);
    net.put(b"k", "v1", ConsistencyLevel::All)
        .await
        .expect("all");
    // Node 1 misses the second write.
    net.transport.set_link(&net.ids[behind], Link::Down);
    net.put(b"k", "v2", ConsistencyLevel::Quorum)
        .await
        .expect("quorum without node 1");
    // Node 1 is back with a slow disk; node 2 answers after node 1 does.
    net.transport
        .set_link(&net.ids[behind], Link::SlowWrites(Duration::from_secs(20)));
    net.transport
        .set_link(&net.ids[other], Link::Delay(Duration::from_millis(300)));
    let writes_before = net.transport.served(&net.ids[other]).1;
    let read = net
        .coordinator
        .read(b"k".to_vec().into(), Some(ConsistencyLevel::Quorum));
    // Bounded far below node 1's 20 s write.
    let read = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the read waited for the slow replica's repair")
        .expect("quorum read");
    // Both writes were blind: siblings. Node 1 answered with the first only.
    assert_eq!(values(&read), [&b"v1"[..], b"v2"]);
    // The merged set went to node 2 in node 1's stead.
    assert_eq!(net.transport.served(&net.ids[other]).1, writes_before + 1);
}

/// The pending-write rule: while node 3 joins and takes over a key from a
/// current owner, a QUORUM write needs 2 acks among the current owners and
/// 2 among the future ones; 2 acks of any 4 would let a write acked before
/// the switch be missing from a quorum of the new owners after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_a_node_joins_w_current_and_w_future_owners_must_ack() {
    let probe = net_with(4, 3, &[], &[3], false);
    let (key, keeps, loses) = (0..2000)
        .find_map(|i| {
            let key = format!("key-{i}").into_bytes();
            let p = probe.view.ring().placement(Token::of(&key), 3);
            if p.replicas.first() != Some(&probe.ids[0]) || p.pending != [probe.ids[3].clone()] {
                return None;
            }
            // `keeps` stays an owner; `loses` hands its place to node 3.
            let keeps = p
                .replicas
                .iter()
                .find(|r| p.future.contains(r) && **r != probe.ids[0])?;
            let loses = p.replicas.iter().find(|r| !p.future.contains(r))?;
            let index = |id: &NodeId| probe.ids.iter().position(|x| x == id).expect("known");
            Some((key, index(keeps), index(loses)))
        })
        .expect("some key fits");
    drop(probe);

    // The joiner and a shared owner fail: two current owners ack (this
    // node and the one leaving the key), but only one future owner does.
    let net = net_with(4, 3, &[], &[3], false);
    net.transport.set_link(&net.ids[keeps], Link::Refuse);
    net.transport.set_link(&net.ids[3], Link::Refuse);
    let err = net
        .put(&key, "v", ConsistencyLevel::Quorum)
        .await
        .expect_err("one future owner is not a quorum of them");
    assert!(matches!(err, CoordinatorError::Unavailable { .. }), "{err}");

    // Only the shared owner fails: this node, the leaving owner and the
    // joiner make 2 of each.
    let net = net_with(4, 3, &[], &[3], false);
    net.transport.set_link(&net.ids[keeps], Link::Refuse);
    let acked = net
        .put(&key, "v", ConsistencyLevel::Quorum)
        .await
        .expect("2 + 2");
    assert!(acked >= 3, "{acked}");
    assert_eq!(
        net.stored(3, &key),
        [b"v".to_vec()],
        "the joiner got the write"
    );
    assert_eq!(net.stored(loses, &key), [b"v".to_vec()]);
}
