//! Topology changes on real node processes, with recording clients running
//! throughout: joins that stream their ranges, decommissions that hand them
//! over, refused changes. Every scenario ends with no acknowledged write
//! lost.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use strata_proto::v1::{
    ConsistencyLevel, DecommissionRequest, GetProgressRequest, GetRingRequest, JoinRequest,
    NodeState, OperationKind, OperationState,
};
use strata_tests::Cluster;
use strata_tests::cluster::{admin, operations, ring_at, stored_versions};
use strata_tests::scenario::{ARGS, Clients, endpoints, keys, quorum, report, set, settle};
use strata_tests::workload::Endpoints;
use tonic::Code;

/// Waits (bounded) until every running node's ring shows `node` in
/// `state`.
async fn wait_for_state(cluster: &Cluster, node: &str, state: NodeState) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !cluster.all_see_state(node, state).await {
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
        let ops = operations(addr).await.expect("progress");
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

/// Table bytes nodes 0, 1 and 2 loaded behind their data
/// (`strata_engine_ingested_bytes`).
async fn founders_ingested(cluster: &Cluster) -> f64 {
    let mut bytes = 0.0;
    for i in 0..3 {
        bytes += cluster
            .process(i)
            .metric("strata_engine_ingested_bytes")
            .await
            .expect("metric");
    }
    bytes
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

    // Five nodes, nothing changing: the old owners clean up, and each key
    // is on exactly its three replicas.
    cleaned_up(&cluster, &keys(), Duration::from_secs(60)).await;
    // Every cleanup that deleted keys is in its node's history, with the
    // keys it deleted; one that deleted nothing is not.
    let mut deleted = 0.0;
    for (i, addr) in cluster.running() {
        let counted = cluster
            .process(i)
            .metric("strata_cleanup_keys_total")
            .await
            .expect("metric");
        let cleanups: Vec<_> = operations(addr)
            .await
            .expect("progress")
            .into_iter()
            .filter(|op| op.kind == OperationKind::Cleanup as i32)
            .collect();
        let listed: u64 = cleanups.iter().map(|op| op.keys_transferred).sum();
        #[expect(clippy::cast_precision_loss, reason = "small counts")]
        let listed = listed as f64;
        assert!(
            (listed - counted).abs() < 0.5,
            "node-{i}: {counted} keys deleted, {listed} in {cleanups:?}"
        );
        // Only automatic cleanups ran here: none that deleted nothing is
        // listed, whether it finished or a join interrupted it.
        assert!(
            cleanups.iter().all(|op| op.keys_transferred > 0),
            "node-{i}: {cleanups:?}"
        );
        deleted += counted;
    }
    assert!(deleted > 0.0, "the old owners deleted what they gave away");

    // The founders never joined, so they have loaded no table behind their
    // data yet; a leaving node's ranges reach them as tables they load
    // (`Replica.IngestRange`), not through their write path. Of keys they
    // never held, that is: fresh ones, written to five nodes (the
    // workload's keys they deleted in cleanups are merged instead, their
    // tombstones being newer than anything loaded behind them).
    assert_eq!(founders_ingested(&cluster).await, 0.0, "nothing loaded yet");
    let fresh = load_at(cluster.addr(0), "fresh", 300, 100, ConsistencyLevel::All).await;

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
        // Asked again, a node that has left says so.
        let again = admin(cluster.addr(index))
            .await
            .decommission(DecommissionRequest::default())
            .await
            .expect_err("it has left");
        assert_eq!(again.code(), Code::FailedPrecondition, "{again}");
        assert!(again.message().contains("already left"), "{again}");
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

    // node-4's and node-3's ranges went to the founders, as tables.
    let ingested = founders_ingested(&cluster).await;
    assert!(
        ingested > 0.0,
        "the founders loaded the ranges they gained as tables"
    );
    for key in &fresh {
        for i in 0..3 {
            assert!(
                !stored_versions(cluster.addr(i), key).await.is_empty(),
                "node-{i} lacks {key}"
            );
        }
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
    // W + R > N held across every change: no QUORUM read missed a QUORUM
    // write acknowledged before it was sent.
    assert_eq!(verdict.stale_reads, [], "stale QUORUM reads");
    println!("scenario took {:.1} s", started.elapsed().as_secs_f64());
}

/// Three new nodes started at the same moment (a scale-out from 3 to 6
/// done by hand, each starting with a partial view of the cluster) join
/// one after another under QUORUM load without losing a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_started_at_once_all_join_without_losing_a_write() {
    let mut cluster = Cluster::start(3, ARGS).await;
    let bulk = load(cluster.addr(0), 300, 64).await;
    let (lists, clients) = quorum_clients(&cluster).await;
    let joiners: Vec<usize> = (0..3).map(|_| cluster.add()).collect();
    let scenario = "3 -> 6, three nodes started at once, under QUORUM load";
    joined_one_after_another(&cluster, &joiners, &bulk, &lists, clients, scenario).await;
}

/// Three joins asked of three waiting nodes at the same moment (each
/// checks for other changes before the others' claims arrive): one goes
/// on, the others step back and go on after it; none streams from a ring
/// where another joiner is still pending, so each ends up holding what it
/// replicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_joins_asked_at_once_settle_who_goes_first_without_losing_a_write() {
    let (cluster, bulk, (lists, clients), joiners) = with_waiting_joiners(3, 3).await;
    let ask = |i: usize| {
        let addr = cluster.addr(i);
        async move { admin(addr).await.join(JoinRequest {}).await }
    };
    let asked = tokio::join!(ask(joiners[0]), ask(joiners[1]), ask(joiners[2]));
    for answer in [asked.0, asked.1, asked.2] {
        answer.expect("a join starts");
    }
    let scenario = "3 -> 6, three joins asked at once, under QUORUM load";
    joined_one_after_another(&cluster, &joiners, &bulk, &lists, clients, scenario).await;
}

