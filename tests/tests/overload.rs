//! A node offered more write bytes than `--max-write-bytes-in-flight`:
//! unary writes past the budget are refused when their header arrives,
//! before their bodies are received, so the node's memory stays near the
//! budget however many are sent at once.

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
