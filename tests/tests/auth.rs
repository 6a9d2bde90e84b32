//! Client credentials end to end: nodes with `--auth-tokens-file` refuse
//! calls without a token (UNAUTHENTICATED) or with too low a role
//! (PERMISSION_DENIED), leave health open, keep replicating between
//! themselves through the internal port, pick up a changed tokens file
//! without a restart, and never write a token to their logs.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use strata_client::{Client, ClientOptions, parse_consistency};
use strata_node::auth::hash_token;
use strata_tests::two_ports::TwoPortCluster;
use tonic::Code;

const READER: &str = "reader-0123456789abcdef";
const WRITER: &str = "writer-0123456789abcdef";
const ADMIN: &str = "admin-0123456789abcdef";

fn write_tokens(path: &Path, tokens: &[(&str, &str)]) {
    let text: String = tokens
        .iter()
        .map(|(role, token)| format!("{role} {}\n", hash_token(token)))
        .collect();
    // Written aside and renamed, as Kubernetes swaps a mounted Secret.
    let staged = path.with_extension("new");
    std::fs::write(&staged, text).expect("tokens");
    std::fs::rename(&staged, path).expect("swap tokens");
}

async fn client(addr: SocketAddr, token: Option<&str>) -> Client {
    let options = ClientOptions {
        token: token.map(str::to_owned),
        ..ClientOptions::default()
    };
    Client::connect_with(&addr.to_string(), options)
        .await
        .expect("connect with a read-capable token")
}

fn code(result: Result<impl std::fmt::Debug, strata_client::Error>) -> Option<Code> {
    result.err().and_then(|e| e.code())
}

#[tokio::test]
async fn tokens_and_roles_guard_the_client_port_and_reload_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens");
    write_tokens(
        &tokens,
        &[("read", READER), ("write", WRITER), ("admin", ADMIN)],
    );
    let tokens_arg = tokens.display().to_string();
    let cluster = TwoPortCluster::start(dir.path(), 3, |_| {
        vec!["--auth-tokens-file".to_owned(), tokens_arg.clone()]
    });
    let nodes = &cluster.nodes;
    let addr = nodes[0].addr();

    // No token: even the ring is refused.
    let err = Client::connect(&addr.to_string())
        .await
        .expect_err("no token");
    assert_eq!(err.code(), Some(Code::Unauthenticated), "{err}");
    let err = Client::connect_with(
        &addr.to_string(),
        ClientOptions {
            token: Some("not-a-token".into()),
            ..ClientOptions::default()
        },
    )
    .await
    .expect_err("unknown token");
    assert_eq!(err.code(), Some(Code::Unauthenticated), "{err}");

    // A writer writes at ALL: the nodes replicate to each other without
    // client tokens, through their internal ports.
    let writer = client(addr, Some(WRITER)).await;
    let all = Some(parse_consistency("all").expect("all"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = writer
        .put(b"k".to_vec(), b"v".to_vec(), Vec::new(), all)
        .await
    {
        assert!(Instant::now() < deadline, "cluster never formed: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = writer.refresh_ring().await;
    }

    // A reader reads but cannot write; a writer cannot repair; an admin can.
    let reader = client(addr, Some(READER)).await;
    let got = reader.get(b"k".to_vec(), None).await.expect("read");
    assert_eq!(&got.siblings[0].value[..], b"v");
    let denied = reader
        .put(b"k".to_vec(), b"x".to_vec(), Vec::new(), None)
        .await
        .expect_err("read role");
    assert_eq!(denied.code(), Some(Code::PermissionDenied), "{denied}");
    assert!(
        denied.to_string().contains("needs the write role"),
        "{denied}"
    );
    assert_eq!(code(writer.repair().await), Some(Code::PermissionDenied));
    let admin = client(addr, Some(ADMIN)).await;
    admin.repair().await.expect("admin repairs");

    // Health stays open for probes.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health without a token");

    // Rotation: the reader's token is replaced; the node picks the file up.
    const ROTATED: &str = "reader-rotated-fedcba9876543210";
    write_tokens(
        &tokens,
        &[("read", ROTATED), ("write", WRITER), ("admin", ADMIN)],
    );
    let rotated = client(addr, Some(WRITER)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let new = Client::connect_with(
            &addr.to_string(),
            ClientOptions {
                token: Some(ROTATED.into()),
                ..ClientOptions::default()
            },
        )
        .await;
        let old = reader.get(b"k".to_vec(), None).await;
        if new.is_ok() && code(old) == Some(Code::Unauthenticated) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new tokens file was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    rotated
        .put(b"k2".to_vec(), b"v".to_vec(), Vec::new(), None)
        .await
        .expect("untouched tokens keep working");

    // No token ever reaches a log.
    for node in nodes {
        let log = node.log();
        for token in [READER, WRITER, ADMIN, ROTATED, "not-a-token"] {
            assert!(!log.contains(token), "a token in {}'s log", node.node_id());
        }
        assert!(log.contains("client tokens reloaded"), "{log}");
    }
}

#[test]
fn tokens_without_an_internal_port_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens");
    write_tokens(&tokens, &[("read", READER)]);
    let out = std::process::Command::new(strata_tests::workspace_binary("strata-node"))
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--auth-tokens-file")
        .arg(&tokens)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs --internal-listen"), "{stderr}");
}