/// A join and a decommission asked at the same moment: the decommission
/// (node-1, the smaller id) goes on and the join steps back if both were
/// claimed, then joins once node-1 has left; no key is left with fewer
/// than three copies. (Whether both claims meet depends on gossip timing;
/// the policy itself is unit-tested in `changes/in_progress.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_and_a_decommission_asked_at_once_go_one_after_the_other() {
    let (mut cluster, bulk, (lists, clients), joiners) = with_waiting_joiners(4, 1).await;
    let joiner = joiners[0];
    let (joined, left) = tokio::join!(
        async { admin(cluster.addr(joiner)).await.join(JoinRequest {}).await },
        async {
            admin(cluster.addr(0))
                .await
                .decommission(DecommissionRequest {
                    node_id: "node-1".to_owned(),
                })
                .await
        }
    );
    joined.expect("the join starts");
    left.expect("the decommission starts");
    wait_for_state(&cluster, "node-1", NodeState::Left).await;
    let op = finished_operation(cluster.addr(1), OperationKind::Decommission).await;
    assert_eq!(op.state, OperationState::Succeeded as i32, "{op:?}");
    cluster.crash(1);
    for list in &lists {
        set(list, &running_addrs(&cluster));
    }
    let scenario = "4 nodes, node-1 leaving while node-4 joins, under QUORUM load";
    joined_one_after_another(&cluster, &[joiner], &bulk, &lists, clients, scenario).await;
}

/// `founders` nodes holding 300 keys written at ALL, recording QUORUM
/// clients on them, and `joiners` more started with `--auto-bootstrap
/// false`, alive and waiting for a join.
async fn with_waiting_joiners(
    founders: usize,
    joiners: usize,
) -> (Cluster, Vec<String>, (Vec<Endpoints>, Clients), Vec<usize>) {
    let mut args = ARGS.to_vec();
    args.extend(["--auto-bootstrap", "false"]);
    let mut cluster = Cluster::start(founders, &args).await;
    let bulk = load(cluster.addr(0), 300, 64).await;
    let clients = quorum_clients(&cluster).await;
    let added: Vec<usize> = (0..joiners).map(|_| cluster.add()).collect();
    cluster.wait_until_alive(founders + joiners).await;
    (cluster, bulk, clients, added)
}

/// Recording QUORUM clients over the cluster's nodes, once they run.
async fn quorum_clients(cluster: &Cluster) -> (Vec<Endpoints>, Clients) {
    let lists: Vec<_> = (0..3).map(|_| endpoints(&running_addrs(cluster))).collect();
    let clients = Clients::start(&lists, quorum());
    clients.until_attempted(0, 60).await;
    (lists, clients)
}

/// Waits until the `joiners` are normal, checks each streamed what it
/// replicates of `bulk`, then (after more load through every node) that
/// every key has three copies once the old owners cleaned up, no QUORUM
/// read was stale and no acknowledged write was lost.
async fn joined_one_after_another(
    cluster: &Cluster,
    joiners: &[usize],
    bulk: &[String],
    lists: &[Endpoints],
    clients: Clients,
    scenario: &str,
) {
    for &index in joiners {
        wait_for_state(cluster, &format!("node-{index}"), NodeState::Normal).await;
    }
    for &index in joiners {
        let name = format!("node-{index}");
        let op = finished_operation(cluster.addr(index), OperationKind::Join).await;
        assert_eq!(op.state, OperationState::Succeeded as i32, "{name}: {op:?}");
        assert_eq!(op.ranges_done, op.ranges_total, "{name}: {op:?}");
        assert!(
            joiner_holds(cluster, &name, index, bulk).await > 0,
            "{name} replicates some of the loaded keys"
        );
    }
    for list in lists {
        set(list, &running_addrs(cluster));
    }
    let before = clients.history.writes().len();
    clients.until_attempted(before, 30).await;

    // Nothing changing: the old owners clean up, and then each key is on
    // exactly its three replicas, none on fewer.
    let sample: Vec<String> = bulk.iter().step_by(5).cloned().chain(keys()).collect();
    let holders = cleaned_up(cluster, &sample, Duration::from_secs(90)).await;
    let short: Vec<_> = sample
        .iter()
        .zip(&holders)
        .filter(|(_, h)| **h < 3)
        .collect();
    assert_eq!(short, [], "keys with fewer than three copies");

    let history = clients.stop().await;
    let converged = settle(cluster, Instant::now()).await;
    let verdict = history.check(&cluster.final_values(keys(), 3).await);
    report(scenario, &verdict, converged);
    assert_eq!(verdict.stale_reads, [], "stale QUORUM reads");
}

