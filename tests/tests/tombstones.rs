//! Tombstone GC and a replica that was down: a node down for longer than
//! the tombstone grace period, while the others deleted a key it holds,
//! must not bring the key back when it returns (the others keep the
//! tombstone while it is down), and GC resumes once every member is up
//! and the scheduled repair has covered every range.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use strata_proto::v1::{Consistency, ConsistencyLevel, GetRequest, PutRequest};
use strata_tests::Cluster;
use strata_tests::cluster::{delete_at_quorum, kv, stored_versions};

/// A 4 s grace; no hints (only anti-entropy and reads could bring the
/// tombstone to the returning node); scheduled repair every 2 s; small
/// memtables, so a few MiB of writes flush and compact.
const ARGS: &[&str] = &[
    "--replication-factor",
    "3",
    "--vnodes",
    "16",
    "--tombstone-grace-secs",
    "4",
    "--hint-window-secs",
    "1",
    "--max-hint-bytes",
    "0",
    "--anti-entropy-interval-secs",
    "2",
    "--memtable-bytes",
    "1048576",
];

fn level(level: ConsistencyLevel) -> Option<Consistency> {
    Some(Consistency::named(level))
}

/// The values a read of `key` through `addr` at ALL returns.
async fn values_at_all(addr: SocketAddr, key: &str) -> Vec<Vec<u8>> {
    kv(addr)
        .await
        .get(GetRequest {
            key: key.as_bytes().to_vec().into(),
            consistency: level(ConsistencyLevel::All),
        })
        .await
        .expect("get at ALL")
        .into_inner()
        .siblings
        .into_iter()
        .filter(|s| !s.tombstone)
        .map(|s| s.value.to_vec())
        .collect()
}

/// Writes `count` values of 100 KiB through `addr`: enough, with 1 MiB
/// memtables, for the replicas to flush several tables and compact them.
async fn fill(addr: SocketAddr, round: usize, count: usize) {
    let mut client = kv(addr).await;
    for i in 0..count {
        client
            .put(PutRequest {
                key: format!("filler-{round}-{i}").into_bytes().into(),
                value: vec![u8::try_from(i % 251).expect("byte"); 100 << 10].into(),
                context: Vec::new().into(),
                consistency: level(ConsistencyLevel::Quorum),
                request_id: 0,
            })
            .await
            .expect("filler put");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_longer_than_the_grace_does_not_bring_a_deleted_key_back() {
    let mut cluster = Cluster::start(3, ARGS).await;
    let a = cluster.addr(0);
    kv(a)
        .await
        .put(PutRequest {
            key: b"k".to_vec().into(),
            value: b"v".to_vec().into(),
            context: Vec::new().into(),
            consistency: level(ConsistencyLevel::All),
            request_id: 0,
        })
        .await
        .expect("put at ALL");
    // Node-2 keeps "v"; the others delete it while it is down.
    cluster.kill(2).await;
    delete_at_quorum(a, b"k").await;
    // Past the grace period, node-0 and node-1 flush and compact the
    // table holding the tombstone: they keep it, node-2 being down.
    tokio::time::sleep(Duration::from_secs(5)).await;
    fill(a, 0, 80).await;
    let kept = stored_versions(a, "k").await;
    assert!(
        kept.len() == 1 && kept[0].tombstone,
        "node-0 dropped the tombstone while node-2 was down: {kept:?}"
    );

    cluster.restart(2).await;
    for i in [0, 2] {
        assert_eq!(
            values_at_all(cluster.addr(i), "k").await,
            Vec::<Vec<u8>>::new(),
            "the deleted key came back, read through node-{i}"
        );
    }

    // Every member up and node-0's next scheduled repair (of every range
    // it replicates, this once) done: GC runs again, and the key stays
    // deleted without its tombstone.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut round = 1;
    while !stored_versions(a, "k").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "node-0 still keeps the tombstone a minute after node-2 returned"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        fill(a, round, 20).await;
        round += 1;
    }
    assert_eq!(values_at_all(a, "k").await, Vec::<Vec<u8>>::new());
}
