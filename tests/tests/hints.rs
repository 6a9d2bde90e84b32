//! Hinted handoff across real node processes: writes for a down replica go
//! to a stand-in (sloppy quorum) or stay with the coordinator as hints,
//! survive a restart of the node holding them, and reach the replica once
//! gossip sees it back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use strata_proto::v1::{Consistency, ConsistencyLevel, GetNodeStatusRequest, PutRequest};
use strata_tests::Cluster;
use strata_tests::cluster::{admin, kv, stored_versions};
use tonic::Code;

const KEYS: usize = 40;

fn put(key: &str, level: ConsistencyLevel) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec().into(),
        value: format!("value-of-{key}").into_bytes().into(),
        context: Vec::new().into(),
        consistency: Some(Consistency::named(level)),
        request_id: 0,
    }
}

/// How many of `nodes` store `key` themselves (hints do not count).
async fn holders(nodes: &[(usize, SocketAddr)], key: &str) -> usize {
    let mut n = 0;
    for (_, addr) in nodes {
        n += usize::from(!stored_versions(*addr, key).await.is_empty());
    }
    n
}

/// Hints node `addr` holds.
async fn hints_held(addr: SocketAddr) -> u64 {
    admin(addr)
        .await
        .get_node_status(GetNodeStatusRequest {})
        .await
        .expect("status")
        .into_inner()
        .hints_pending
}

async fn hints_pending(nodes: &[(usize, SocketAddr)]) -> u64 {
    let mut total = 0;
    for (_, addr) in nodes {
        total += hints_held(*addr).await;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_for_a_down_replica_survive_a_restart_and_are_replayed() {
    let mut cluster = Cluster::start(4, &["--replication-factor", "3"]).await;
    cluster.kill(3).await;

    // Every write succeeds at QUORUM; at ALL the ones that need node-3 fail
    // (ALL means every replica itself, never a stand-in).
    let coordinator = cluster.addr(0);
    let mut all_failed = 0;
    for i in 0..KEYS {
        let key = format!("key-{i}");
        let written = kv(coordinator)
            .await
            .put(put(&key, ConsistencyLevel::Quorum))
            .await
            .expect("QUORUM with one replica down")
            .into_inner();
        assert!(written.replicas_acked >= 2, "{written:?}");
        match kv(coordinator)
            .await
            .put(put(&format!("all-{i}"), ConsistencyLevel::All))
            .await
        {
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                all_failed += 1;
            }
        }
    }
    assert!(all_failed > 0, "node-3 replicates some keys");

    // Each key node-3 replicates is on two live replicas; its third copy
    // is a hint somewhere.
    let live = cluster.running();
    let mut missing_on_node3 = 0;
    for i in 0..KEYS {
        let n = holders(&live, &format!("key-{i}")).await;
        assert!((2..=3).contains(&n), "key-{i} on {n} live nodes");
        missing_on_node3 += usize::from(n == 2);
    }
    assert!(missing_on_node3 > 0);
    let pending = hints_pending(&live).await;
    assert!(
        pending >= missing_on_node3 as u64,
        "{pending} hints for {missing_on_node3} keys"
    );

    // Hints are durable: restart every node that holds some.
    for (i, addr) in live {
        if hints_held(addr).await > 0 {
            cluster.kill(i).await;
            cluster.restart(i).await;
        }
    }
    assert_eq!(hints_pending(&cluster.running()).await, pending);

    // node-3 comes back: hints are replayed until every key has three copies
    // (no client reads, so no read repair helps).
    cluster.restart(3).await;
    let started = Instant::now();
    loop {
        let all = cluster.running();
        let mut complete = 0;
        for i in 0..KEYS {
            complete += usize::from(holders(&all, &format!("key-{i}")).await == 3);
        }
        if complete == KEYS && hints_pending(&all).await == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{complete}/{KEYS} keys on three nodes, {} hints pending",
            hints_pending(&all).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_hint_bound_writes_that_need_a_stand_in_fail_at_their_level() {
    // Room for about three hints per target: then stand-ins refuse.
    let mut cluster = Cluster::start(
        5,
        &[
            "--replication-factor",
            "3",
            "--max-hint-bytes-per-node",
            "300",
        ],
    )
    .await;
    cluster.kill(4).await;
    cluster.kill(3).await;
    let (ring, _) = cluster.ring().await.expect("ring");
    let down = |id: &strata_cluster::NodeId| id.as_str() == "node-3" || id.as_str() == "node-4";

    let coordinator = cluster.addr(0);
    let (mut needed_stand_in, mut refused) = (0, 0);
    for i in 0..80 {
        let key = format!("key-{i}");
        let replicas = ring
            .placement(strata_cluster::Token::of(key.as_bytes()), 3)
            .replicas;
        let downs = replicas.iter().filter(|id| down(id)).count();
        let result = kv(coordinator)
            .await
            .put(put(&key, ConsistencyLevel::Quorum))
            .await;
        match (downs, result) {
            (0 | 1, Ok(_)) => {}
            (0 | 1, Err(status)) => panic!("{key} has two live replicas: {status:?}"),
            (_, Ok(written)) => {
                // One live replica plus a stand-in's hint.
                assert_eq!(written.into_inner().replicas_acked, 2);
                needed_stand_in += 1;
            }
            (_, Err(status)) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                refused += 1;
            }
        }
    }
    assert!(needed_stand_in > 0, "hints within the bound count toward W");
    assert!(refused > 0, "past the bound the write fails at QUORUM");
    // No node holds more than the bound for a target (two targets here).
    for (_, addr) in cluster.running() {
        let status = admin(addr)
            .await
            .get_node_status(GetNodeStatusRequest {})
            .await
            .expect("status")
            .into_inner();
        assert!(status.hints_pending <= 2 * 300 / 40, "{status:?}");
    }
}
