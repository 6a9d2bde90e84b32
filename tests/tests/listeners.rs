//! Two listeners: with `--internal-listen`, clients reach `KV` and `Admin`
//! on the gRPC port, which does not serve `Replica`; nodes replicate,
//! gossip, stream and call each other through the internal port — so a
//! firewall or NetworkPolicy can keep clients off it.

use std::time::{Duration, Instant};

use strata_client::Client;
use strata_proto::v1::{GetRequest, ReplicaReadRequest};
use strata_tests::cluster::{kv, replica, stored_versions};
use strata_tests::two_ports::TwoPortCluster;
use tonic::Code;

#[tokio::test]
async fn replication_uses_the_internal_port_and_clients_cannot_reach_replica_on_theirs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = TwoPortCluster::start(dir.path(), 3, |_| Vec::new());
    let nodes = &cluster.nodes;
    let internal_addr = |i: usize| cluster.internal[i];

    // Gossip over the internal ports forms the cluster; a write at ALL
    // reaches every replica through their internal servers.
    let client = Client::connect(&nodes[0].addr().to_string())
        .await
        .expect("connect");
    let all = Some(strata_client::parse_consistency("all").expect("all"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client
            .put(b"k".to_vec(), b"v".to_vec(), Vec::new(), all)
            .await
        {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "the cluster never formed: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = client.refresh_ring().await;
            }
        }
    }
    for i in 0..3 {
        let versions = stored_versions(internal_addr(i), "k").await;
        assert_eq!(versions.len(), 1, "node-{i} holds the write");
    }

    // Replica is not served on the client port...
    let refused = replica(nodes[1].addr())
        .await
        .read(ReplicaReadRequest {
            key: b"k".to_vec().into(),
        })
        .await
        .expect_err("no Replica on the client port");
    assert_eq!(refused.code(), Code::Unimplemented, "{refused}");
    // The internal port serves what nodes call on each other: Replica,
    // Admin (ring agreement, forwarded decommissions) and KV (forwarded
    // writes, past the client port's tokens).
    let ring = strata_tests::cluster::admin(internal_addr(1))
        .await
        .get_ring(strata_proto::v1::GetRingRequest {})
        .await
        .expect("Admin on the internal port")
        .into_inner();
    assert_eq!(ring.nodes.len(), 3);
    // Clients still read through the client port.
    let got = kv(nodes[2].addr())
        .await
        .get(GetRequest {
            key: b"k".to_vec().into(),
            consistency: None,
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(&got.siblings[0].value[..], b"v");
}
