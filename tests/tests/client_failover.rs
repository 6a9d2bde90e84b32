//! The ring-aware client (`strata_client`) while a node is paused: it
//! connected when every node was up, so its ring sends a third of the keys
//! to the paused node first. A paused process accepts connections and
//! never answers; the client must move on to another replica, for writes
//! as for reads, and not fail those keys for as long as the pause lasts.
//! Admin calls to a paused endpoint must fail at the deadline, not hang.
//! A node killed with requests in flight costs the client no failed
//! request either: a connection lost mid-request is retried elsewhere.

use std::time::Duration;

use strata_client::{Client, ClientOptions, parse_consistency};
use strata_tests::Cluster;
use strata_tests::scenario::ARGS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_reads_move_past_a_paused_node() {
    let cluster = Cluster::start(3, ARGS).await;
    let (_, seed) = cluster.running()[0];
    let options = ClientOptions {
        timeout: Duration::from_secs(1),
        ..ClientOptions::default()
    };
    let client = Client::connect_with(&seed.to_string(), options.clone())
        .await
        .expect("connect");
    // A second client whose endpoint is the node about to be paused.
    let (_, paused_addr) = cluster.running()[2];
    let through_paused = Client::connect_with(&paused_addr.to_string(), options.clone())
        .await
        .expect("connect");
    let quorum = Some(parse_consistency("quorum").expect("level"));
    let key = |i: u32| format!("failover-{i}").into_bytes();
    client
        .put(key(0), b"before".to_vec(), Vec::new(), quorum)
        .await
        .expect("put before the pause");

    cluster.pause(2);
    // Every key, whichever node the client's ring puts first: those on
    // node-2 get no answer within a second and go to the next replica.
    for i in 1..=24 {
        client
            .put(key(i), format!("v{i}").into_bytes(), Vec::new(), quorum)
            .await
            .unwrap_or_else(|e| panic!("put {i} while node-2 is paused: {e}"));
    }
    for i in 1..=24 {
        let got = client
            .get(key(i), quorum)
            .await
            .unwrap_or_else(|e| panic!("get {i} while node-2 is paused: {e}"));
        let values: Vec<&[u8]> = got.siblings.iter().map(|s| &s.value[..]).collect();
        assert_eq!(values, [format!("v{i}").as_bytes()], "key {i}");
    }
    // Admin calls to the paused endpoint fail at the attempt deadline
    // instead of hanging.
    for (call, result) in [
        (
            "ping",
            tokio::time::timeout(Duration::from_secs(5), through_paused.ping(Vec::new()))
                .await
                .map(|r| r.map(drop)),
        ),
        (
            "status",
            tokio::time::timeout(Duration::from_secs(5), through_paused.cluster_status())
                .await
                .map(|r| r.map(drop)),
        ),
    ] {
        let answer = result.unwrap_or_else(|_| panic!("{call} hung on the paused node"));
        let err = answer.expect_err("the paused node cannot answer");
        // The attempt's deadline or the connection's keep-alive, whichever
        // comes first; either way the error names the node.
        assert!(
            err.to_string().contains(&paused_addr.to_string()),
            "{call}: {err}"
        );
        println!("{call} through the paused node: {err}");
    }

    // Several endpoints: the first that answers becomes the seed, past a
    // paused node and a closed port.
    let (_, live) = cluster.running()[1];
    let several = format!("{paused_addr}, 127.0.0.1:1 ,{live}");
    let client = Client::connect_with(&several, options.clone())
        .await
        .unwrap_or_else(|e| panic!("connect through {several}: {e}"));
    let pong = client.ping(Vec::new()).await.expect("ping the seed");
    assert_eq!(pong.node_id, "node-1", "the live endpoint is the seed");
    let err = Client::connect_with(&format!("{paused_addr},127.0.0.1:1"), options.clone())
        .await
        .expect_err("no endpoint answers");
    let message = err.to_string();
    assert!(
        message.starts_with("no endpoint answered")
            && message.contains(&paused_addr.to_string())
            && message.contains("127.0.0.1:1"),
        "each endpoint's failure is named: {message}"
    );
    cluster.resume(2);
}

