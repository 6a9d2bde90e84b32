//! Multi-node clusters of real `strata-node` processes on loopback: quorum
//! reads and writes through every node, siblings, read repair, failures,
//! request validation and restarts.

use std::time::{Duration, Instant};

use strata_proto::v1::{self, Consistency, ConsistencyLevel, GetRequest, GetResponse, PutRequest};
use strata_tests::Cluster;
use strata_tests::cluster::{kv, stored_versions};
use tonic::Code;

const N3: &[&str] = &["--replication-factor", "3"];
/// Every read asks all replicas, so reads at ONE repair too. No hints
/// (a zero bound): a restarted replica stays stale until a read repairs it.
const N3_REPAIR_ALL: &[&str] = &[
    "--replication-factor",
    "3",
    "--read-repair-chance",
    "1",
    "--max-hint-bytes",
    "0",
];

fn level(l: ConsistencyLevel) -> Option<Consistency> {
    Some(Consistency::named(l))
}

fn put(key: &str, value: &[u8], context: &[u8], l: ConsistencyLevel) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec().into(),
        value: value.to_vec().into(),
        context: context.to_vec().into(),
        consistency: level(l),
        request_id: 0,
    }
}

fn get(key: &str, l: ConsistencyLevel) -> GetRequest {
    GetRequest {
        key: key.as_bytes().to_vec().into(),
        consistency: level(l),
    }
}

fn values(response: &GetResponse) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = response.siblings.iter().map(|s| s.value.to_vec()).collect();
    v.sort();
    v
}

