//! Authenticated gossip: nodes sharing `--gossip-key-file` form a cluster;
//! a process with another key, or none, is never heard: it cannot join
//! the ring (and so cannot tell anyone a node is dead).

use std::time::Duration;

use strata_proto::v1::GetRingRequest;
use strata_tests::cluster::admin;
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
    let seeds = cluster
        .running()
        .iter()
        .map(|(_, a)| a.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let other_arg = other.display().to_string();
    let strangers = [
        NodeProcess::start(
            &dir.path().join("stranger-key"),
            Some("stranger-key"),
            &["--seeds", &seeds, "--gossip-key-file", &other_arg],
        ),
        NodeProcess::start(
            &dir.path().join("stranger-none"),
            Some("stranger-none"),
            &["--seeds", &seeds],
        ),
    ];
    // Many gossip rounds (100 ms each) later, nobody has heard of them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (_, addr) in cluster.running() {
        let ring = admin(addr)
            .await
            .get_ring(GetRingRequest {})
            .await
            .expect("ring")
            .into_inner();
        let ids: Vec<&str> = ring.nodes.iter().map(|n| n.node_id.as_str()).collect();
        assert_eq!(ids, ["node-0", "node-1", "node-2"], "{addr}");
        assert!(ring.nodes.iter().all(|n| n.alive), "{ring:?}");
    }
    for stranger in &strangers {
        let ring = admin(stranger.addr())
            .await
            .get_ring(GetRingRequest {})
            .await
            .expect("ring")
            .into_inner();
        let ids: Vec<&str> = ring.nodes.iter().map(|n| n.node_id.as_str()).collect();
        assert_eq!(ids, [stranger.node_id()], "a stranger hears no one");
    }
}
