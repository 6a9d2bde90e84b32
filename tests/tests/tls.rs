//! TLS end to end, with certificates made in the test (rcgen): nodes
//! serve TLS on both ports, require node certificates (mutual TLS) on the
//! internal port and, here, client certificates on the client port;
//! replicate to each other over mutual TLS; refuse plaintext, missing,
//! foreign and expired certificates; and pick up a rotated certificate
//! without a restart and without a failed request.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use strata_client::{Client, ClientOptions, TlsOptions, parse_consistency};
use strata_tests::NodeProcess;
use strata_tests::pki::{Ca, Issued};
use strata_tests::two_ports::TwoPortCluster;

fn tls(ca: &Path, identity: Option<&Issued>) -> TlsOptions {
    TlsOptions {
        ca: std::fs::read(ca).expect("ca"),
        identity: identity.map(|i| {
            (
                std::fs::read(&i.cert).expect("cert"),
                std::fs::read(&i.key).expect("key"),
            )
        }),
    }
}

async fn connect(
    addr: SocketAddr,
    tls: Option<TlsOptions>,
) -> Result<Client, strata_client::Error> {
    Client::connect_with(
        &addr.to_string(),
        ClientOptions {
            tls,
            ..ClientOptions::default()
        },
    )
    .await
}

/// Completes a raw TLS handshake with `addr` presenting `identity` (if
/// any) and trusting `ca`; returns the server's leaf certificate.
async fn handshake(
    addr: SocketAddr,
    ca: &Path,
    identity: Option<&Issued>,
) -> Result<Vec<u8>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(cert.expect("cert")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(i) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&i.cert)
                    .expect("cert")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("chain"),
                PrivateKeyDer::from_pem_file(&i.key).expect("key"),
            )
            .expect("identity"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
        .await
        .map_err(|e| e.to_string())?;
    // The server checks a client certificate after the client's last
    // flight: a refusal shows on the first read.
    use tokio::io::AsyncReadExt as _;
    let mut byte = [0u8; 1];
    if let Ok(Ok(0) | Err(_)) =
        tokio::time::timeout(Duration::from_millis(300), tls.read(&mut byte)).await
    {
        return Err("closed by the server after the handshake".into());
    }
    let (_, session) = tls.get_ref();
    Ok(session
        .peer_certificates()
        .and_then(|c| c.first())
        .expect("server certificate")
        .to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_and_mutual_tls_refuse_strangers_and_rotate_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = Ca::new("strata test cluster CA");
    let ca_file = d.join("ca.crt");
    ca.write(&ca_file);
    let other = Ca::new("someone else's CA");
    other.write(&d.join("stranger-ca.crt"));
    let sans = ["localhost", "127.0.0.1"];
    let node_certs: Vec<Issued> = (0..3)
        .map(|i| ca.issue(d, &format!("node-{i}"), &format!("node-{i}"), &sans, false))
        .collect();
    let client = ca.issue(d, "client", "an application", &[], false);
    let stranger = other.issue(d, "stranger", "node-9", &sans, false);
    let expired = ca.issue(d, "expired", "an old application", &sans, true);

    let ca_arg = ca_file.display().to_string();
    let gossip_key = d.join("gossip.key");
    std::fs::write(&gossip_key, "the-cluster-gossip-key-0123456789").expect("key");
    let key_arg = gossip_key.display().to_string();
    let cluster = TwoPortCluster::start(d, 3, |i| {
        [
            "--tls-cert",
            &node_certs[i].cert.display().to_string(),
            "--tls-key",
            &node_certs[i].key.display().to_string(),
            "--tls-ca",
            &ca_arg,
            "--tls-client-ca",
            &ca_arg,
            "--tls-peer-name",
            "localhost",
            "--gossip-key-file",
            &key_arg,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
    });
    let nodes = &cluster.nodes;
    let addr = nodes[0].addr();
    let internal_addr = cluster.internal[1];

    // An application with a certificate from the cluster CA writes at ALL:
    // the nodes replicate to each other over mutual TLS.
    let app = connect(addr, Some(tls(&ca_file, Some(&client))))
        .await
        .expect("connect with a client certificate");
    let all = Some(parse_consistency("all").expect("all"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = app.put(b"k".to_vec(), b"v".to_vec(), Vec::new(), all).await {
        assert!(Instant::now() < deadline, "no write at ALL over TLS: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = app.refresh_ring().await;
    }

    // A node with another CA's certificate (and so no gossip key) cannot
    // join: nobody hears it, and it cannot call Replica.
    let stranger_node = NodeProcess::start(
        &d.join("stranger-node"),
        Some("node-9"),
        &[
            "--replication-factor",
            "3",
            "--internal-listen",
            &format!("127.0.0.1:{}", strata_tests::two_ports::free_port()),
            "--seeds",
            &cluster
                .internal
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            "--tls-cert",
            &stranger.cert.display().to_string(),
            "--tls-key",
            &stranger.key.display().to_string(),
            "--tls-ca",
            &d.join("stranger-ca.crt").display().to_string(),
        ],
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ring = app.ring().await.expect("ring");
    assert!(
        ring.nodes.iter().all(|n| n.node_id != "node-9"),
        "a stranger joined: {ring:?}"
    );
    drop(stranger_node);

    // Plaintext on a TLS port: refused, with a hint.
    let plain = connect(addr, None).await.expect_err("plaintext");
    assert!(plain.to_string().contains("does it serve TLS"), "{plain}");
    // No client certificate where one is required: refused, with a hint.
    let anonymous = connect(addr, Some(tls(&ca_file, None)))
        .await
        .expect_err("no client certificate");
    assert!(
        anonymous.to_string().contains("--cert and --key"),
        "{anonymous}"
    );
    // Another CA's certificate, on either port.
    assert!(
        connect(addr, Some(tls(&ca_file, Some(&stranger))))
            .await
            .is_err(),
        "a foreign client certificate"
    );
    let refused = handshake(internal_addr, &ca_file, Some(&stranger)).await;
    assert!(
        refused.is_err(),
        "a foreign node certificate on the internal port"
    );
    let refused = handshake(internal_addr, &ca_file, None).await;
    assert!(refused.is_err(), "no certificate on the internal port");
    // An expired certificate from the right CA.
    let refused = handshake(addr, &ca_file, Some(&expired)).await;
    assert!(refused.is_err(), "an expired client certificate");
    // Signed by the cluster CA is not enough to be a node: the client's
    // certificate lacks the node name the cluster requires.
    let refused = handshake(internal_addr, &ca_file, Some(&client)).await;
    assert!(
        refused.is_err(),
        "a client certificate on the internal port"
    );
    // A node certificate from the cluster CA opens the internal port.
    handshake(internal_addr, &ca_file, Some(&node_certs[0]))
        .await
        .expect("a node certificate on the internal port");

    // Rotation: node-0 gets a new certificate while requests keep flowing.
    let before = handshake(addr, &ca_file, Some(&client))
        .await
        .expect("before");
    let writer = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut failures = 0;
            for i in 0..200u32 {
                let key = format!("rotating-{i}").into_bytes();
                if app.put(key, b"v".to_vec(), Vec::new(), None).await.is_err() {
                    failures += 1;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            failures
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rotated = ca.issue(d, "node-0", "node-0 (rotated)", &sans, false);
    assert_eq!(
        rotated.cert, node_certs[0].cert,
        "the same files, new contents"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = handshake(addr, &ca_file, Some(&client))
            .await
            .expect("after");
        if now != before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        writer.await.expect("writer"),
        0,
        "requests failed during the rotation"
    );
    // New connections from node-0 to its peers use the new pair too.
    let fresh = connect(nodes[1].addr(), Some(tls(&ca_file, Some(&client))))
        .await
        .expect("connect");
    fresh
        .put(b"after-rotation".to_vec(), b"v".to_vec(), Vec::new(), all)
        .await
        .expect("a write at ALL after the rotation");
    assert!(nodes[0].log().contains("TLS certificate reloaded"));

    // CA rotation: a bundle with the next CA is picked up without a
    // restart; certificates from it are then accepted.
    let next = Ca::new("next cluster CA");
    let next_client = next.issue(d, "next-client", "an application", &[], false);
    assert!(
        handshake(addr, &ca_file, Some(&next_client)).await.is_err(),
        "not trusted yet"
    );
    let bundle = format!(
        "{}{}",
        std::fs::read_to_string(&ca_file).expect("ca"),
        next.pem()
    );
    Ca::write_bundle(&ca_file, &bundle);
    let deadline = Instant::now() + Duration::from_secs(10);
    while handshake(addr, &ca_file, Some(&next_client)).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the new CA bundle was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(nodes[0].log().contains("CA bundle reloaded"));
}
