//! `strata dev` — the README's run command — starts a working cluster,
//! serves quorum requests, grows by the `strata-node` command it prints,
//! and stops cleanly on Ctrl-C (SIGINT), removing its temporary data.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use strata_client::{Client, parse_consistency};
use strata_tests::workspace_binary;

/// Kills the child on drop, so a failing test leaves no cluster behind.
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A base port whose gRPC/gossip ports (base, base+1, base+2) and metrics
/// ports (base+2000..) are likely free: the OS hands out ephemeral ports
/// from 32768 up, so stay below.
fn base_port() -> u16 {
    let seed = std::process::id() % 5000;
    20_000 + u16::try_from(seed).expect("below 5000") * 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strata_dev_runs_a_cluster_and_stops_on_ctrl_c() {
    let base = base_port();
    // `strata dev` makes its directory under TMPDIR: one the test owns, so
    // a failed run (the guard's SIGKILL skips the cluster's own cleanup)
    // leaves nothing behind either.
    let tmp = tempfile::tempdir().expect("tempdir");
    let child = Command::new(workspace_binary("strata"))
        .args(["dev", "--nodes", "3", "--base-port", &base.to_string()])
        .env("TMPDIR", tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn strata dev");
    let mut guard = Guard(child);
    let stdout = guard.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut banner = Vec::new();
    let started = Instant::now();
    while !banner.iter().any(|l: &String| l.contains("Ctrl-C stops")) {
        let line = rx
            .recv_timeout(Duration::from_secs(30).saturating_sub(started.elapsed()))
            .unwrap_or_else(|_| panic!("strata dev did not start; output so far: {banner:?}"));
        banner.push(line);
    }
    assert!(
        banner[0].starts_with("strata dev: 3 nodes, N=3"),
        "{banner:?}"
    );
    let data_dir = banner[0]
        .rsplit("data in ")
        .next()
        .expect("data dir")
        .to_owned();
    assert!(std::path::Path::new(&data_dir).starts_with(tmp.path()));
    assert!(std::path::Path::new(&data_dir).exists());
    for i in 0..3u16 {
        assert!(
            banner
                .iter()
                .any(|l| l.contains(&format!("node-{i}")) && l.contains(&format!("{}", base + i))),
            "{banner:?}"
        );
    }

    let client = Client::connect(&format!("127.0.0.1:{base}"))
        .await
        .expect("connect");
    let all = parse_consistency("all").expect("level");
    let put = client
        .put(b"hello".to_vec(), b"world".to_vec(), Vec::new(), Some(all))
        .await
        .expect("put at ALL");
    assert_eq!(put.replicas_acked, 3);
    let ring = client.ring().await.expect("ring");
    assert_eq!(ring.nodes.iter().filter(|n| n.alive).count(), 3);

    // The printed command adds a fourth node (in a directory of the test's
    // own instead of the one printed), which joins the ring.
    let grow = banner
        .iter()
        .find_map(|l| l.strip_prefix("add a node: strata-node "))
        .unwrap_or_else(|| panic!("no add-a-node line: {banner:?}"));
    let node_dir = tempfile::tempdir().expect("tempdir");
    let mut args: Vec<String> = grow.split_whitespace().map(str::to_owned).collect();
    let at = args
        .iter()
        .position(|a| a == "--data-dir")
        .expect("--data-dir")
        + 1;
    args[at] = node_dir.path().join("node-3").display().to_string();
    let node_log = std::fs::File::create(node_dir.path().join("node-3.log")).expect("log");
    let _added = Guard(
        Command::new(workspace_binary("strata-node"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(node_log)
            .spawn()
            .expect("spawn the added node"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ring = client.ring().await.expect("ring");
        let normal = ring
            .nodes
            .iter()
            .filter(|n| n.alive && n.state == strata_proto::v1::NodeState::Normal as i32)
            .count();
        if normal == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the added node did not join: {ring:?}; its log:\n{}",
            std::fs::read_to_string(node_dir.path().join("node-3.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Ctrl-C: the cluster stops and removes its temporary directory.
    let status = Command::new("kill")
        .args(["-INT", &guard.0.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let mut rest = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = guard.0.try_wait().expect("wait") {
            assert!(status.success(), "strata dev exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "strata dev did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) {
        rest.push(line);
    }
    assert!(rest.iter().any(|l| l.contains("removed")), "{rest:?}");
    assert!(
        !std::path::Path::new(&data_dir).exists(),
        "{data_dir} left behind"
    );
}
