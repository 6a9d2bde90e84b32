//! A node offered more request bytes than `--max-write-bytes-in-flight`:
//! unary writes past the budget, and other messages past as many bytes
//! still arriving, are refused when their header arrives, before their
//! bodies are received or room is reserved for them, so the node's memory
//! stays near the budget however many are sent at once.

use strata_proto::v1::{Consistency, ConsistencyLevel, PutRequest};
use strata_tests::Cluster;
use strata_tests::cluster::kv;
use tonic::Code;

/// Values of 3 MiB, under the node's 4 MiB value limit.
const VALUE: usize = 3 << 20;
/// Connections, and unary Puts in flight on each.
const CONNECTIONS: usize = 8;
const PER_CONNECTION: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_past_the_budget_are_refused_before_their_bodies_are_held() {
    let budget = (8 << 20).to_string();
    let cluster = Cluster::start(
        1,
        &[
            "--replication-factor",
            "1",
            "--max-write-bytes-in-flight",
            &budget,
        ],
    )
    .await;
    let addr = cluster.addr(0);
    let before = cluster.process(0).peak_resident_bytes();
    let value = bytes::Bytes::from(vec![7u8; VALUE]);
    let mut calls = tokio::task::JoinSet::new();
    for c in 0..CONNECTIONS {
        let client = kv(addr).await;
        for i in 0..PER_CONNECTION {
            let mut client = client.clone();
            let value = value.clone();
            calls.spawn(async move {
                client
                    .put(PutRequest {
                        key: format!("k{c}-{i}").into_bytes().into(),
                        value,
                        context: bytes::Bytes::new(),
                        consistency: Some(Consistency::named(ConsistencyLevel::One)),
                        request_id: 0,
                    })
                    .await
                    .map(|_| ())
            });
        }
    }
    let (mut written, mut refused) = (0, 0);
    while let Some(result) = calls.join_next().await {
        match result.expect("call task") {
            Ok(()) => written += 1,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    status.message().contains("--max-write-bytes-in-flight"),
                    "{status}"
                );
                // What makes a client back off and retry it.
                assert!(
                    strata_proto::metadata::is_from_a_node(&status),
                    "{status:?}"
                );
                refused += 1;
            }
            Err(status) => panic!("a write neither written nor refused: {status}"),
        }
    }
    let grown = cluster
        .process(0)
        .peak_resident_bytes()
        .saturating_sub(before);
    println!(
        "{written} written, {refused} refused; peak resident memory grew by {} MiB \
         for {} MiB offered at once",
        grown >> 20,
        (CONNECTIONS * PER_CONNECTION * VALUE) >> 20
    );
    assert!(written > 0, "the budget admits a write at a time at least");
    assert!(
        refused > 0,
        "all {written} writes were admitted at once by an 8 MiB budget"
    );
    assert!(
        grown < 256 << 20,
        "the node's peak memory grew by {} MiB",
        grown >> 20
    );
}

/// gRPC's `RESOURCE_EXHAUSTED`, as `grpc-status` carries it.
const RESOURCE_EXHAUSTED: &str = "8";

/// The `grpc-status` a call ends with: in the response's headers when it
/// fails before answering (a unary call), else in its trailers (a stream
/// already answering).
async fn grpc_status(answer: h2::client::ResponseFuture) -> Option<String> {
    let response = answer.await.expect("an answer");
    let text = |h: &http::HeaderMap| {
        h.get("grpc-status")
            .map(|v| v.to_str().expect("ascii").to_owned())
    };
    if let Some(status) = text(response.headers()) {
        return Some(status);
    }
    let trailers = response.into_body().trailers().await.expect("trailers");
    trailers.as_ref().and_then(text)
}

/// 100 streams each of a `Get` and of a `Session` that send only a
/// message header announcing 60 MB, and never the body (a slow or hostile
/// client). tonic reserves what a header announces as it arrives: before
/// the headers were admitted, these 200 streams grew the node's address
/// space by gigabytes. Past the budget for bytes arriving (256 MiB: four
/// such messages), each is refused at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_announcing_more_than_the_budget_are_refused_at_their_header() {
    let cluster = Cluster::start(1, &["--replication-factor", "1"]).await;
    let addr = cluster.addr(0);
    let before = cluster.process(0).virtual_bytes();
    let mut answers = Vec::new();
    let mut open = Vec::new();
    for path in ["/strata.v1.KV/Get", "/strata.v1.KV/Session"] {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut client, connection) = h2::client::handshake(tcp).await.expect("h2");
        tokio::spawn(connection);
        for _ in 0..100 {
            let request = http::Request::post(format!("http://{addr}{path}"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .expect("request");
            client = client.ready().await.expect("ready");
            let (answer, mut body) = client.send_request(request, false).expect("send");
            // A header announcing 60 MB (0x03c00000 bytes), and no more.
            body.send_data(bytes::Bytes::from_static(&[0, 0x03, 0xc0, 0, 0]), false)
                .expect("data");
            answers.push(tokio::spawn(grpc_status(answer)));
            open.push(body);
        }
    }
    // Refusals come back at once; the admitted streams never answer. Wait
    // for the refusals (bounded), not for a fixed time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while answers.iter().filter(|a| a.is_finished()).count() < 190
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let grown = cluster.process(0).virtual_bytes().saturating_sub(before);
    let mut refused = 0;
    for answer in answers {
        if !answer.is_finished() {
            // Admitted: waiting for a body that never comes.
            answer.abort();
            continue;
        }
        let status = answer.await.expect("task");
        assert_eq!(status.as_deref(), Some(RESOURCE_EXHAUSTED));
        refused += 1;
    }
    println!(
        "{refused} of 200 refused; address space grew by {} MiB",
        grown >> 20
    );
    assert!(
        refused >= 190,
        "only {refused} of 200 refused at their header"
    );
    assert!(
        grown < 2 << 30,
        "the node's address space grew by {} MiB",
        grown >> 20
    );
    drop(open);
    let mut client = kv(addr).await;
    client
        .put(PutRequest {
            key: b"after".to_vec().into(),
            value: b"v".to_vec().into(),
            context: bytes::Bytes::new(),
            consistency: Some(Consistency::named(ConsistencyLevel::One)),
            request_id: 0,
        })
        .await
        .expect("the node still serves");
}