/// Waits (bounded by `within`) until no key of `keys` is on more than
/// three running nodes (the old owners cleaned up); returns each key's
/// holders then.
async fn cleaned_up(cluster: &Cluster, keys: &[String], within: Duration) -> Vec<usize> {
    let deadline = Instant::now() + within;
    loop {
        let mut holders = Vec::with_capacity(keys.len());
        for key in keys {
            holders.push(copies(cluster, key).await);
        }
        let extra: Vec<_> = keys.iter().zip(&holders).filter(|(_, h)| **h > 3).collect();
        if extra.is_empty() {
            return holders;
        }
        assert!(Instant::now() < deadline, "not cleaned up: {extra:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Writes `count` keys of `value_bytes` each through `addr` at ALL, in
/// batches, so a join has something to stream.
async fn load(addr: SocketAddr, count: usize, value_bytes: usize) -> Vec<String> {
    load_at(addr, "bulk", count, value_bytes, ConsistencyLevel::All).await
}

/// [`load`] at `level`, keys named `<prefix>-NNNNNN`: every write
/// acknowledged.
async fn load_at(
    addr: SocketAddr,
    prefix: &str,
    count: usize,
    value_bytes: usize,
    level: ConsistencyLevel,
) -> Vec<String> {
    use strata_proto::v1::{BatchWriteRequest, Consistency, PutRequest, WriteOp, write_op};
    let keys: Vec<String> = (0..count).map(|i| format!("{prefix}-{i:06}")).collect();
    for chunk in keys.chunks(500) {
        let ops = chunk
            .iter()
            .map(|k| WriteOp {
                op: Some(write_op::Op::Put(PutRequest {
                    key: k.as_bytes().to_vec().into(),
                    value: vec![b'v'; value_bytes].into(),
                    ..PutRequest::default()
                })),
            })
            .collect();
        let results = strata_tests::cluster::kv(addr)
            .await
            .batch_write(BatchWriteRequest {
                ops,
                consistency: Some(Consistency::named(level)),
            })
            .await
            .expect("batch")
            .into_inner()
            .results;
        assert!(results.iter().all(|r| matches!(
            r.outcome,
            Some(strata_proto::v1::write_result::Outcome::Context(_))
        )));
    }
    keys
}

/// Every key of `keys` that node `joiner` replicates is in its own store.
async fn joiner_holds(cluster: &Cluster, joiner: &str, index: usize, keys: &[String]) -> usize {
    let (ring, _) = cluster.ring().await.expect("ring");
    let me = strata_cluster::NodeId::new(joiner).expect("id");
    let mut held = 0;
    for key in keys {
        if ring
            .placement(strata_cluster::Token::of(key.as_bytes()), 3)
            .replicas
            .contains(&me)
        {
            assert!(
                !stored_versions(cluster.addr(index), key).await.is_empty(),
                "{joiner} lacks {key}"
            );
            held += 1;
        }
    }
    held
}

/// The join operation of the node at `addr` once it is streaming and has
/// finished at least `ranges` ranges.
async fn join_progress(addr: SocketAddr, ranges: u64) -> strata_proto::v1::Operation {
    change_progress(addr, OperationKind::Join, ranges).await
}

/// The operation of `kind` the node at `addr` runs, once it is streaming
/// and has finished at least `ranges` ranges.
async fn change_progress(
    addr: SocketAddr,
    kind: OperationKind,
    ranges: u64,
) -> strata_proto::v1::Operation {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    loop {
        if let Ok(ops) = operations(addr).await {
            let change = ops.into_iter().find(|o| o.kind == kind as i32);
            if let Some(op) = &change
                && op.ranges_total > 0
                && op.ranges_done >= ranges
            {
                return op.clone();
            }
            last = change;
        }
        assert!(
            Instant::now() < deadline,
            "the {kind:?} did not reach {ranges} ranges: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A joiner SIGKILLed mid-stream resumes after restart without streaming
/// again the ranges it had finished; a streaming source SIGKILLed
/// mid-range is replaced by another replica. The joiner ends up holding
/// every key it replicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_joiner_resumes_and_a_killed_source_is_replaced() {
    // Slow streaming (100 KB/s), so the join is caught in the middle.
    let mut args = ARGS.to_vec();
    args.extend(["--stream-bytes-per-sec", "100000"]);
    let mut cluster = Cluster::start(3, &args).await;
    let keys = load(cluster.addr(0), 3000, 512).await;

    let joiner = cluster.add();
    let before = join_progress(cluster.addr(joiner), 3).await;
    assert!(
        before.ranges_done < before.ranges_total,
        "caught mid-join: {before:?}"
    );
    cluster.crash(joiner);
    cluster.start_again(joiner);
    let resumed = join_progress(cluster.addr(joiner), 0).await;
    assert!(
        resumed.ranges_resumed >= before.ranges_done,
        "ranges finished before the kill are not streamed again: before {before:?}, after {resumed:?}"
    );
    assert_eq!(resumed.id, before.id, "the same operation, resumed");

    // Kill a streaming source mid-join: its ranges come from another
    // replica instead.
    let after_kill = join_progress(cluster.addr(joiner), resumed.ranges_done + 2).await;
    assert!(
        after_kill.ranges_done < after_kill.ranges_total,
        "still mid-join: {after_kill:?}"
    );
    cluster.crash(0);
    wait_for_state(&cluster, "node-3", NodeState::Normal).await;
    let op = finished_operation(cluster.addr(joiner), OperationKind::Join).await;
    assert_eq!(op.state, OperationState::Succeeded as i32, "{op:?}");
    let held = joiner_holds(&cluster, "node-3", joiner, &keys).await;
    assert!(held > keys.len() / 2, "node-3 holds {held} keys");
}

/// A node gone for good is removed from a live node: its ranges are copied
/// from the surviving replicas to their new owners, the hints held for it
/// go to their keys' replicas, every key ends on N replicas, and the
/// removed node, started again with its old data, refuses to serve. A
/// removal of a live node, or below N, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removenode_rereplicates_a_dead_nodes_ranges_and_the_node_cannot_return() {
    use strata_proto::v1::RemoveNodeRequest;
    let mut cluster = Cluster::start(4, ARGS).await;
    let mut keys = load(cluster.addr(0), 1500, 256).await;
    cluster.kill(3).await;
    // Written while node-3 is down: its copies are hints on the others.
    keys.extend(load_at(cluster.addr(0), "later", 300, 64, ConsistencyLevel::Quorum).await);
    let held = cluster.hints_pending().await;
    assert!(held > 0, "hints for node-3");

    let refused = admin(cluster.addr(0))
        .await
        .remove_node(RemoveNodeRequest {
            node_id: "node-1".to_owned(),
        })
        .await
        .expect_err("node-1 is up");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("decommission"), "{refused}");

    let op = admin(cluster.addr(0))
        .await
        .remove_node(RemoveNodeRequest {
            node_id: "node-3".to_owned(),
        })
        .await
        .expect("removal starts")
        .into_inner();
    assert_eq!(op.kind, OperationKind::RemoveNode as i32);
    // Named after the node removed, not the node asked (which runs it).
    assert!(op.id.starts_with("removenode-node-3-"), "{op:?}");
    let started = op.id;
    wait_for_state(&cluster, "node-3", NodeState::Left).await;
    let op = finished_operation(cluster.addr(0), OperationKind::RemoveNode).await;
    assert_eq!(op.state, OperationState::Succeeded as i32, "{op:?}");
    assert_eq!(op.id, started, "the id it was started under");
    assert!(op.ranges_total > 0 && op.keys_transferred > 0, "{op:?}");

    // Hints for a node that has left go to their keys' replicas, not
    // wait out the hint window (10 minutes here) for a node that will
    // never take them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pending = cluster.hints_pending().await;
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} of {held} hints still held for node-3"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every key is on the three remaining nodes, which agree.
    let values = cluster.final_values(keys.clone(), 3).await;
    assert!(
        keys.iter().all(|k| values[k].len() == 1),
        "every key kept its value"
    );

    let refused = admin(cluster.addr(0))
        .await
        .remove_node(RemoveNodeRequest {
            node_id: "node-2".to_owned(),
        })
        .await
        .expect_err("node-2 is up, and N = 3");
    assert_eq!(refused.code(), Code::FailedPrecondition);

    // The removed node comes back with its old data: it stops, saying why.
    cluster.start_again(3);
    let log = cluster.wait_for_exit(3).await;
    assert!(log.contains("wipe its data directory"), "{log}");
    // And the ring still routes without it.
    let ring = ring_at(cluster.addr(0)).await;
    let node3 = ring
        .nodes
        .iter()
        .find(|n| n.node_id == "node-3")
        .expect("known");
    assert_eq!(node3.state, NodeState::Left as i32);
    assert!(node3.tokens.is_empty(), "a member that left owns no tokens");
}

/// A leaver SIGKILLed mid-decommission, and the node running a removal
/// SIGKILLed mid-removal, each resume the same operation after restart
/// without streaming their finished ranges again, and finish: every key
/// ends up on the three remaining nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leaver_and_a_killed_removal_runner_resume_their_change() {
    use strata_proto::v1::RemoveNodeRequest;
    // Slow streaming (100 KB/s), so each change is caught in the middle.
    let mut args = ARGS.to_vec();
    args.extend(["--stream-bytes-per-sec", "100000"]);
    let mut cluster = Cluster::start(5, &args).await;
    let keys = load(cluster.addr(0), 3000, 512).await;

    admin(cluster.addr(4))
        .await
        .decommission(DecommissionRequest::default())
        .await
        .expect("decommission starts");
    resumes_after_a_kill(&mut cluster, 4, OperationKind::Decommission, "node-4").await;
    cluster.stop(4);

    cluster.kill(3).await;
    admin(cluster.addr(0))
        .await
        .remove_node(RemoveNodeRequest {
            node_id: "node-3".to_owned(),
        })
        .await
        .expect("removal starts");
    resumes_after_a_kill(&mut cluster, 0, OperationKind::RemoveNode, "node-3").await;

    assert_eq!(
        fewer_than_three_copies(&cluster, &keys).await,
        [],
        "keys with fewer than three copies"
    );
}

/// SIGKILLs node `runner` once its `kind` change has finished two ranges
/// (not all), starts it again and waits until `leaving` has left: the
/// same operation resumed, without redoing the ranges it had finished,
/// and succeeded.
async fn resumes_after_a_kill(
    cluster: &mut Cluster,
    runner: usize,
    kind: OperationKind,
    leaving: &str,
) {
    let before = change_progress(cluster.addr(runner), kind, 2).await;
    assert!(
        before.ranges_done < before.ranges_total,
        "caught mid-change: {before:?}"
    );
    cluster.crash(runner);
    cluster.start_again(runner);
    wait_for_state(cluster, leaving, NodeState::Left).await;
    let op = finished_operation(cluster.addr(runner), kind).await;
    assert_eq!(op.state, OperationState::Succeeded as i32, "{op:?}");
    assert_eq!(op.id, before.id, "the same operation, resumed");
    assert!(
        op.ranges_resumed >= before.ranges_done,
        "ranges finished before the kill are not streamed again: before {before:?}, after {op:?}"
    );
}

/// Two dead nodes removed at the same moment through two nodes: the
/// smaller id's removal goes first and the other waits for it, and every
/// key ends up on all three survivors (5 nodes, N = 3: a key may lose two
/// of its copies with the dead nodes, and the two removals together must
/// bring it back to three). (Before the wait each removal usually saw the
/// other's departure before it computed its ranges, and this passed too;
/// the wait makes that order certain: `changes/in_progress.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_removals_asked_at_once_leave_every_key_with_three_copies() {
    use strata_proto::v1::RemoveNodeRequest;
    let mut cluster = Cluster::start(5, ARGS).await;
    let keys = load(cluster.addr(0), 600, 64).await;
    cluster.kill(3).await;
    cluster.kill(4).await;
    let remove = |via: usize, node: &str| {
        let addr = cluster.addr(via);
        let node_id = node.to_owned();
        async move {
            admin(addr)
                .await
                .remove_node(RemoveNodeRequest { node_id })
                .await
        }
    };
    let (first, second) = tokio::join!(remove(0, "node-4"), remove(1, "node-3"));
    first.expect("node-4's removal starts");
    second.expect("node-3's removal starts");
    wait_for_state(&cluster, "node-3", NodeState::Left).await;
    wait_for_state(&cluster, "node-4", NodeState::Left).await;
    for via in [0, 1] {
        let op = finished_operation(cluster.addr(via), OperationKind::RemoveNode).await;
        assert_eq!(op.state, OperationState::Succeeded as i32, "{op:?}");
    }
    assert_eq!(
        fewer_than_three_copies(&cluster, &keys).await,
        [],
        "keys with fewer than three copies"
    );
}

