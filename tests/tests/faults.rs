//! Fault-injection scenarios on real node processes: crashes, a
//! partition, a lost disk and a paused process, while clients read and
//! write. Each ends with heal, hint replay and repair, then checks that no
//! acknowledged write was lost and that every replica has the same Merkle
//! roots. Each prints a report line (run with `--nocapture` to see it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_proto::v1::{Consistency, ConsistencyLevel, DeleteRequest, GetRequest, PutRequest};
use strata_tests::Cluster;
use strata_tests::cluster::{kv, stored_versions};
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
        let context = kv(a)
            .await
            .get(GetRequest {
                key: key.clone().into(),
                consistency: quorum_level,
            })
            .await
            .expect("get")
            .into_inner()
            .context;
        kv(a)
            .await
            .delete(DeleteRequest {
                key: key.into(),
                context,
                consistency: quorum_level,
                request_id: 0,
            })
            .await
            .expect("delete");
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
