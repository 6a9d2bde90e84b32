//! A node that is up but slow (here: stopped 400 ms of every 500, never
//! long enough for gossip, with a high phi threshold, or the client's
//! keep-alive to give up on it) keeps answering, so nothing marks it down
//! or suspect. The client must still send its keys' requests to the
//! other replicas first once its answers have shown it slow.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use strata_client::{Client, parse_consistency};
use strata_tests::Cluster;
use strata_tests::scenario::ARGS;

/// Stops and continues `pid` until `stop` is set; leaves it running.
fn slow_down(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let signal = move |s: &str| {
        let _ = Command::new("kill").args([s, &pid.to_string()]).status();
    };
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            signal("-STOP");
            std::thread::sleep(Duration::from_millis(400));
            signal("-CONT");
            std::thread::sleep(Duration::from_millis(100));
        }
        signal("-CONT");
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_sends_a_slow_node_s_keys_to_other_replicas_first() {
    let args = [ARGS, &["--phi-threshold", "1000"]].concat();
    let cluster = Cluster::start(3, &args).await;
    let (_, seed) = cluster.running()[0];
    let slow = cluster.addr(2).to_string();
    let client = Client::connect(&seed.to_string()).await.expect("connect");
    let quorum = Some(parse_consistency("quorum").expect("level"));
    let keys: Vec<Vec<u8>> = (0..48).map(|i| format!("slow-{i}").into_bytes()).collect();
    let first_on_slow = keys
        .iter()
        .find(|k| client.nodes_for(k).first() == Some(&slow))
        .expect("some key's first replica is node-2")
        .clone();

    let stop = Arc::new(AtomicBool::new(false));
    let slowing = slow_down(cluster.process(2).pid(), Arc::clone(&stop));
    // Eight workers write every key for a few seconds, as an application
    // would; a third of the keys go to node-2 first.
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (client, keys) = (client.clone(), keys.clone());
            tokio::spawn(async move {
                for round in 0..6 {
                    for key in keys.iter().skip(w * 6).take(6) {
                        client
                            .put(
                                key.clone(),
                                format!("{round}").into_bytes(),
                                Vec::new(),
                                quorum,
                            )
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    let mut failed = Vec::new();
    for worker in workers {
        if let Err(e) = worker.await.expect("worker") {
            failed.push(e);
        }
    }
    let order = client.nodes_for(&first_on_slow);
    stop.store(true, Ordering::Relaxed);
    slowing.join().expect("slowing thread");
    assert!(failed.is_empty(), "requests failed: {failed:?}");
    assert_ne!(
        order.first(),
        Some(&slow),
        "node-2 answers slowly but is still tried first: {order:?}"
    );
    assert!(
        order.contains(&slow),
        "node-2 is still a candidate (up, not suspect): {order:?}"
    );
}