/// Nodes of different clusters never merge: a node with another
/// `--cluster-id` seeded with a member is ignored by gossip both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_never_merges() {
    let cluster = Cluster::start(2, ARGS).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = cluster.addr(0).to_string();
    let stranger = strata_tests::NodeProcess::start(
        &dir.path().join("stranger"),
        Some("stranger"),
        &[
            "--cluster-id",
            "another",
            "--seeds",
            &seed,
            "--gossip-interval-ms",
            "100",
        ],
    );
    // Twenty gossip rounds: plenty for a member to be heard.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        for addr in [cluster.addr(0), cluster.addr(1)] {
            let ring = admin(addr)
                .await
                .get_ring(GetRingRequest {})
                .await
                .expect("ring");
            assert!(
                ring.into_inner()
                    .nodes
                    .iter()
                    .all(|n| n.node_id != "stranger"),
                "the stranger joined the cluster's view"
            );
        }
        let ring = ring_at(stranger.addr()).await;
        assert_eq!(
            ring.nodes.len(),
            1,
            "the stranger sees only itself: {ring:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where `node` is in `via`'s ring: its gRPC address and whether it is
/// alive.
async fn ring_entry(via: SocketAddr, node: &str) -> Option<(String, bool)> {
    let ring = admin(via).await.get_ring(GetRingRequest {}).await.ok()?;
    ring.into_inner()
        .nodes
        .into_iter()
        .find(|n| n.node_id == node)
        .map(|n| (n.grpc_address, n.alive))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_under_a_running_nodes_id_stops_itself() {
    use strata_tests::NodeProcess;
    let dir = tempfile::tempdir().expect("tempdir");
    let flags = ["--gossip-interval-ms", "100", "--replication-factor", "2"];
    let a = NodeProcess::start(&dir.path().join("a"), Some("a"), &flags);
    let seed = a.addr().to_string();
    let mut joined = flags.to_vec();
    joined.extend(["--seeds", seed.as_str()]);
    let mut b = NodeProcess::start(&dir.path().join("b"), Some("b"), &joined);
    let original = b.addr().to_string();
    let via = a.addr();
    let wait_for = |what: &'static str, want: (String, bool)| async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = ring_entry(via, "b").await;
            if seen.as_ref() == Some(&want) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: b is {seen:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    wait_for("joined", (original.clone(), true)).await;

    // A copied config: the same id, another data directory and port.
    let mut twin = NodeProcess::start(&dir.path().join("b-again"), Some("b"), &joined);
    let log = exits_by_itself(&mut twin).await;
    assert!(
        log.contains("node b is already running at") && log.contains("--node-id"),
        "{log}"
    );
    assert!(
        b.exited().is_none(),
        "the node that was there first keeps running"
    );
    // (Whether b logged the twin depends on which of the two saw the
    // other beat for a whole window first: not asserted.)
    // Once the twin is gone, peers route to the running node again.
    wait_for("after the twin stopped", (original, true)).await;
}

/// Waits (bounded) for `node` to exit by itself and returns its log.
async fn exits_by_itself(node: &mut strata_tests::NodeProcess) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = node.exited() {
            break status;
        }
        assert!(Instant::now() < deadline, "kept running:\n{}", node.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!status.success(), "{status}");
    node.log()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_replication_factor_stops_itself() {
    use strata_tests::NodeProcess;
    let dir = tempfile::tempdir().expect("tempdir");
    let fast = ["--gossip-interval-ms", "100"];
    let mut a = NodeProcess::start(
        &dir.path().join("a"),
        Some("a"),
        &[fast[0], fast[1], "--replication-factor", "2"],
    );
    let seed = a.addr().to_string();
    let mut wrong = NodeProcess::start(
        &dir.path().join("b"),
        Some("b"),
        &[
            fast[0],
            fast[1],
            "--replication-factor",
            "3",
            "--seeds",
            &seed,
        ],
    );
    let log = exits_by_itself(&mut wrong).await;
    assert!(
        log.contains("this node runs with --replication-factor 3 and node a")
            && log.contains("with 2"),
        "{log}"
    );
    assert!(
        a.exited().is_none(),
        "the node that was there first keeps running"
    );
    // (Whether a logged it depends on b staying up long enough for a's
    // detector to call it live: not asserted.)
}

/// Two nodes that coordinate writes differently (one with
/// `--strict-quorum` and `--last-write-wins`) both keep serving, and each
/// says which peer differs and how: the flags are per coordinator, and a
/// rolling restart that changes them passes through such a mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_different_write_policies_say_so_and_keep_serving() {
    use strata_tests::NodeProcess;
    let dir = tempfile::tempdir().expect("tempdir");
    let common = ["--gossip-interval-ms", "100", "--replication-factor", "2"];
    let mut a = NodeProcess::start(&dir.path().join("a"), Some("a"), &common);
    let seed = a.addr().to_string();
    let mut args = common.to_vec();
    args.extend(["--seeds", &seed, "--strict-quorum", "--last-write-wins"]);
    let mut b = NodeProcess::start(&dir.path().join("b"), Some("b"), &args);
    let deadline = Instant::now() + Duration::from_secs(30);
    let said = |log: &str, peer: &str, theirs: &str| {
        log.lines().any(|l| {
            l.contains("another policy")
                && l.contains(&format!("peer={peer}"))
                && l.contains(theirs)
        })
    };
    while !(said(&a.log(), "b", "last-write-wins strict-quorum")
        && said(&b.log(), "a", "siblings sloppy-quorum"))
    {
        assert!(
            Instant::now() < deadline,
            "no warning within 30 s:\n{}\n---\n{}",
            a.log(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        a.exited().is_none() && b.exited().is_none(),
        "both keep serving"
    );
}

/// A cleanup running on a node (an operator's, or the one each node starts
/// by itself after a ring change) yields to a decommission of that node:
/// the decommission starts and finishes, the cleanup stops saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decommission_is_not_refused_for_a_cleanup_running_there() {
    use strata_proto::v1::CleanupRequest;
    let cluster = Cluster::start(4, ARGS).await;
    wait_for_state(&cluster, "node-3", NodeState::Normal).await;
    let mut node3 = admin(cluster.addr(3)).await;
    // The cleanup asks every member for its ring before it deletes
    // anything: the decommission, sent next on the same connection,
    // arrives while it runs.
    let cleanup = node3
        .cleanup(CleanupRequest {})
        .await
        .expect("cleanup starts")
        .into_inner();
    let op = node3
        .decommission(DecommissionRequest::default())
        .await
        .expect("a decommission is not refused for a cleanup")
        .into_inner();
    assert_eq!(op.kind, OperationKind::Decommission as i32);
    wait_for_state(&cluster, "node-3", NodeState::Left).await;
    let op = finished_operation(cluster.addr(3), OperationKind::Decommission).await;
    assert_eq!(op.state, OperationState::Succeeded as i32, "{op:?}");

    let ops = node3
        .get_progress(GetProgressRequest {
            operation_id: cleanup.id,
        })
        .await
        .expect("progress")
        .into_inner()
        .operations;
    let [cleanup] = ops.as_slice() else {
        panic!("the cleanup is remembered: {ops:?}");
    };
    let stopped = cleanup.state == OperationState::Failed as i32
        && cleanup.error.contains("stopped for a topology change");
    assert!(
        cleanup.state == OperationState::Succeeded as i32 || stopped,
        "{cleanup:?}"
    );
}

/// A founding member loses its data directory and starts again under the
/// same id and flags (`--initial-cluster` still names it): it does not
/// serve its ranges empty but joins again under its tokens and streams
/// them back, then reads at ONE through it find every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_founder_whose_data_directory_is_lost_streams_its_ranges_back() {
    let mut cluster = Cluster::start(3, ARGS).await;
    let keys = load(cluster.addr(0), 600, 128).await;
    cluster.crash(2);
    cluster.wipe(2);
    cluster.start_again(2);
    streamed_back(&cluster, 2, &keys).await;
}

/// The same after a restart of the whole cluster: gossip no longer
/// remembers node-2's earlier process, but the others' `RING` files
/// record its incarnation, so they tell it its data is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_founder_wiped_while_the_whole_cluster_was_down_streams_its_ranges_back() {
    let mut cluster = Cluster::start(3, ARGS).await;
    let keys = load(cluster.addr(0), 600, 128).await;
    for i in 0..3 {
        cluster.crash(i);
    }
    cluster.wipe(2);
    cluster.start_again(0);
    cluster.start_again(1);
    cluster.start_again(2);
    streamed_back(&cluster, 2, &keys).await;
}

/// A node beyond the founders, started with `--auto-bootstrap false` and
/// joined when asked (as the operator runs pods), whose volume is lost:
/// it starts tokenless, waiting to be asked to join, and the others tell
/// it that it owned ranges; it joins by itself and streams them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_node_whose_volume_is_lost_joins_again_by_itself() {
    let mut args = ARGS.to_vec();
    args.extend(["--auto-bootstrap", "false"]);
    // Two founders and N = 3: once node-2 joins, every node holds every key.
    let mut cluster = Cluster::start(2, &args).await;
    let joiner = cluster.add();
    admin(cluster.addr(joiner))
        .await
        .join(JoinRequest {})
        .await
        .expect("join starts");
    wait_for_state(&cluster, "node-2", NodeState::Normal).await;
    let keys = load(cluster.addr(0), 600, 128).await;
    cluster.crash(2);
    cluster.wipe(2);
    cluster.start_again(2);
    streamed_back(&cluster, 2, &keys).await;
}

