//! Authenticated gossip: nodes sharing `--gossip-key-file` form a cluster;
//! a process with another key, or none, is never heard: it cannot join
//! the ring (and so cannot tell anyone a node is dead). Nor is one with
//! another `--cluster-id`. Each side says which setting differs.

use std::time::Duration;

use strata_tests::cluster::ring_at;
use strata_tests::{Cluster, NodeProcess};

#[tokio::test]
async fn only_nodes_with_the_key_are_heard() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("gossip.key");
    std::fs::write(&key, "this-is-the-cluster-gossip-key\n").expect("key");
    let other = dir.path().join("other.key");
    std::fs::write(&other, "this-is-some-other-gossip-key!\n").expect("key");
    let key_arg = key.display().to_string();
    // Forms, and agrees on who is alive, only if sealed gossip flows.
    let cluster = Cluster::start(
        3,
        &["--replication-factor", "3", "--gossip-key-file", &key_arg],
    )
    .await;
    let seeds = cluster.seeds();
    let other_arg = other.display().to_string();
    let strangers = [
        NodeProcess::start(
            &dir.path().join("stranger-key"),
            Some("stranger-key"),
            &[
                "--seeds",
                &seeds,
                "--gossip-key-file",
                &other_arg,
                "--gossip-interval-ms",
                "100",
            ],
        ),
        NodeProcess::start(
            &dir.path().join("stranger-none"),
            Some("stranger-none"),
            &["--seeds", &seeds, "--gossip-interval-ms", "100"],
        ),
        NodeProcess::start(
            &dir.path().join("stranger-cluster"),
            Some("stranger-cluster"),
            &[
                "--seeds",
                &seeds,
                "--gossip-key-file",
                &key_arg,
                "--cluster-id",
                "elsewhere",
                "--gossip-interval-ms",
                "100",
            ],
        ),
    ];
    // Every side says what differs: the members that another key (or
    // none) and another cluster id knock; each stranger that it hears no
    // one (after 40 rounds of 100 ms), and the one with the key but another
    // cluster id that the members refuse its id.
    let said = |log: &str, what: &str| log.contains(what);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let members_told = (0..3).all(|i| {
            let log = cluster.log(i);
            said(&log, "it has another --gossip-key-file, or none")
                && said(
                    &log,
                    "a peer gossips for cluster \"elsewhere\", this node for \"strata\"",
                )
        });
        let strangers_told = strangers
            .iter()
            .all(|s| said(&s.log(), "no other member heard for"))
            && said(
                &strangers[2].log(),
                "it belongs to another cluster than \"elsewhere\" (--cluster-id)",
            );
        if members_told && strangers_told {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every side said what differs; member log:\n{}\nstranger logs:\n{}\n{}\n{}",
            cluster.log(0),
            strangers[0].log(),
            strangers[1].log(),
            strangers[2].log(),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Said once a minute per peer, not for every datagram (chitchat's own
    // warning came twice a gossip round).
    let refusals = strangers[2]
        .log()
        .matches("belongs to another cluster")
        .count();
    assert_eq!(refusals, 3, "one per member it seeds from");
    assert!(!strangers[2].log().contains("wrong cluster"));
    for (_, addr) in cluster.running() {
        let ring = ring_at(addr).await;
        let ids: Vec<&str> = ring.nodes.iter().map(|n| n.node_id.as_str()).collect();
        assert_eq!(ids, ["node-0", "node-1", "node-2"], "{addr}");
        assert!(ring.nodes.iter().all(|n| n.alive), "{ring:?}");
    }
    for stranger in &strangers {
        assert_hears_no_one(stranger).await;
    }
}

/// `stranger`'s ring holds itself alone.
async fn assert_hears_no_one(stranger: &NodeProcess) {
    let ring = ring_at(stranger.addr()).await;
    let ids: Vec<&str> = ring.nodes.iter().map(|n| n.node_id.as_str()).collect();
    assert_eq!(ids, [stranger.node_id()], "a stranger hears no one");
}

/// The rotations docs/security.md describes, in three steps each (the
/// first key seals, every key opens). By rolling restarts: after every
/// restart all three nodes hear each other, so the cluster is never split
/// between nodes on the old key and nodes on the new one. Then in place,
/// without restarts: each node re-reads the file within a second or so.
#[tokio::test]
async fn the_gossip_key_rotates_without_a_split() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("gossip.key");
    let (old, new, newer) = (
        "the-old-cluster-gossip-key",
        "the-new-cluster-gossip-key",
        "the-newer-cluster-gossip-key",
    );
    std::fs::write(&key, format!("{old}\n")).expect("key");
    let key_arg = key.display().to_string();
    let mut cluster = Cluster::start(
        3,
        &["--replication-factor", "3", "--gossip-key-file", &key_arg],
    )
    .await;
    // Rewriting the file and restarting one node at a time: `restart` waits
    // until every node sees all three alive (and panics after 30 s: a
    // split never heals while some nodes wait for their restart).
    for step in [
        format!("{old}\n{new}\n"),
        format!("{new}\n{old}\n"),
        format!("{new}\n"),
    ] {
        std::fs::write(&key, &step).expect("key");
        for i in 0..3 {
            cluster.kill(i).await;
            cluster.restart(i).await;
        }
    }
    // In place: each step waits until every node has re-read the file
    // (the restarts above began fresh logs).
    for (n, step) in [
        format!("{new}\n{newer}\n"),
        format!("{newer}\n{new}\n"),
        format!("{newer}\n"),
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(&key, step).expect("key");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !(0..3).all(|i| cluster.log(i).matches("gossip keys reloaded").count() > n) {
            assert!(
                std::time::Instant::now() < deadline,
                "not every node re-read the key file: {}",
                cluster.log(0)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        cluster.wait_until_alive(3).await;
    }
    let client = strata_client::Client::connect(&cluster.addr(0).to_string())
        .await
        .expect("connect");
    let all = strata_client::parse_consistency("all").expect("level");
    let put = client
        .put(b"rotated".to_vec(), b"yes".to_vec(), Vec::new(), Some(all))
        .await
        .expect("put at ALL");
    assert_eq!(put.replicas_acked, 3);
    // A process with only the retired key is a stranger now.
    let seeds = cluster.seeds();
    let stale = dir.path().join("stale.key");
    std::fs::write(&stale, format!("{new}\n")).expect("key");
    let stale_arg = stale.display().to_string();
    let stranger = NodeProcess::start(
        &dir.path().join("stranger-retired"),
        Some("stranger-retired"),
        &["--seeds", &seeds, "--gossip-key-file", &stale_arg],
    );
    // Once every member has refused its gossip, it still hears no one.
    let refused = format!(
        "not sealed with this node's key: it has another --gossip-key-file, or none; every member needs the same key peer={}",
        stranger.addr()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(0..3).all(|i| cluster.log(i).contains(&refused)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the members never refused the retired key: {}",
            cluster.log(0)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_hears_no_one(&stranger).await;
}
