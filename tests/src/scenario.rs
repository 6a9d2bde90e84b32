//! Building blocks of the end-to-end scenarios: recording clients that run
//! while the cluster is disturbed, and the settle-and-check ending every
//! scenario shares (hint replay, repair, equal Merkle roots, no
//! acknowledged write lost).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Cluster;
use crate::history::{History, Verdict};
use crate::workload::{Endpoints, Workload, spawn_client};
use strata_proto::v1::ConsistencyLevel;

/// Acknowledged writes every scenario's workload reaches before it stops.
pub const MIN_ACKED: usize = 50;
/// Merkle depth the scenarios' nodes use (`--merkle-depth`).
pub const DEPTH: u32 = 6;
/// Keys the recording clients write.
pub const KEYS: u64 = 40;
/// Node flags of the scenarios: N = 3, few vnodes, scheduled repair off
/// (scenarios repair explicitly after healing), hint window and tombstone
/// grace short but consistent.
pub const ARGS: &[&str] = &[
    "--replication-factor",
    "3",
    "--vnodes",
    "16",
    "--merkle-depth",
    "6",
    "--anti-entropy-interval-secs",
    "0",
    "--hint-window-secs",
    "600",
    "--tombstone-grace-secs",
    "3600",
];

/// The keys the recording clients write.
#[must_use]
pub fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("key-{i}")).collect()
}

/// Recording clients, one per endpoint list.
#[derive(Debug)]
pub struct Clients {
    /// What they did.
    pub history: Arc<History>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Clients {
    /// Starts one client per endpoint list.
    #[must_use]
    pub fn start(endpoints: &[Endpoints], workload: Workload) -> Self {
        let each: Vec<(Endpoints, Workload)> = endpoints
            .iter()
            .map(|e| (Arc::clone(e), workload))
            .collect();
        Self::start_each(&each)
    }

    /// Starts one client per endpoint list, each with its own workload,
    /// recording into one history (a write by one client may supersede
    /// another's).
    #[must_use]
    pub fn start_each(clients: &[(Endpoints, Workload)]) -> Self {
        let history = Arc::new(History::default());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = clients
            .iter()
            .enumerate()
            .map(|(id, (e, workload))| {
                spawn_client(
                    id,
                    Arc::clone(e),
                    Arc::clone(&history),
                    *workload,
                    Arc::clone(&stop),
                )
            })
            .collect();
        Self {
            history,
            stop,
            tasks,
        }
    }

    /// Writes attempted so far, and how many of them were acknowledged.
    #[must_use]
    pub fn writes_since(&self, first: usize) -> (usize, usize) {
        let writes = self.history.writes();
        let during = writes.get(first..).unwrap_or_default();
        let acked = during
            .iter()
            .filter(|w| w.outcome == crate::history::Outcome::Acked)
            .count();
        (during.len(), acked)
    }

    /// Waits until `count` writes after the `first` were attempted: a
    /// count, not a duration, so a slow machine takes longer instead of
    /// failing (bounded by a generous deadline).
    pub async fn until_attempted(&self, first: usize, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.writes_since(first).0 < count {
            assert!(
                Instant::now() < deadline,
                "the workload made no progress: {:?} writes since #{first}",
                self.writes_since(first)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs on until at least [`MIN_ACKED`] writes in all were
    /// acknowledged, then stops the clients.
    pub async fn stop(self) -> Arc<History> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.writes_since(0).1 < MIN_ACKED {
            assert!(
                Instant::now() < deadline,
                "the workload made no progress: {:?}",
                self.writes_since(0)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("client task");
        }
        self.history
    }
}

/// An endpoint list clients can be pointed elsewhere through.
#[must_use]
pub fn endpoints(addrs: &[SocketAddr]) -> Endpoints {
    Arc::new(Mutex::new(addrs.to_vec()))
}

/// Points the clients of `e` at `addrs`.
pub fn set(e: &Endpoints, addrs: &[SocketAddr]) {
    *e.lock().expect("endpoints") = addrs.to_vec();
}

/// QUORUM reads and writes over [`KEYS`] keys.
#[must_use]
pub fn quorum() -> Workload {
    Workload {
        keys: KEYS,
        read: ConsistencyLevel::Quorum,
        write: ConsistencyLevel::Quorum,
        pause: Duration::from_millis(5),
    }
}

/// Hint replay, then a repair on every node, then equal roots: returns
/// the time from `healed` until the replicas converged.
pub async fn settle(cluster: &Cluster, healed: Instant) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.hints_pending().await > 0 {
        assert!(Instant::now() < deadline, "hints were not replayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.repair_all().await;
    cluster
        .wait_until_converged(3, DEPTH, Duration::from_secs(20))
        .await;
    healed.elapsed()
}

/// Prints the scenario's line and checks its verdict.
pub fn report(scenario: &str, verdict: &Verdict, converged: Duration) {
    println!(
        "{scenario}: operations acknowledged {} (writes {}, reads {}), failed {} (writes {}, reads {}), \
         acknowledged writes lost {}, stale reads {}, keys with siblings {}, replicas converged {:.1} s after heal",
        verdict.acked_writes as u64 + verdict.reads.0,
        verdict.acked_writes,
        verdict.reads.0,
        verdict.failed_writes as u64 + verdict.reads.1,
        verdict.failed_writes,
        verdict.reads.1,
        verdict.lost.len(),
        verdict.stale_reads.len(),
        verdict.keys_with_siblings,
        converged.as_secs_f64()
    );
    assert!(
        verdict.acked_writes >= MIN_ACKED,
        "the workload ran: {verdict:?}"
    );
    assert_eq!(verdict.lost, [], "acknowledged writes lost");
    assert_eq!(verdict.phantoms, [], "reads returned values nobody wrote");
}