/// Four nodes, N = 3, no hints, read repair or anti-entropy to heal
/// anything: node-1 is down while keys are written at QUORUM (so a key
/// node-1 and node-2 both replicate is on node-2 and one other node
/// only), then node-2 loses its data directory and node-1 comes back
/// (when `bring_back`). Returns the keys, once node-2 started again.
async fn lose_a_disk_after_writes_missed_a_replica(
    args: &[&str],
    bring_back: bool,
) -> (Cluster, Vec<String>) {
    let mut args = args.to_vec();
    args.extend(["--max-hint-bytes", "0", "--read-repair-chance", "0"]);
    let mut cluster = Cluster::start(4, &args).await;
    cluster.crash(1);
    let keys = load_at(cluster.addr(0), "bulk", 400, 128, ConsistencyLevel::Quorum).await;
    cluster.crash(2);
    cluster.wipe(2);
    if bring_back {
        cluster.start_again(1);
        cluster.wait_until_alive(3).await;
    }
    cluster.start_again(2);
    (cluster, keys)
}

/// How many running nodes store `key`.
/// A node whose tables are damaged can still leave: a range it cannot read
/// comes from the range's other replicas (before, its decommission retried
/// that range forever). Every key ends on its three replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_damaged_table_can_still_be_decommissioned() {
    let mut cluster = Cluster::start(4, ARGS).await;
    let keys = load(cluster.addr(0), 400, 100).await;
    // A restart replays node-3's log into a table; then damage it.
    let dir = cluster.process(3).data_dir().to_owned();
    cluster.kill(3).await;
    cluster.restart(3).await;
    cluster.kill(3).await;
    assert!(
        strata_tests::cluster::damage_tables(&dir) > 0,
        "node-3 has tables"
    );
    cluster.restart(3).await;

    admin(cluster.addr(3))
        .await
        .decommission(DecommissionRequest::default())
        .await
        .expect("decommission starts");
    wait_for_state(&cluster, "node-3", NodeState::Left).await;
    let op = finished_operation(cluster.addr(3), OperationKind::Decommission).await;
    assert_eq!(op.state, OperationState::Succeeded as i32, "{op:?}");
    assert!(
        cluster.log(3).contains("corrupt"),
        "node-3 met the damage while streaming"
    );
    cluster.crash(3);
    for key in &keys {
        assert_eq!(copies(&cluster, key).await, 3, "{key}");
    }
}

