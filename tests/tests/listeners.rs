//! Two listeners: with `--internal-listen`, clients reach `KV` and `Admin`
//! on the gRPC port and only there, and nodes replicate, gossip and stream
//! through the internal port, which serves `Replica` and nothing a client
//! uses — so a firewall or NetworkPolicy can keep clients off it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use strata_client::Client;
use strata_proto::v1::{GetRequest, ReplicaReadRequest, kv_client::KvClient};
use strata_tests::NodeProcess;
use strata_tests::cluster::{kv, replica, stored_versions};
use tonic::Code;

/// A port free right now on 127.0.0.1 (TCP; the node also binds it for
/// gossip over UDP).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

#[tokio::test]
async fn replication_uses_the_internal_port_and_clients_cannot_reach_replica_on_theirs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let internal: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let seeds = internal
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let nodes: Vec<NodeProcess> = (0..3)
        .map(|i| {
            let listen = format!("127.0.0.1:{}", internal[i]);
            NodeProcess::start(
                &dir.path().join(format!("node-{i}")),
                Some(&format!("node-{i}")),
                &[
                    "--replication-factor",
                    "3",
                    "--internal-listen",
                    &listen,
                    "--initial-cluster",
                    "node-0,node-1,node-2",
                    "--seeds",
                    &seeds,
                    "--gossip-interval-ms",
                    "100",
                ],
            )
        })
        .collect();
    let internal_addr =
        |i: usize| -> SocketAddr { format!("127.0.0.1:{}", internal[i]).parse().expect("addr") };

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
    // ...and KV is not served on the internal one.
    let refused = KvClient::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", internal_addr(1)))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect"),
    )
    .get(GetRequest {
        key: b"k".to_vec().into(),
        consistency: None,
    })
    .await
    .expect_err("no KV on the internal port");
    assert_eq!(refused.code(), Code::Unimplemented, "{refused}");
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
