//! A node restored from a copy of its data directory (a backup, a volume
//! snapshot) issues no version id (dot) that it issued after the copy was
//! taken: its peers hold versions with those dots, and a new write under
//! one of them would be taken for the old one and dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use strata_proto::v1::{Consistency, ConsistencyLevel, PutRequest};
use strata_tests::Cluster;
use strata_tests::cluster::{kv, stored_versions};

/// Two nodes, both replicas of every key: node-0 coordinates every write
/// below, node-1 keeps what it replicated.
const ARGS: &[&str] = &["--replication-factor", "2", "--vnodes", "8"];

/// A blind write (no context) of `value` to `key` through `addr`, on both
/// replicas before it is answered.
async fn put_at_all(addr: SocketAddr, key: &str, value: &str) {
    kv(addr)
        .await
        .put(PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: value.as_bytes().to_vec().into(),
            context: Vec::new().into(),
            consistency: Some(Consistency::named(ConsistencyLevel::All)),
            request_id: 0,
        })
        .await
        .unwrap_or_else(|e| panic!("put {key}={value}: {e}"));
}

/// `(value, dot counter)` of each version node `addr` stores for `key`,
/// sorted by value.
async fn stored(addr: SocketAddr, key: &str) -> Vec<(String, u64)> {
    let mut versions: Vec<(String, u64)> = stored_versions(addr, key)
        .await
        .into_iter()
        .map(|v| {
            (
                String::from_utf8_lossy(&v.value).into_owned(),
                v.dot.map_or(0, |d| d.counter),
            )
        })
        .collect();
    versions.sort();
    versions
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

fn now_micros() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_micros(),
    )
    .expect("micros fit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_from_a_backup_issues_no_dot_twice() {
    let mut cluster = Cluster::start(2, ARGS).await;
    let b = cluster.addr(1);
    // Node-0 has issued counters: its reservation is on disk.
    put_at_all(cluster.addr(0), "before", "v").await;
    let data = cluster.process(0).data_dir().to_owned();
    let backup = tempfile::tempdir().expect("tempdir");

    // The backup, taken while node-0 is stopped; then it runs again (a
    // rolling restart, say) and coordinates a write both replicas keep.
    cluster.stop(0);
    copy_dir(&data, backup.path());
    cluster.restart(0).await;
    put_at_all(cluster.addr(0), "k", "after-backup").await;
    let issued = stored(b, "k").await;
    assert_eq!(issued.len(), 1, "{issued:?}");
    let last_counter = issued[0].1;

    // Restored later (by the clock) than its last counter: the documented
    // assumption (docs/topology.md, "Backups and restores").
    let deadline = Instant::now() + Duration::from_secs(10);
    while now_micros() <= last_counter {
        assert!(
            Instant::now() < deadline,
            "clock behind counter {last_counter}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.stop(0);
    std::fs::remove_dir_all(&data).expect("remove data");
    copy_dir(backup.path(), &data);
    cluster.restart(0).await;
    // The restored node lacks the write; a blind write through it does
    // not supersede it, so both are siblings on node-1.
    let a = cluster.addr(0);
    assert_eq!(stored(a, "k").await, Vec::new(), "restored to before it");
    put_at_all(a, "k", "after-restore").await;

    let kept = stored(b, "k").await;
    let values: Vec<&str> = kept.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(
        values,
        ["after-backup", "after-restore"],
        "node-1 dropped a write it acknowledged: {kept:?}"
    );
    assert!(
        kept[1].1 > last_counter,
        "the restored node reissued counter {} (issued {last_counter} before)",
        kept[1].1
    );
}