/// Values node `addr` itself stores for `key` (no coordinator merge).
async fn stored(addr: std::net::SocketAddr, key: &str) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = stored_versions(addr, key)
        .await
        .iter()
        .filter(|v| !v.tombstone)
        .map(|v| v.value.to_vec())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_quorums_siblings_read_repair_failures_and_restart() {
    let mut cluster = Cluster::start(3, N3_REPAIR_ALL).await;

    // Write at QUORUM through each node; read at QUORUM through every node.
    for (i, addr) in cluster.running() {
        let key = format!("k{i}");
        let value = format!("v{i}").into_bytes();
        let written = kv(addr)
            .await
            .put(put(&key, &value, &[], ConsistencyLevel::Quorum))
            .await
            .expect("put at QUORUM")
            .into_inner();
        assert!(written.replicas_acked >= 2, "{written:?}");
        for (j, other) in cluster.running() {
            let got = kv(other)
                .await
                .get(get(&key, ConsistencyLevel::Quorum))
                .await
                .expect("get at QUORUM")
                .into_inner();
            assert_eq!(
                values(&got),
                std::slice::from_ref(&value),
                "{key} read through node-{j}"
            );
            assert!(got.replicas_answered >= 2);
        }
    }

    // Concurrent writes without a context, through two coordinators, are
    // siblings; a write with the merged context resolves them.
    let (a, b, c) = (cluster.addr(0), cluster.addr(1), cluster.addr(2));
    for (addr, value) in [(a, &b"left"[..]), (b, b"right")] {
        kv(addr)
            .await
            .put(put("doc", value, &[], ConsistencyLevel::Quorum))
            .await
            .expect("blind put");
    }
    let both = kv(c)
        .await
        .get(get("doc", ConsistencyLevel::Quorum))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(values(&both), [b"left".to_vec(), b"right".to_vec()]);
    kv(c)
        .await
        .put(put(
            "doc",
            b"merged",
            &both.context,
            ConsistencyLevel::Quorum,
        ))
        .await
        .expect("put with context");
    let resolved = kv(a)
        .await
        .get(get("doc", ConsistencyLevel::All))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(values(&resolved), [b"merged".to_vec()]);

    // Bad requests are INVALID_ARGUMENT, whichever node gets them.
    let oversized = vec![0u8; (4 << 20) + 1];
    let invalid = [
        put("", b"v", &[], ConsistencyLevel::Quorum),
        put("big", &oversized, &[], ConsistencyLevel::Quorum),
        PutRequest {
            consistency: Some(Consistency {
                level: Some(v1::consistency::Level::Named(77)),
            }),
            ..put("k", b"v", &[], ConsistencyLevel::Quorum)
        },
        PutRequest {
            consistency: Some(Consistency {
                level: Some(v1::consistency::Level::Replicas(4)),
            }),
            ..put("k", b"v", &[], ConsistencyLevel::Quorum)
        },
        put(
            "k",
            b"v",
            b"\xff\xff not a context",
            ConsistencyLevel::Quorum,
        ),
    ];
    for request in invalid {
        let status = kv(b).await.put(request).await.expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    }
    let status = kv(b)
        .await
        .get(get("", ConsistencyLevel::One))
        .await
        .expect_err("empty key");
    assert_eq!(status.code(), Code::InvalidArgument);

    // A ring-aware client made now must survive node-2 moving to a new port.
    let client = strata_client::Client::connect(&a.to_string())
        .await
        .expect("client");

    // node-2 down: ALL cannot be met, QUORUM still can.
    cluster.kill(2).await;
    let status = kv(a)
        .await
        .put(put("missed-a", b"x", &[], ConsistencyLevel::All))
        .await
        .expect_err("ALL with a node down");
    assert_eq!(status.code(), Code::Unavailable, "{}", status.message());
    assert!(status.message().contains("needs 3"), "{}", status.message());
    for key in ["missed-a", "missed-b"] {
        let written = kv(a)
            .await
            .put(put(key, b"x", &[], ConsistencyLevel::Quorum))
            .await
            .expect("QUORUM with a node down")
            .into_inner();
        assert_eq!(written.replicas_acked, 2);
    }

    // Restarted on its data directory (and a new port): same id, same data.
    cluster.restart(2).await;
    let c = cluster.addr(2);
    let ring = strata_tests::cluster::admin(c)
        .await
        .get_ring(v1::GetRingRequest {})
        .await
        .expect("ring")
        .into_inner();
    let ids: Vec<&str> = ring.nodes.iter().map(|n| n.node_id.as_str()).collect();
    assert_eq!(ids, ["node-0", "node-1", "node-2"], "no new identity");
    assert_eq!(stored(c, "k0").await, [b"v0".to_vec()], "data kept");

    // It missed two writes. A read at ALL repairs before answering.
    assert!(stored(c, "missed-a").await.is_empty());
    let got = kv(a)
        .await
        .get(get("missed-a", ConsistencyLevel::All))
        .await
        .expect("get at ALL")
        .into_inner();
    assert_eq!(values(&got), [b"x".to_vec()]);
    assert_eq!(
        stored(c, "missed-a").await,
        [b"x".to_vec()],
        "blocking repair"
    );

    // A read at ONE answers first and repairs in the background.
    assert!(stored(c, "missed-b").await.is_empty());
    kv(c)
        .await
        .get(get("missed-b", ConsistencyLevel::One))
        .await
        .expect("get at ONE");
    let deadline = Instant::now() + Duration::from_secs(10);
    while stored(c, "missed-b").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "background read repair never came"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The old client routes around node-2's stale address.
    for i in 0..3 {
        let got = client
            .get(format!("k{i}").into_bytes(), level(ConsistencyLevel::All))
            .await
            .expect("client get after restart");
        assert_eq!(got.siblings.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_serve_every_key_through_every_node() {
    let mut cluster = Cluster::start(5, N3).await;
    let keys: Vec<String> = (0..20).map(|i| format!("key-{i}")).collect();

    // With N = 3 of 5, most coordinators are not replicas of a key: they
    // forward writes and fan reads out.
    for (i, key) in keys.iter().enumerate() {
        let addr = cluster.addr(i % 5);
        let written = kv(addr)
            .await
            .put(put(key, key.as_bytes(), &[], ConsistencyLevel::Quorum))
            .await
            .expect("put")
            .into_inner();
        assert!(written.replicas_acked >= 2);
    }
    for key in &keys {
        for (j, addr) in cluster.running() {
            let got = kv(addr)
                .await
                .get(get(key, ConsistencyLevel::Quorum))
                .await
                .expect("get")
                .into_inner();
            assert_eq!(
                values(&got),
                [key.as_bytes().to_vec()],
                "{key} via node-{j}"
            );
        }
    }
    // Each key is on exactly N = 3 nodes.
    for key in &keys {
        let mut holders = 0;
        for (_, addr) in cluster.running() {
            if !stored(addr, key).await.is_empty() {
                holders += 1;
            }
        }
        assert_eq!(holders, 3, "{key}");
    }

    // node-4 down: ALL fails exactly for the keys it replicates, QUORUM
    // succeeds for all, through any node.
    let on_node_4: Vec<bool> = {
        let addr = cluster.addr(4);
        let mut v = Vec::new();
        for key in &keys {
            v.push(!stored(addr, key).await.is_empty());
        }
        v
    };
    assert!(on_node_4.iter().any(|x| *x) && !on_node_4.iter().all(|x| *x));
    cluster.kill(4).await;
    for (i, key) in keys.iter().enumerate() {
        let addr = cluster.addr(i % 4);
        let all = kv(addr)
            .await
            .put(put(key, b"all", &[], ConsistencyLevel::All))
            .await;
        match (on_node_4[i], all) {
            (true, Err(status)) => assert_eq!(status.code(), Code::Unavailable, "{key}"),
            (false, Ok(_)) => {}
            (expected_down, other) => panic!("{key}: replica down {expected_down}, got {other:?}"),
        }
        kv(addr)
            .await
            .put(put(key, b"quorum", &[], ConsistencyLevel::Quorum))
            .await
            .expect("QUORUM with one node down");
    }
    let client = strata_client::Client::connect(&cluster.addr(0).to_string())
        .await
        .expect("client");
    for key in &keys {
        let got = client
            .get(key.as_bytes().to_vec(), level(ConsistencyLevel::Quorum))
            .await
            .expect("client get");
        assert!(
            got.siblings.iter().any(|s| &s.value[..] == b"quorum"),
            "{key}: {got:?}"
        );
    }
}

/// The nodes `via` sees alive, by id.
async fn alive_seen_by(via: std::net::SocketAddr) -> Vec<String> {
    let Ok(ring) = strata_tests::cluster::admin(via)
        .await
        .get_ring(v1::GetRingRequest {})
        .await
    else {
        return Vec::new();
    };
    let mut alive: Vec<String> = ring
        .into_inner()
        .nodes
        .into_iter()
        .filter(|n| n.alive)
        .map(|n| n.node_id)
        .collect();
    alive.sort();
    alive
}

/// Every node seeded only with node-a's gossip address; all three stop,
/// and node-b and node-c start again while node-a stays down: they find
/// each other at the gossip addresses their membership file recorded
/// (with the seed alone they never would) and serve QUORUM writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_restarted_while_their_seeds_are_down_find_each_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = ["node-a", "node-b", "node-c"];
    let gossip: Vec<String> = ids
        .iter()
        .map(|_| format!("127.0.0.1:{}", strata_tests::two_ports::free_port()))
        .collect();
    let start = |i: usize| {
        let args = [
            "--gossip-interval-ms",
            "100",
            "--gossip-listen",
            gossip[i].as_str(),
            "--seeds",
            gossip[0].as_str(),
            "--initial-cluster",
            "node-a,node-b,node-c",
        ];
        strata_tests::NodeProcess::start(&dir.path().join(ids[i]), Some(ids[i]), &args)
    };
    let wait_for = |nodes: &[&strata_tests::NodeProcess], expected: Vec<&str>| {
        let (nodes, expected): (Vec<_>, Vec<String>) = (
            nodes.iter().map(|n| n.addr()).collect(),
            expected.into_iter().map(str::to_owned).collect(),
        );
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            for addr in nodes {
                loop {
                    let seen = alive_seen_by(addr).await;
                    if seen == expected {
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{addr} sees {seen:?} alive, not {expected:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    let nodes: Vec<_> = (0..3).map(start).collect();
    wait_for(&nodes.iter().collect::<Vec<_>>(), ids.to_vec()).await;
    drop(nodes);

    let (b, c) = (start(1), start(2));
    wait_for(&[&b, &c], vec!["node-b", "node-c"]).await;
    let written = kv(b.addr())
        .await
        .put(put("after", b"v", &[], ConsistencyLevel::Quorum))
        .await
        .expect("a QUORUM write with two of three up")
        .into_inner();
    assert_eq!(written.replicas_acked, 2);
}

/// A node restarted after a crash serves QUORUM requests from its first
/// moment: a request that finds its key's other replicas not yet heard
/// waits for gossip to settle instead of failing UNAVAILABLE (before, the
/// first requests through a restarted node failed for about two gossip
/// rounds). With one member still down, a request waits only until it
/// hears enough replicas, not for the missing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_serves_quorum_requests_at_once() {
    let mut cluster = Cluster::start(3, N3).await;
    kv(cluster.addr(0))
        .await
        .put(put("before", b"v", &[], ConsistencyLevel::Quorum))
        .await
        .expect("write before the crash");
    cluster.kill(2).await;
    cluster.start_again(2);
    let mut client = kv(cluster.addr(2)).await;
    let read = client
        .get(get("before", ConsistencyLevel::Quorum))
        .await
        .expect("a QUORUM read through the restarted node")
        .into_inner();
    assert_eq!(values(&read), [b"v".to_vec()]);
    let written = client
        .put(put("after", b"w", &[], ConsistencyLevel::All))
        .await
        .expect("an ALL write through the restarted node")
        .into_inner();
    assert_eq!(written.replicas_acked, 3);
    assert!(
        cluster.log(2).contains("gossip settled"),
        "the restarted node says when it hears every member"
    );

    // node-1 down as well: node-2 hears node-0 and may serve QUORUM.
    cluster.crash(1);
    cluster.kill(2).await;
    cluster.start_again(2);
    let written = kv(cluster.addr(2))
        .await
        .put(put("partial", b"x", &[], ConsistencyLevel::Quorum))
        .await
        .expect("a QUORUM write with two of three up")
        .into_inner();
    assert_eq!(written.replicas_acked, 2);
    // The settle window (20 rounds of 100 ms, about as long as the
    // request's own timeout) has not passed: the write went as soon as
    // node-2 heard node-0.
    let log = cluster.log(2);
    assert!(!log.contains("gossip settle window passed"), "{log}");
}

/// A new cluster serves QUORUM requests as soon as its founders run: a
/// request that reaches a founder before gossip has brought it every other
/// founder waits for them. Before, a founder whose view held only itself
/// and one other refused at once ("only 1 of the key's 2 are up"), or,
/// worse, wrote at QUORUM to the replicas of that partial ring, which
/// later reads of the whole ring did not ask. Five founders, N = 3: keys
/// are written through node-b from the moment it starts, before the last
/// three start, then read at QUORUM through node-a.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cluster_serves_quorum_requests_as_soon_as_its_founders_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = ["node-a", "node-b", "node-c", "node-d", "node-e"];
    let gossip: Vec<String> = ids
        .iter()
        .map(|_| format!("127.0.0.1:{}", strata_tests::two_ports::free_port()))
        .collect();
    let founders = ids.join(",");
    // Rounds of 500 ms: the settle window (20 rounds) outlasts the
    // founders' start by far, so no write goes on for want of time.
    let start = |i: usize| {
        let args = [
            "--gossip-interval-ms",
            "500",
            "--request-timeout-ms",
            "10000",
            "--gossip-listen",
            gossip[i].as_str(),
            "--seeds",
            gossip[0].as_str(),
            "--initial-cluster",
            founders.as_str(),
        ];
        strata_tests::NodeProcess::start(&dir.path().join(ids[i]), Some(ids[i]), &args)
    };
    let (a, b) = (start(0), start(1));
    let mut writer = kv(b.addr()).await;
    let writes = tokio::spawn(async move {
        for i in 0..20 {
            let key = format!("early-{i}");
            let written = writer
                .put(put(&key, b"v", &[], ConsistencyLevel::Quorum))
                .await
                .unwrap_or_else(|e| panic!("{key} at QUORUM through a new founder: {e}"))
                .into_inner();
            assert!(written.replicas_acked >= 2, "{key}: {written:?}");
        }
    });
    // node-b hears node-a: a ring of two, enough for QUORUM in numbers.
    // The writes must wait for the other founders all the same.
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive_seen_by(b.addr()).await != ["node-a", "node-b"] {
        assert!(Instant::now() < deadline, "node-b never heard node-a");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!writes.is_finished(), "written on a ring of two");
    let rest: Vec<_> = (2..ids.len()).map(start).collect();
    writes.await.expect("writes");
    let mut reader = kv(a.addr()).await;
    for i in 0..20 {
        let key = format!("early-{i}");
        let read = reader
            .get(get(&key, ConsistencyLevel::Quorum))
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"))
            .into_inner();
        assert_eq!(values(&read), [b"v".to_vec()], "{key}");
    }
    assert!(b.log().contains("gossip settled"), "{}", b.log());
    drop(rest);
}

/// A node stopped with SIGTERM (how Kubernetes stops a pod) tells its peers
/// before it goes: each takes it as down at once and says so, instead of
/// routing to it until the failure detector has heard seconds of silence;
/// started again (a new gossip generation), it is alive again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_gracefully_is_taken_as_down_at_once() {
    let mut cluster = Cluster::start(3, N3).await;
    let status = cluster.stop(2);
    assert!(status.success(), "{status}");
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0..2 {
        loop {
            let told = cluster
                .log(i)
                .lines()
                .any(|l| l.contains("a member announced its stop") && l.contains("node-2"));
            if told {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node-{i} was not told:\n{}",
                cluster.log(i)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    cluster.wait_until_alive(2).await;
    cluster.restart(2).await;
    let written = kv(cluster.addr(0))
        .await
        .put(put("back", b"v", &[], ConsistencyLevel::All))
        .await
        .expect("an ALL write once node-2 is back")
        .into_inner();
    assert_eq!(written.replicas_acked, 3);
}