/// The keys of `keys` that fewer than three running nodes hold, with how
/// many do.
async fn fewer_than_three_copies(cluster: &Cluster, keys: &[String]) -> Vec<(String, usize)> {
    let mut short = Vec::new();
    for key in keys {
        let held = copies(cluster, key).await;
        if held < 3 {
            short.push((key.clone(), held));
        }
    }
    short
}

async fn copies(cluster: &Cluster, key: &str) -> usize {
    let mut held = 0;
    for (_, addr) in cluster.running() {
        held += usize::from(!stored_versions(addr, key).await.is_empty());
    }
    held
}

/// A node that lost its data copies each range back from every other
/// replica, not from one: every acknowledged write is on two nodes again,
/// including those the lost copy and one other replica held. (As a plain
/// joiner it copied from the member taking its place among the current
/// replicas, which never held the range: such writes stayed on one node.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_data_gets_every_write_back_from_every_other_replica() {
    let (cluster, keys) = lose_a_disk_after_writes_missed_a_replica(ARGS, true).await;
    let op = finished_operation(cluster.addr(2), OperationKind::Join).await;
    assert_eq!(op.state, OperationState::Succeeded as i32, "{op:?}");
    wait_for_state(&cluster, "node-2", NodeState::Normal).await;
    let mut single = Vec::new();
    for key in &keys {
        if copies(&cluster, key).await < 2 {
            single.push(key.clone());
        }
    }
    assert_eq!(single, Vec::<String>::new(), "keys left on one node");
}

