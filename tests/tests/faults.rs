//! Fault-injection scenarios on real node processes: crashes, a
//! partition, a lost disk and a paused process, while clients read and
//! write. Each ends with heal, hint replay and repair, then checks that no
//! acknowledged write was lost and that every replica has the same Merkle
//! roots. Each prints a report line (run with `--nocapture` to see it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_proto::v1::{Consistency, ConsistencyLevel, GetRequest, PutRequest};
use strata_tests::Cluster;
use strata_tests::cluster::{delete_at_quorum, kv, stored_versions};
use strata_tests::scenario::{ARGS, Clients, endpoints, keys, quorum, report, set, settle};
use strata_tests::workload::{Endpoints, Workload};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_one_of_three_during_quorum_writes_and_restart() {
    let mut cluster = Cluster::start(3, ARGS).await;
    let all: Vec<SocketAddr> = cluster.running().iter().map(|(_, a)| *a).collect();
    let lists: Vec<Endpoints> = (0..3).map(|_| endpoints(&all)).collect();
    let clients = Clients::start(&lists, quorum());
    tokio::time::sleep(Duration::from_secs(2)).await;

    cluster.kill(2).await;
    for e in &lists {
        set(e, &all[..2]);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let hints = cluster.hints_pending().await;
    assert!(hints > 0, "the live nodes hold hints for node-2");

    cluster.restart(2).await;
    let healed = Instant::now();
    let all: Vec<SocketAddr> = cluster.running().iter().map(|(_, a)| *a).collect();
    for e in &lists {
        set(e, &all);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let history = clients.stop().await;

    let converged = settle(&cluster, healed).await;
    let verdict = history.check(&cluster.final_values(keys(), 3).await);
    println!("scenario 1: {hints} hints held while node-2 was down, all replayed");
    report("scenario 1 (kill and restart)", &verdict, converged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_one_node_while_both_sides_write_at_one() {
    let cluster = Cluster::start(3, ARGS).await;
    let all: Vec<SocketAddr> = cluster.running().iter().map(|(_, a)| *a).collect();
    // Two clients on the majority side, one on the isolated node.
    let lists = [
        endpoints(&all[..2]),
        endpoints(&all[..2]),
        endpoints(&all[2..]),
    ];
    let one = Workload {
        read: ConsistencyLevel::One,
        write: ConsistencyLevel::One,
        keys: 20,
        ..quorum()
    };
    let clients = Clients::start(&lists, one);
    tokio::time::sleep(Duration::from_secs(1)).await;

    cluster.partition(2);
    tokio::time::sleep(Duration::from_secs(30)).await;
    // Stop writing before healing, so the siblings both sides made stay
    // for the checker to see.
    let history = clients.stop().await;
    cluster.heal();
    let healed = Instant::now();
    cluster.wait_until_alive(3).await;

    let converged = settle(&cluster, healed).await;
    let keys = (0..20).map(|i| format!("key-{i}"));
    let verdict = history.check(&cluster.final_values(keys, 3).await);
    report("scenario 2 (30 s partition, ONE)", &verdict, converged);
    assert!(
        verdict.keys_with_siblings > 0,
        "concurrent writes on both sides survive as siblings"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wipe_one_node_and_repair_restores_it_and_deletes_stay() {
    let mut cluster = Cluster::start(3, ARGS).await;
    let all: Vec<SocketAddr> = cluster.running().iter().map(|(_, a)| *a).collect();
    let lists: Vec<Endpoints> = (0..2).map(|_| endpoints(&all[..2])).collect();
    let clients = Clients::start(&lists, quorum());

    // Keys written then deleted (with their context), every node up.
    let a = all[0];
    let quorum_level = Some(Consistency::named(ConsistencyLevel::Quorum));
    for i in 0..20 {
        let key = format!("deleted-{i}").into_bytes();
        kv(a)
            .await
            .put(PutRequest {
                key: key.clone().into(),
                value: b"doomed".to_vec().into(),
                context: Vec::new().into(),
                consistency: quorum_level,
                request_id: 0,
            })
            .await
            .expect("put");
        delete_at_quorum(a, &key).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    cluster.kill(2).await;
    cluster.wipe(2);
    cluster.restart(2).await;
    let healed = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let history = clients.stop().await;

    let converged = settle(&cluster, healed).await;
    let verdict = history.check(&cluster.final_values(keys(), 3).await);
    report("scenario 3 (wiped data directory)", &verdict, converged);

    // Deleted keys stay deleted: the wiped node got the tombstones back,
    // not the values.
    let wiped = cluster.addr(2);
    let deleted: Vec<String> = (0..20).map(|i| format!("deleted-{i}")).collect();
    let last: HashMap<String, Vec<String>> = cluster.final_values(deleted.clone(), 3).await;
    for key in &deleted {
        assert!(last[key].is_empty(), "{key} came back: {:?}", last[key]);
        let versions = stored_versions(wiped, key).await;
        assert!(
            !versions.is_empty() && versions.iter().all(|v| v.tombstone),
            "{key} on the wiped node: {versions:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_a_node_past_the_failure_detector_and_resume() {
    let cluster = Cluster::start(3, ARGS).await;
    let all: Vec<SocketAddr> = cluster.running().iter().map(|(_, a)| *a).collect();
    let lists: Vec<Endpoints> = (0..3).map(|_| endpoints(&all[..2])).collect();
    let clients = Clients::start(&lists, quorum());
    tokio::time::sleep(Duration::from_secs(1)).await;

    cluster.pause(2);
    let paused = Instant::now();
    // The others convict it (gossip every 100 ms) and route around it.
    cluster.wait_until_alive_among(&[0, 1], 2).await;
    let detected = paused.elapsed();
    let before = clients.history.writes().len();
    clients.until_attempted(before, 40).await;
    let (attempted, acked) = clients.writes_since(before);
    assert!(
        acked * 10 >= attempted * 9,
        "writes while node-2 is paused: {acked} of {attempted} acknowledged"
    );

    cluster.resume(2);
    let healed = Instant::now();
    cluster.wait_until_alive(3).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let history = clients.stop().await;

    let converged = settle(&cluster, healed).await;
    let verdict = history.check(&cluster.final_values(keys(), 3).await);
    println!(
        "scenario 4: node-2 convicted {:.1} s after SIGSTOP; {acked} of {} writes acknowledged while it was paused",
        detected.as_secs_f64(),
        attempted
    );
    report(
        "scenario 4 (SIGSTOP past the detector)",
        &verdict,
        converged,
    );
}

/// Outside testing: 5 nodes (N=3) under QUORUM writes; two nodes are cut
/// off from the other three, SIGKILLed and restarted while still cut off.
/// Before the ring was persisted, each built a 2-member ring from what
/// gossip delivered, coordinated QUORUM writes for keys neither
/// replicates, and after the heal those acknowledged writes were gone.
/// Now they route with all five members (three of them down) and either
/// fail the write or leave hints for the real replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_behind_a_partition_routes_with_every_known_member() {
    let mut cluster = Cluster::start(5, ARGS).await;
    let addrs =
        |c: &Cluster, of: &[usize]| -> Vec<SocketAddr> { of.iter().map(|&i| c.addr(i)).collect() };
    let majority = [0, 1, 2];
    let minority = [3, 4];
    let to_majority = endpoints(&addrs(&cluster, &majority));
    let to_minority = endpoints(&addrs(&cluster, &minority));
    let lists = vec![
        Arc::clone(&to_majority),
        Arc::clone(&to_minority),
        Arc::clone(&to_minority),
    ];
    let clients = Clients::start(&lists, quorum());
    clients.until_attempted(0, 60).await;

    cluster.partition_groups(&[&majority, &minority]);
    cluster.wait_until_alive_among(&majority, 3).await;
    cluster.wait_until_alive_among(&minority, 2).await;
    for &i in &minority {
        cluster.crash(i);
    }
    for &i in &minority {
        cluster.start_again(i);
    }
    // The restarted nodes have new addresses: cut those too, and send the
    // minority's clients there.
    cluster.partition_groups(&[&majority, &minority]);
    set(&to_minority, &addrs(&cluster, &minority));
    cluster.wait_until_alive_among(&minority, 2).await;
    for &i in &minority {
        let ring = strata_tests::cluster::admin(cluster.addr(i))
            .await
            .get_ring(strata_proto::v1::GetRingRequest {})
            .await
            .expect("ring")
            .into_inner();
        assert_eq!(
            ring.nodes.len(),
            5,
            "node-{i} restarted behind the partition still knows every member"
        );
        assert_eq!(ring.nodes.iter().filter(|n| n.alive).count(), 2);
    }
    let restarted = clients.history.writes().len();
    clients.until_attempted(restarted, 80).await;

    cluster.heal();
    let healed = Instant::now();
    let all: Vec<SocketAddr> = cluster.running().iter().map(|(_, a)| *a).collect();
    set(&to_majority, &all);
    set(&to_minority, &all);
    cluster.wait_until_alive(5).await;
    let history = clients.stop().await;
    let converged = settle(&cluster, healed).await;
    let verdict = history.check(&cluster.final_values(keys(), 3).await);
    report(
        "restart of two nodes behind a partition (5 nodes, N=3, QUORUM)",
        &verdict,
        converged,
    );
}

/// A replica whose table is damaged (a flipped byte in a data block, as a
/// failing disk leaves it): the first read that meets the damage stops its
/// store from taking writes, its clients' writes are coordinated by
/// another replica instead of failing, its health turns NOT_SERVING, and
/// its status says a restart will not help and how to rebuild it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_table_stops_the_replica_not_its_clients_writes() {
    let mut cluster = Cluster::start(3, ARGS).await;
    let keys: Vec<String> = (0..200).map(|i| format!("damaged-{i}")).collect();
    let all = Some(Consistency::named(ConsistencyLevel::All));
    for key in &keys {
        kv(cluster.addr(0))
            .await
            .put(PutRequest {
                key: key.clone().into_bytes().into(),
                value: b"before".to_vec().into(),
                context: Vec::new().into(),
                consistency: all,
                request_id: 0,
            })
            .await
            .expect("put at ALL");
    }
    // A restart replays node-2's log into a table; then damage the first
    // data block of every table it has.
    let dir = cluster.process(2).data_dir().to_owned();
    cluster.kill(2).await;
    cluster.restart(2).await;
    cluster.kill(2).await;
    assert!(
        strata_tests::cluster::damage_tables(&dir) > 0,
        "node-2 has tables"
    );
    cluster.restart(2).await;
    let c = cluster.addr(2);

    // The key first in token order sits in the damaged block. Written
    // through node-2, a replica of every key at N = 3: node-2's read of it
    // meets the damage, and another replica coordinates the write.
    let first = keys
        .iter()
        .min_by_key(|k| strata_cluster::Token::of(k.as_bytes()).0)
        .expect("keys");
    let quorum_level = Some(Consistency::named(ConsistencyLevel::Quorum));
    kv(c)
        .await
        .put(PutRequest {
            key: first.clone().into_bytes().into(),
            value: b"after".to_vec().into(),
            context: Vec::new().into(),
            consistency: quorum_level,
            request_id: 0,
        })
        .await
        .expect("a write through the damaged replica is coordinated elsewhere");
    // Its other writes too, now that it refuses them.
    for key in keys.iter().take(20) {
        kv(c)
            .await
            .put(PutRequest {
                key: key.clone().into_bytes().into(),
                value: b"after".to_vec().into(),
                context: Vec::new().into(),
                consistency: quorum_level,
                request_id: 0,
            })
            .await
            .expect("forwarded");
    }
    // QUORUM reads through it find the new value on the other replicas.
    let read = kv(c)
        .await
        .get(GetRequest {
            key: first.clone().into_bytes().into(),
            consistency: quorum_level,
        })
        .await
        .expect("quorum read")
        .into_inner();
    let values: Vec<&[u8]> = read.siblings.iter().map(|s| &s.value[..]).collect();
    assert!(values.contains(&&b"after"[..]), "{values:?}");

    let status = strata_tests::cluster::admin(c)
        .await
        .get_node_status(strata_proto::v1::GetNodeStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    let failure = status.engine.expect("engine").failure;
    assert!(
        failure.contains("corrupt") && failure.contains("delete its data directory"),
        "{failure}"
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{c}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let serving = health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("health")
            .into_inner()
            .status;
        if serving == tonic_health::pb::health_check_response::ServingStatus::NotServing as i32 {
            break;
        }
        assert!(Instant::now() < deadline, "still serving: {serving}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Not ready, but alive: a restart would meet the damage again, so the
    // liveness check does not ask for one.
    let liveness = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: strata_proto::health::LIVENESS.into(),
        })
        .await
        .expect("liveness")
        .into_inner()
        .status;
    assert_eq!(
        liveness,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // The operator learns it through any other node.
    let failures = strata_operator::nodes::Nodes::new(Duration::from_secs(5), None, None)
        .storage(&[cluster.addr(0).to_string()])
        .await;
    assert_eq!(failures.len(), 3, "every node answered: {failures:?}");
    let failures: Vec<(String, String)> = failures
        .into_iter()
        .filter_map(|(node, failure)| Some((node, failure?)))
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "node-2");
    assert!(failures[0].1.contains("corrupt"), "{failures:?}");
}
