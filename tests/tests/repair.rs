//! Merkle-tree anti-entropy across real node processes: a replica that
//! missed writes and deletes (no hints, no reads) is repaired by
//! `strata repair`, and every replica ends with equal Merkle roots.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use strata_proto::v1::{
    Consistency, ConsistencyLevel, GetNodeStatusRequest, OperationKind, PutRequest, RepairRequest,
};
use strata_tests::cluster::{admin, delete_at_quorum, kv, stored_versions};
use strata_tests::{Cluster, workspace_binary};
use tonic::Code;

const DEPTH: u32 = 6;
/// No hints and no scheduled repair: only `strata repair` can fix node-2.
const ARGS: &[&str] = &[
    "--replication-factor",
    "3",
    "--vnodes",
    "16",
    "--merkle-depth",
    "6",
    "--max-hint-bytes",
    "0",
    "--anti-entropy-interval-secs",
    "0",
];

fn quorum() -> Option<Consistency> {
    Some(Consistency::named(ConsistencyLevel::Quorum))
}

/// (live values, tombstones) node `addr` stores for `key`.
async fn stored(addr: SocketAddr, key: &str) -> (usize, usize) {
    let versions = stored_versions(addr, key).await;
    let dead = versions.iter().filter(|v| v.tombstone).count();
    (versions.len() - dead, dead)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_restores_missed_writes_and_deletes_and_roots_converge() {
    let mut cluster = Cluster::start(3, ARGS).await;
    let a = cluster.addr(0);
    for i in 0..60 {
        kv(a)
            .await
            .put(PutRequest {
                key: format!("old-{i}").into_bytes().into(),
                value: b"v".to_vec().into(),
                context: Vec::new().into(),
                consistency: quorum(),
                request_id: 0,
            })
            .await
            .expect("put");
    }
    // A QUORUM write is answered once two replicas have it; the third
    // copy of the last writes may still be on its way.
    cluster
        .wait_until_converged(3, DEPTH, Duration::from_secs(10))
        .await;
    assert_eq!(
        cluster.replicas_converged(3, DEPTH).await,
        Ok(3 * 16),
        "in sync after quorum writes with every node up"
    );

    // node-2 misses new writes and deletes of old keys.
    cluster.kill(2).await;
    for i in 0..40 {
        kv(a)
            .await
            .put(PutRequest {
                key: format!("new-{i}").into_bytes().into(),
                value: b"v".to_vec().into(),
                context: Vec::new().into(),
                consistency: quorum(),
                request_id: 0,
            })
            .await
            .expect("put with node-2 down");
    }
    for i in 0..20 {
        delete_at_quorum(a, format!("old-{i}").as_bytes()).await;
    }
    cluster.restart(2).await;
    let c = cluster.addr(2);
    assert_eq!(stored(c, "new-0").await, (0, 0));
    assert_eq!(stored(c, "old-0").await, (1, 0));
    let differing = cluster
        .replicas_converged(3, DEPTH)
        .await
        .expect_err("node-2 is behind");
    assert!(differing.contains("ranges differ"), "{differing}");

    // `strata repair` on node-2 waits for the repair and reports it.
    let output = Command::new(workspace_binary("strata"))
        .args(["--endpoint", &c.to_string(), "repair"])
        .output()
        .expect("run strata repair");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "strata repair failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("done: 48/48 ranges"), "{stdout}");

    for i in 0..40 {
        assert_eq!(stored(c, &format!("new-{i}")).await, (1, 0), "new-{i}");
    }
    for i in 0..20 {
        // The delete arrived as a tombstone superseding the old value.
        assert_eq!(stored(c, &format!("old-{i}")).await, (0, 1), "old-{i}");
    }
    // Converged by the repair itself: the first check after it, no waiting.
    let first = cluster.replicas_converged(3, DEPTH).await;
    assert_eq!(first, Ok(3 * 16), "converged by the repair itself");

    // `strata status` shows when each node last completed a repair.
    let output = Command::new(workspace_binary("strata"))
        .args(["--endpoint", &c.to_string(), "status"])
        .output()
        .expect("run strata status");
    let status_text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{status_text}");
    assert!(
        status_text.contains("node-2") && status_text.contains("s ago"),
        "{status_text}"
    );
    assert!(status_text.contains("last repair never"), "{status_text}");

    // Tombstone GC: node-2 repaired every range it replicates with every
    // member up, so it collects tombstones again; the others (no scheduled
    // repair here) keep them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cluster
        .process(2)
        .metric("strata_tombstone_gc_paused")
        .await
        != Some(0.0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "node-2's tombstone GC still paused after its repair"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        cluster
            .process(0)
            .metric("strata_tombstone_gc_paused")
            .await,
        Some(1.0)
    );
    // `strata status` says which nodes keep their tombstones.
    let output = Command::new(workspace_binary("strata"))
        .args(["--endpoint", &c.to_string(), "status"])
        .output()
        .expect("run strata status");
    let status_text = String::from_utf8_lossy(&output.stdout);
    let mut node = "";
    let mut paused = Vec::new();
    for line in status_text.lines() {
        if !line.starts_with(' ') {
            node = line.split_whitespace().next().unwrap_or_default();
        } else if line.contains("tombstone GC paused") {
            paused.push(node);
        }
    }
    assert_eq!(paused, ["node-0", "node-1"], "{status_text}");

    // Progress, status and the busy case.
    let status = admin(c)
        .await
        .get_node_status(GetNodeStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(status.last_repair_micros > 0);
    let operations = strata_tests::cluster::operations(c)
        .await
        .expect("progress");
    let repairs: Vec<_> = operations
        .iter()
        .filter(|op| op.kind == OperationKind::Repair as i32)
        .collect();
    assert_eq!(repairs.len(), 1, "{operations:?}");
    assert!(repairs[0].keys_transferred >= 60, "{:?}", repairs[0]);

    // Its restart changed the ring, so node-2 cleans up by itself; with
    // every range on every node there is nothing to delete, and such a
    // cleanup stays out of the operations history.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while cluster
        .process(2)
        .metric("strata_cleanups_completed_total")
        .await
        .unwrap_or(0.0)
        < 1.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "node-2 did not clean up within 60 s of its restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        cluster.process(2).metric("strata_cleanup_keys_total").await,
        Some(0.0)
    );
    let operations = strata_tests::cluster::operations(c)
        .await
        .expect("progress");
    assert!(
        operations
            .iter()
            .all(|op| op.kind != OperationKind::Cleanup as i32),
        "{operations:?}"
    );
    let mut node = admin(a).await;
    node.repair(RepairRequest::default()).await.expect("starts");
    let busy = node
        .repair(RepairRequest::default())
        .await
        .expect_err("one repair at a time");
    assert_eq!(busy.code(), Code::FailedPrecondition, "{busy:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_repair_converges_replicas_without_being_asked() {
    let mut args: Vec<&str> = ARGS[..ARGS.len() - 2].to_vec();
    args.extend([
        "--anti-entropy-interval-secs",
        "1",
        "--hint-window-secs",
        "60",
        "--tombstone-grace-secs",
        "120",
    ]);
    let mut cluster = Cluster::start(3, &args).await;
    cluster.kill(2).await;
    let a = cluster.addr(0);
    for i in 0..30 {
        kv(a)
            .await
            .put(PutRequest {
                key: format!("k-{i}").into_bytes().into(),
                value: b"v".to_vec().into(),
                context: Vec::new().into(),
                consistency: quorum(),
                request_id: 0,
            })
            .await
            .expect("put");
    }
    cluster.restart(2).await;
    let took = cluster
        .wait_until_converged(3, DEPTH, Duration::from_secs(30))
        .await;
    println!(
        "scheduled repair converged {:.1} s after the restart",
        took.as_secs_f64()
    );
    let c = cluster.addr(2);
    for i in 0..30 {
        assert_eq!(stored(c, &format!("k-{i}")).await, (1, 0));
    }
}