/// A replica that stays down does not hold a rejoin up for good: once
/// `--rejoin-source-wait-secs` passed, ranges are copied back from the
/// replicas that are up, with a warning, and every key is on two nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejoin_goes_on_without_a_replica_that_stays_down() {
    let mut args = ARGS.to_vec();
    args.extend(["--rejoin-source-wait-secs", "2"]);
    let (cluster, keys) = lose_a_disk_after_writes_missed_a_replica(&args, false).await;
    let op = finished_operation(cluster.addr(2), OperationKind::Join).await;
    assert_eq!(op.state, OperationState::Succeeded as i32, "{op:?}");
    let mut single = Vec::new();
    for key in &keys {
        if copies(&cluster, key).await < 2 {
            single.push(key.clone());
        }
    }
    assert_eq!(single, Vec::<String>::new(), "keys left on one node");
    // Said once for the replica left out, not once per range.
    let log = cluster.log(2);
    let said = log
        .matches("copying ranges back without a replica down for longer than")
        .count();
    assert_eq!(said, 1, "{log}");
}

/// While a node that lost its data copies its ranges back, QUORUM reads
/// go to the other replicas and find every write: it is not read, and the
/// member after it on the ring (which never held its ranges) is not read
/// in its stead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_reads_find_every_write_while_a_lost_node_copies_its_ranges_back() {
    let mut args = ARGS.to_vec();
    // About 100 KB to copy back at 4 KB/s: half a minute.
    args.extend(["--stream-bytes-per-sec", "4000"]);
    let (cluster, keys) = lose_a_disk_after_writes_missed_a_replica(&args, true).await;
    // Reads through node-2 need it to have heard the others alive: a node
    // just started counts a member it has not heard yet as down (on a
    // loaded machine that took longer than the reads below once).
    cluster.wait_until_alive(4).await;
    let running = || async {
        operations(cluster.addr(2)).await.is_ok_and(|ops| {
            ops.iter().any(|o| {
                o.kind == OperationKind::Join as i32 && o.state == OperationState::Running as i32
            })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !running().await {
        assert!(Instant::now() < deadline, "node-2 never started its rejoin");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut missed = Vec::new();
    for (n, key) in keys.iter().enumerate() {
        // Through every node, node-2 included.
        let through = cluster.addr([2, 3, 0, 1][n % 4]);
        let got = strata_tests::cluster::kv(through)
            .await
            .get(strata_proto::v1::GetRequest {
                key: key.as_bytes().to_vec().into(),
                consistency: Some(strata_proto::v1::Consistency::named(
                    ConsistencyLevel::Quorum,
                )),
            })
            .await
            .expect("a QUORUM read while a replica rejoins")
            .into_inner();
        if got.siblings.is_empty() {
            missed.push(key.clone());
        }
    }
    assert_eq!(
        missed,
        Vec::<String>::new(),
        "QUORUM reads that missed a write"
    );
    assert!(
        running().await,
        "the reads ran while node-2 copied its ranges back"
    );
}

/// From its first moment up, a node that lost its data coordinates no
/// QUORUM read with itself among the replicas: a read through it is
/// refused (too few of the others seen up yet) or finds the write. It
/// knows it lost its data from gossip's memory of its earlier process,
/// before any member's mark comes back to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_reads_through_a_node_that_lost_its_data_never_miss_from_its_start() {
    let (cluster, keys) = lose_a_disk_after_writes_missed_a_replica(ARGS, true).await;
    let mut client = strata_tests::cluster::kv(cluster.addr(2)).await;
    let (mut found, mut refused, mut missed) = (0, 0, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rejoin_seen = false;
    for key in keys.iter().cycle() {
        let read = client
            .get(strata_proto::v1::GetRequest {
                key: key.as_bytes().to_vec().into(),
                consistency: Some(strata_proto::v1::Consistency::named(
                    ConsistencyLevel::Quorum,
                )),
            })
            .await;
        match read {
            Ok(got) if got.get_ref().siblings.is_empty() => missed.push(key.clone()),
            Ok(_) => found += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                refused += 1;
            }
        }
        if (found + refused + missed.len()) % 50 == 0 {
            // Read on until its rejoin has begun and 200 reads through it
            // were answered.
            rejoin_seen = rejoin_seen
                || operations(cluster.addr(2))
                    .await
                    .is_ok_and(|ops| ops.iter().any(|o| o.kind == OperationKind::Join as i32));
            if (rejoin_seen && found >= 200) || Instant::now() > deadline {
                break;
            }
        }
    }
    println!("through node-2 from its start: {found} found, {refused} refused");
    assert!(rejoin_seen, "node-2 never began its rejoin");
    assert_eq!(
        missed,
        Vec::<String>::new(),
        "QUORUM reads that missed a write"
    );
    assert!(
        found >= 200,
        "only {found} reads through node-2 were answered"
    );
}

/// Waits until node `i` holds every key again, by a join that streamed
/// them all, and serves them at ONE.
async fn streamed_back(cluster: &Cluster, i: usize, keys: &[String]) {
    let name = format!("node-{i}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut missing = 0;
        for key in keys {
            missing += usize::from(stored_versions(cluster.addr(i), key).await.is_empty());
        }
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{name} still lacks {missing} of {} keys",
            keys.len()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let op = finished_operation(cluster.addr(i), OperationKind::Join).await;
    assert_eq!(op.state, OperationState::Succeeded as i32, "{op:?}");
    // Three nodes, N = 3: each key copied from both other replicas.
    assert_eq!(op.keys_transferred, 2 * keys.len() as u64, "{op:?}");
    wait_for_state(cluster, &name, NodeState::Normal).await;
    let one = Some(strata_proto::v1::Consistency {
        level: Some(strata_proto::v1::consistency::Level::Named(
            strata_proto::v1::ConsistencyLevel::One as i32,
        )),
    });
    for key in keys.iter().take(50) {
        let got = strata_tests::cluster::kv(cluster.addr(i))
            .await
            .get(strata_proto::v1::GetRequest {
                key: key.as_bytes().to_vec().into(),
                consistency: one,
            })
            .await
            .expect("get at ONE")
            .into_inner();
        assert_eq!(got.siblings.len(), 1, "{key} at ONE through {name}");
    }
}

/// Ctrl-C on `strata join` stops following the join, not the join: the
/// CLI says it goes on and how to follow it again (exit status 130), and
/// the node is still streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_following_a_join_not_the_join() {
    // Slow streaming (2 KB/s of ~75 KB): the join runs for half a minute.
    let mut args = ARGS.to_vec();
    args.extend([
        "--auto-bootstrap",
        "false",
        "--stream-bytes-per-sec",
        "2000",
    ]);
    let mut cluster = Cluster::start(3, &args).await;
    load(cluster.addr(0), 600, 128).await;
    let joiner = cluster.add();
    let mut join = strata_tests::interrupt::Interruptible::spawn(
        std::process::Command::new(strata_tests::workspace_binary("strata")).args([
            "-e",
            &cluster.addr(joiner).to_string(),
            "join",
        ]),
    );
    // Following: the join is running on the node.
    join_progress(cluster.addr(joiner), 1).await;
    let out = join.interrupt(Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("it goes on on node-3") && stderr.contains("strata progress --node node-3"),
        "{stderr}"
    );
    let ops = operations(cluster.addr(joiner)).await.expect("progress");
    assert!(
        ops.iter()
            .any(|o| o.kind == OperationKind::Join as i32
                && o.state == OperationState::Running as i32),
        "the join goes on: {ops:?}"
    );
}