/// Sixteen workers write and read their own keys while node-2 is killed
/// (SIGKILL) under them: the requests in flight to it lose their
/// connection and go to another replica; with two of three replicas left,
/// every request at QUORUM succeeds and every read sees its write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_requests_in_flight_fails_none_of_them() {
    let mut cluster = Cluster::start(3, ARGS).await;
    let (_, seed) = cluster.running()[0];
    let client = Client::connect_with(&seed.to_string(), ClientOptions::default())
        .await
        .expect("connect");
    through_a_kill(&mut cluster, &client, 2).await;
}

/// The same through one node (`--direct`, as behind a port-forward): of
/// four nodes at N = 3 it coordinates some keys and forwards the others'
/// writes to a replica; a forward whose replica is killed mid-request goes
/// to the next replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_under_forwarded_writes_fails_none_of_them() {
    let mut cluster = Cluster::start(4, ARGS).await;
    let (_, seed) = cluster.running()[0];
    let options = ClientOptions {
        direct: true,
        ..ClientOptions::default()
    };
    let client = Client::connect_with(&seed.to_string(), options)
        .await
        .expect("connect");
    through_a_kill(&mut cluster, &client, 2).await;
}

/// A paused node (SIGSTOP: the kernel still accepts its connections) with
/// a client whose deadline is a minute: the requests caught on it must
/// move on once the client notices the silence (HTTP/2 keep-alive, ~2 s),
/// not at the deadline; the client then sends the paused node's keys
/// elsewhere first, although the ring still says the node is up (the
/// failure detector here never convicts it: gossip takes seconds to, and
/// a partition can keep it from doing so); and once the node is back, the
/// client's ring (fetched again every few seconds without any error)
/// sends its keys to it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_costs_requests_seconds_not_the_client_deadline() {
    let args = [ARGS, &["--phi-threshold", "1000"]].concat();
    let cluster = Cluster::start(3, &args).await;
    let (_, seed) = cluster.running()[0];
    let paused = cluster.addr(2).to_string();
    let options = ClientOptions {
        timeout: Duration::from_secs(60),
        ..ClientOptions::default()
    };
    let client = Client::connect_with(&seed.to_string(), options.clone())
        .await
        .expect("connect");
    let quorum = Some(parse_consistency("quorum").expect("level"));
    let keys: Vec<Vec<u8>> = (0..48)
        .map(|i| format!("paused-{i}").into_bytes())
        .collect();
    let first_on_paused = keys
        .iter()
        .find(|k| client.nodes_for(k).first() == Some(&paused))
        .expect("some key's first replica is node-2")
        .clone();
    for key in &keys {
        client
            .put(key.clone(), b"before".to_vec(), Vec::new(), quorum)
            .await
            .expect("put before the pause");
    }

    cluster.pause(2);
    // Sixteen workers read and write every key, as an application would
    // keep doing: a third of the keys go to node-2 first.
    let started = std::time::Instant::now();
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let (client, keys) = (client.clone(), keys.clone());
            tokio::spawn(async move {
                for key in keys.iter().skip(w * 3).take(3) {
                    let got = client
                        .get(key.clone(), quorum)
                        .await
                        .map_err(|e| e.to_string())?;
                    client
                        .put(
                            key.clone(),
                            b"during".to_vec(),
                            got.context.to_vec(),
                            quorum,
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker").expect("no request failed");
    }
    let took = started.elapsed();
    println!("96 requests with node-2 paused took {took:?}");
    assert!(
        took < Duration::from_secs(15),
        "96 requests took {took:?} with node-2 paused: they waited on it far longer than \
         its silence takes to notice"
    );
    let order = client.nodes_for(&first_on_paused);
    assert_eq!(
        order.last(),
        Some(&paused),
        "node-2 is tried last: {order:?}"
    );
    // A client given only the paused node is told why it cannot start.
    let err = Client::connect_with(&paused, options.clone())
        .await
        .expect_err("the paused node cannot be a seed");
    assert!(
        matches!(err, strata_client::Error::Silent { .. }),
        "a paused seed is named as such: {err}"
    );

    cluster.resume(2);
    cluster.wait_until_alive(3).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        // Requests keep flowing, none failing; the ring refreshes itself.
        let got = client
            .get(first_on_paused.clone(), quorum)
            .await
            .expect("get after the pause");
        let values: Vec<&[u8]> = got.siblings.iter().map(|s| &s.value[..]).collect();
        assert_eq!(values, [&b"during"[..]]);
        if client.nodes_for(&first_on_paused).first() == Some(&paused) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the client never sent node-2 its keys again: {:?}",
            client.nodes_for(&first_on_paused)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A client that learned a node was down (from the ring) sends it requests
/// again once it is back, without an error to prompt it: the client
/// fetches the ring again every few seconds. Otherwise a node restarted
/// after a failure would coordinate none of its keys' requests for as long
/// as the client lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sends_requests_to_a_node_again_once_it_is_back() {
    let cluster = Cluster::start(3, ARGS).await;
    let (_, seed) = cluster.running()[0];
    let back = cluster.addr(2).to_string();
    let client = Client::connect(&seed.to_string()).await.expect("connect");
    let quorum = Some(parse_consistency("quorum").expect("level"));
    let key = (0..64)
        .map(|i| format!("back-{i}").into_bytes())
        .find(|k| client.nodes_for(k).first() == Some(&back))
        .expect("some key's first replica is node-2");

    cluster.pause(2);
    cluster.wait_until_alive_among(&[0, 1], 2).await;
    assert!(client.refresh_ring().await, "the seed answers");
    let order = client.nodes_for(&key);
    assert_eq!(order.last(), Some(&back), "down: tried last: {order:?}");
    cluster.resume(2);
    cluster.wait_until_alive(3).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while client.nodes_for(&key).first() != Some(&back) {
        assert!(
            std::time::Instant::now() < deadline,
            "the client never took node-2 back: {:?}",
            client.nodes_for(&key)
        );
        client.get(key.clone(), quorum).await.expect("get");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A node that sees too few of a key's replicas up refuses a write before
/// writing anything: one cut off from its peers, as here, or one that has
/// just restarted and not heard from them yet. Other coordinators may see
/// more, so the client tries the next replica (which it can reach) rather
/// than failing the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_for_too_few_replicas_up_goes_to_the_next_replica() {
    let cluster = Cluster::start(3, ARGS).await;
    let (_, cut_off) = cluster.running()[2];
    let (_, other) = cluster.running()[0];
    let client = Client::connect(&cut_off.to_string())
        .await
        .expect("connect");
    cluster.partition(2);
    cluster.wait_until_alive_among(&[2], 1).await;
    let quorum = Some(parse_consistency("quorum").expect("level"));
    let key = |i: u32| format!("cut-off-{i}").into_bytes();
    for i in 0..12 {
        client
            .put(key(i), b"written".to_vec(), Vec::new(), quorum)
            .await
            .unwrap_or_else(|e| panic!("put {i}: {e}"));
    }
    // Written where the client's retry went: a quorum of the others.
    let reader = Client::connect(&other.to_string()).await.expect("connect");
    for i in 0..12 {
        let got = reader.get(key(i), quorum).await.expect("get");
        let values: Vec<&[u8]> = got.siblings.iter().map(|s| &s.value[..]).collect();
        assert_eq!(values, [&b"written"[..]], "key {i}");
    }
}

/// Sixteen workers put and get their own keys at QUORUM through `client`;
/// node `victim` is killed once 200 rounds are done. Every request must
/// succeed and every read see its own write, once.
async fn through_a_kill(cluster: &mut Cluster, client: &Client, victim: usize) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let quorum = Some(parse_consistency("quorum").expect("level"));
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|w| {
            let (client, done) = (client.clone(), Arc::clone(&done));
            tokio::spawn(async move {
                for i in 0..60 {
                    let key = format!("killed-{w}-{i}").into_bytes();
                    let value = format!("v{w}-{i}").into_bytes();
                    client
                        .put(key.clone(), value.clone(), Vec::new(), quorum)
                        .await
                        .map_err(|e| format!("put {w}/{i}: {e}"))?;
                    let got = client
                        .get(key, quorum)
                        .await
                        .map_err(|e| format!("get {w}/{i}: {e}"))?;
                    let values: Vec<&[u8]> = got.siblings.iter().map(|s| &s.value[..]).collect();
                    if values != [&value[..]] {
                        return Err(format!("get {w}/{i} read {values:?}"));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    // Kill it mid-run, with requests in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::Relaxed) < 200 {
        assert!(std::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.crash(victim);
    let killed_at = done.load(Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker").expect("no request failed");
    }
    assert!(
        killed_at < 16 * 60,
        "the kill came while the workers ran ({killed_at} done)"
    );
}
