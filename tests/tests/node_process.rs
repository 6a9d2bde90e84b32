//! A real `strata-node` process serves the KV API and keeps its identity and
//! its data across restarts.

use strata_client::Client;
use strata_tests::NodeProcess;

const SINGLE: &[&str] = &["--replication-factor", "1"];

/// A ring-aware client of `node`.
async fn connect(node: &NodeProcess) -> Client {
    Client::connect(&node.addr().to_string())
        .await
        .expect("connect")
}

#[tokio::test]
async fn node_process_serves_kv_and_keeps_id_and_data_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("node-0");

    let node = NodeProcess::start(&data, Some("strata-0"), SINGLE);
    let client = connect(&node).await;
    let pong = client.ping(b"x".to_vec()).await.expect("ping");
    assert_eq!(pong.node_id, "strata-0");

    client
        .put(b"k".to_vec(), b"v1".to_vec(), Vec::new(), None)
        .await
        .expect("put");
    client
        .put(b"k".to_vec(), b"v2".to_vec(), Vec::new(), None)
        .await
        .expect("concurrent put");
    let got = client.get(b"k".to_vec(), None).await.expect("get");
    let mut values: Vec<&[u8]> = got.siblings.iter().map(|s| &s.value[..]).collect();
    values.sort_unstable();
    assert_eq!(
        values,
        [&b"v1"[..], b"v2"],
        "writes without context are siblings"
    );
    let resolved = client
        .put(b"k".to_vec(), b"v3".to_vec(), got.context.to_vec(), None)
        .await
        .expect("put with context");
    assert_eq!(resolved.replicas_acked, 1);
    drop(node);

    // Restart without --node-id: the id and the data come from the directory.
    let node = NodeProcess::start(&data, None, SINGLE);
    assert_eq!(node.node_id(), "strata-0");
    let client = connect(&node).await;
    let got = client.get(b"k".to_vec(), None).await.expect("get");
    let values: Vec<&[u8]> = got.siblings.iter().map(|s| &s.value[..]).collect();
    assert_eq!(values, [&b"v3"[..]]);
}

/// Kubernetes stops a pod with SIGTERM: the node shuts down cleanly (exit
/// status 0, engine closed), not as a crash, and keeps what it acknowledged.
/// (Two runtime threads: the client's connection must answer the server's
/// graceful goodbye while this thread waits for the exit.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_node_cleanly_and_keeps_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("node-0");
    let mut node = NodeProcess::start(&data, Some("strata-0"), SINGLE);
    let client = connect(&node).await;
    client
        .put(b"k".to_vec(), b"v".to_vec(), Vec::new(), None)
        .await
        .expect("put");
    let status = node
        .terminate(std::time::Duration::from_secs(8))
        .expect("the node exits within 8 s of SIGTERM");
    assert!(status.success(), "{status}; log:\n{}", node.log());
    assert!(node.log().contains("SIGTERM"), "{}", node.log());
    drop(node);

    let node = NodeProcess::start(&data, None, SINGLE);
    let client = connect(&node).await;
    let got = client.get(b"k".to_vec(), None).await.expect("get");
    let values: Vec<&[u8]> = got.siblings.iter().map(|s| &s.value[..]).collect();
    assert_eq!(values, [&b"v"[..]]);
}

/// Logs written to a file (a pod's log) carry no terminal escape codes;
/// `--log-format json` writes one JSON object per line.
#[test]
fn logs_are_plain_text_off_a_terminal_or_json_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(&dir.path().join("text"), Some("strata-0"), SINGLE);
    let log = node.log();
    assert!(log.contains("node started"), "{log}");
    assert!(!log.contains('\x1b'), "escape codes in a log file:\n{log}");
    drop(node);

    let args = [SINGLE, &["--log-format", "json"]].concat();
    let node = NodeProcess::start(&dir.path().join("json"), Some("strata-1"), &args);
    let log = node.log();
    let started = log
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON line"))
        .find(|line| line["fields"]["message"] == "node started")
        .unwrap_or_else(|| panic!("no start line in {log}"));
    assert_eq!(started["level"], "INFO");
    assert_eq!(started["fields"]["id"], "strata-1");
}

#[tokio::test]
async fn quorum_beyond_the_reachable_replicas_is_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Default N = 3 while this node knows only itself: QUORUM needs 2.
    let node = NodeProcess::start(&dir.path().join("node"), Some("strata-0"), &[]);
    let client = connect(&node).await;
    let err = client
        .put(b"k".to_vec(), b"v".to_vec(), Vec::new(), None)
        .await
        .expect_err("quorum");
    assert!(
        err.to_string().contains("Unavailable") || err.to_string().contains("unavailable"),
        "{err}"
    );
    let one = strata_client::parse_consistency("one").expect("level");
    client
        .put(b"k".to_vec(), b"v".to_vec(), Vec::new(), Some(one))
        .await
        .expect("ONE succeeds");
}

/// Behind a port-forward only the endpoint is reachable, not the addresses
/// the ring advertises: a ring-aware client fails, a `direct` one works.
#[tokio::test]
async fn a_direct_client_works_where_only_the_endpoint_is_reachable() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The node advertises an address nothing listens on.
    let args = [SINGLE, &["--advertise-host", "127.3.3.3"]].concat();
    let node = NodeProcess::start(&dir.path().join("node-0"), Some("strata-0"), &args);
    // It listens on 127.0.0.1 (the banner names the advertised address).
    let endpoint = format!("127.0.0.1:{}", node.addr().port());
    let routed = Client::connect(&endpoint).await.expect("connect");
    let ring = routed.ring().await.expect("ring");
    assert!(
        ring.nodes[0].grpc_address.starts_with("127.3.3.3:"),
        "{ring:?}"
    );
    routed
        .put(b"k".to_vec(), b"v".to_vec(), Vec::new(), None)
        .await
        .expect_err("the advertised address is unreachable");

    let options = strata_client::ClientOptions {
        direct: true,
        ..strata_client::ClientOptions::default()
    };
    let direct = Client::connect_with(&endpoint, options)
        .await
        .expect("connect");
    direct
        .put(b"k".to_vec(), b"v".to_vec(), Vec::new(), None)
        .await
        .expect("put through the endpoint");
    let got = direct.get(b"k".to_vec(), None).await.expect("get");
    assert_eq!(got.siblings.len(), 1);
    assert_eq!(&got.siblings[0].value[..], b"v");
}

/// A damaged file in the data directory stops the start with one line
/// that names the file and says what is wrong, once.
#[test]
fn a_damaged_identity_file_refuses_the_start_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("node-0");
    drop(NodeProcess::start(&data, Some("strata-0"), SINGLE));
    std::fs::write(data.join("INCARNATION"), "not hex").expect("damage");
    let out = std::process::Command::new(strata_tests::workspace_binary("strata-node"))
        .args(["--data-dir", data.to_str().expect("utf-8 path")])
        .args(["--listen", "127.0.0.1:0", "--gossip-listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .args(SINGLE)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run strata-node");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(line.contains("INCARNATION"), "{line}");
    assert_eq!(
        line.matches("not a hexadecimal incarnation").count(),
        1,
        "{line}"
    );
    assert!(!stderr.contains("backtrace"), "{stderr}");
}
