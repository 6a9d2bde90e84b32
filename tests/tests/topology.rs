//! Topology changes on real node processes, with recording clients running
//! throughout: joins that stream their ranges, decommissions that hand them
//! over, refused changes. Every scenario ends with no acknowledged write
//! lost.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use strata_proto::v1::{
    DecommissionRequest, GetProgressRequest, GetRingRequest, NodeState, OperationKind,
    OperationState,
};
use strata_tests::Cluster;
use strata_tests::cluster::{admin, stored_versions};
use strata_tests::scenario::{Clients, KEYS, endpoints, quorum, report, set, settle};
use tonic::Code;

const ARGS: &[&str] = &[
    "--replication-factor",
    "3",
    "--vnodes",
    "16",
    "--merkle-depth",
    "6",
    "--anti-entropy-interval-secs",
    "0",
    "--hint-window-secs",
    "600",
    "--tombstone-grace-secs",
    "3600",
];

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("key-{i}")).collect()
}

/// Waits (bounded) until every running node's ring shows `node` in
/// `state`.
async fn wait_for_state(cluster: &Cluster, node: &str, state: NodeState) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut all = true;
        for (_, addr) in cluster.running() {
            let seen = match admin(addr).await.get_ring(GetRingRequest {}).await {
                Ok(ring) => ring
                    .into_inner()
                    .nodes
                    .iter()
                    .any(|n| n.node_id == node && n.state == state as i32),
                Err(_) => false,
            };
            all &= seen;
        }
        if all {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{node} did not reach {state:?} everywhere within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The change operation `node` ran of `kind`, once it finished.
async fn finished_operation(addr: SocketAddr, kind: OperationKind) -> strata_proto::v1::Operation {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ops = admin(addr)
            .await
            .get_progress(GetProgressRequest::default())
            .await
            .expect("progress")
            .into_inner()
            .operations;
        if let Some(op) = ops.into_iter().find(|o| {
            o.kind == kind as i32
                && o.state != OperationState::Running as i32
                && o.state != OperationState::Pending as i32
        }) {
            return op;
        }
        assert!(
            Instant::now() < deadline,
            "no finished {kind:?} within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn running_addrs(cluster: &Cluster) -> Vec<SocketAddr> {
    cluster.running().iter().map(|(_, a)| *a).collect()
}

/// 3 -> 4 -> 5 by joins, then 5 -> 4 -> 3 by decommissions, under QUORUM
/// writes and reads: nothing acknowledged is lost; a second change while
/// one runs, and a decommission below N, are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_by_joins_and_shrink_by_decommissions_without_losing_a_write() {
    let started = Instant::now();
    let mut cluster = Cluster::start(3, ARGS).await;
    let lists: Vec<_> = (0..3)
        .map(|_| endpoints(&running_addrs(&cluster)))
        .collect();
    let clients = Clients::start(&lists, quorum());
    clients.until_attempted(0, 60).await;

    for joiner in ["node-3", "node-4"] {
        let written_before: Vec<String> = clients
            .history
            .writes()
            .iter()
            .filter(|w| w.outcome == strata_tests::history::Outcome::Acked)
            .map(|w| w.key.clone())
            .collect();
        let index = cluster.add();
        wait_for_state(&cluster, joiner, NodeState::Normal).await;
        let op = finished_operation(cluster.addr(index), OperationKind::Join).await;
        assert_eq!(op.state, OperationState::Succeeded as i32, "{op:?}");
        assert_eq!(op.ranges_done, op.ranges_total, "{op:?}");
        assert!(op.ranges_total > 0, "a joiner gains ranges: {op:?}");
        // It streamed them: every key written before it joined that it now
        // replicates is in its own store.
        let (ring, _) = cluster.ring().await.expect("ring");
        let me = strata_cluster::NodeId::new(joiner).expect("id");
        let mut held = 0;
        for key in &written_before {
            let token = strata_cluster::Token::of(key.as_bytes());
            if ring.placement(token, 3).replicas.contains(&me) {
                assert!(
                    !stored_versions(cluster.addr(index), key).await.is_empty(),
                    "{joiner} lacks {key}, written before it joined"
                );
                held += 1;
            }
        }
        assert!(held > 0, "{joiner} replicates some of the written keys");
        for list in &lists {
            set(list, &running_addrs(&cluster));
        }
        let before = clients.history.writes().len();
        clients.until_attempted(before, 30).await;
    }

    for (leaver, index) in [("node-4", 4), ("node-3", 3)] {
        // Asked through another node, which forwards it.
        let op = admin(cluster.addr(0))
            .await
            .decommission(DecommissionRequest {
                node_id: leaver.to_owned(),
            })
            .await
            .expect("decommission starts")
            .into_inner();
        assert_eq!(op.kind, OperationKind::Decommission as i32);
        // One change at a time: once the first is visible, a second is
        // refused.
        wait_for_state(&cluster, leaver, NodeState::Leaving).await;
        let refused = admin(cluster.addr(1))
            .await
            .decommission(DecommissionRequest {
                node_id: "node-1".to_owned(),
            })
            .await
            .expect_err("a second change");
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused}");
        assert!(refused.message().contains("in progress"), "{refused}");
        wait_for_state(&cluster, leaver, NodeState::Left).await;
        let op = finished_operation(cluster.addr(index), OperationKind::Decommission).await;
        assert_eq!(op.state, OperationState::Succeeded as i32, "{op:?}");
        for list in &lists {
            let others: Vec<SocketAddr> = cluster
                .running()
                .into_iter()
                .filter(|(i, _)| *i != index)
                .map(|(_, a)| a)
                .collect();
            set(list, &others);
        }
        let before = clients.history.writes().len();
        clients.until_attempted(before, 30).await;
        cluster.crash(index);
    }

    // Three normal nodes with N = 3: none may leave.
    let refused = admin(cluster.addr(0))
        .await
        .decommission(DecommissionRequest::default())
        .await
        .expect_err("below N");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("fewer than 3"), "{refused}");

    let history = clients.stop().await;
    let converged = settle(&cluster, Instant::now()).await;
    let verdict = history.check(&cluster.final_values(keys(), 3).await);
    report(
        "3 -> 4 -> 5 -> 4 -> 3 under QUORUM load",
        &verdict,
        converged,
    );
    println!("scenario took {:.1} s", started.elapsed().as_secs_f64());
}
