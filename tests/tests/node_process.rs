//! A real `strata-node` process answers over gRPC and keeps its identity
//! across restarts.

use strata_client::Client;
use strata_tests::NodeProcess;

#[tokio::test]
async fn node_process_answers_ping_and_keeps_its_id_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("node-0");

    let node = NodeProcess::start(&data, Some("strata-0"));
    let mut client = Client::connect(&node.addr().to_string())
        .await
        .expect("connect");
    let pong = client.ping(b"x".to_vec()).await.expect("ping");
    assert_eq!(pong.node_id, "strata-0");
    assert_eq!(&pong.payload[..], b"x");

    let status = client
        .get(b"k".to_vec(), None)
        .await
        .expect_err("no coordinator yet");
    assert!(
        status.to_string().contains("not implemented yet"),
        "{status}"
    );
    drop(node);

    // Restart without --node-id: the id comes from the data directory.
    let node = NodeProcess::start(&data, None);
    assert_eq!(node.node_id(), "strata-0");
    let mut client = Client::connect(&node.addr().to_string())
        .await
        .expect("connect");
    assert_eq!(
        client.ping(Vec::new()).await.expect("ping").node_id,
        "strata-0"
    );
}
