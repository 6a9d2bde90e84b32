//! A node under more connections than it may hold: over `--max-connections`
//! they are closed at once, out of file descriptors it pauses accepting
//! instead of spinning, and in both cases it serves again once
//! connections close.

use std::time::{Duration, Instant};

use strata_client::Client;
use strata_tests::NodeProcess;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;

/// Waits (at most 20 s) until `node` answers a ping on a new client, and
/// returns that client.
async fn serving(node: &NodeProcess) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(client) = Client::connect(&node.addr().to_string()).await
            && client.ping(b"x".to_vec()).await.is_ok()
        {
            return client;
        }
        assert!(
            Instant::now() < deadline,
            "the node does not serve again:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (at most 20 s) until `node`'s log contains `line`.
async fn logged(node: &NodeProcess, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !node.log().contains(line) {
        assert!(
            Instant::now() < deadline,
            "never logged {line:?}:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// CPU time the process has used (user and system), from /proc.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the parenthesised name; utime and stime are the 14th
    // and 15th of the whole line.
    let after = &stat[stat.rfind(')').expect("name") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once_and_the_node_serves_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(
        &dir.path().join("cap-0"),
        Some("cap-0"),
        &["--replication-factor", "1", "--max-connections", "4"],
    );
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(node.addr()).await.expect("connect"));
    }
    // The fifth is accepted after the four (in order) and closed: its
    // client sees the end of the stream, not a wait for a handshake.
    let mut fifth = TcpStream::connect(node.addr()).await.expect("connect");
    let read = tokio::time::timeout(Duration::from_secs(10), fifth.read(&mut [0u8; 1]))
        .await
        .expect("closed at once, not left waiting");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    logged(&node, "connection refused: --max-connections are open").await;

    drop(held);
    let client = serving(&node).await;
    client
        .put(b"k".to_vec(), b"v".to_vec(), Vec::new(), None)
        .await
        .expect("put once places are free");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_a_node_pauses_accepting_and_serves_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A cap above what 128 open files allow: accepting runs out of
    // descriptors before it reaches the cap.
    let node = NodeProcess::start_with_open_files(
        &dir.path().join("fd-0"),
        Some("fd-0"),
        &["--replication-factor", "1", "--max-connections", "10000"],
        128,
    );
    logged(&node, "the open-file limit is low").await;
    let client = serving(&node).await;
    client
        .put(b"before".to_vec(), b"1".to_vec(), Vec::new(), None)
        .await
        .expect("put");
    drop(client);

    // Far more connections than descriptors: the kernel completes them
    // (the listen backlog) while the node cannot accept them.
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(TcpStream::connect(node.addr()).await.expect("connect"));
    }
    logged(&node, "cannot accept connections").await;
    // Accepting pauses between attempts: the process stays mostly idle
    // (retrying at once, as tonic's own loop does, kept a core busy). A
    // bound, not a speed: 2 s of a spinning loop is ~200 ticks.
    let before = cpu_ticks(node.pid());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(node.pid()) - before;
    assert!(
        used < 60,
        "{used} ticks of CPU in 2 s while out of descriptors"
    );

    drop(held);
    let client = serving(&node).await;
    client
        .put(b"after".to_vec(), b"2".to_vec(), Vec::new(), None)
        .await
        .expect("put once descriptors are free");
    for (key, value) in [(&b"before"[..], &b"1"[..]), (b"after", b"2")] {
        let got = client.get(key.to_vec(), None).await.expect("get");
        let values: Vec<&[u8]> = got.siblings.iter().map(|s| &s.value[..]).collect();
        assert_eq!(values, [value], "{}", String::from_utf8_lossy(key));
    }
}
