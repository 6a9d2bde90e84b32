//! What the parts of a running node share, built once in `run.rs` and
//! handed to the coordinator, the repairer, hint replay and the services.
//! A part takes the [`Context`] (or just the pieces it needs); nothing
//! reaches shared state through another part's accessors.

use std::sync::Arc;
use std::time::Duration;

use strata_cluster::{ClusterView, ConsistencyLevel, NodeId};

use crate::hints::HintStore;
use crate::metrics::Metrics;
use crate::storage::Storage;
pub use crate::topology::Topology;
use crate::transport::{Peers, ReplicaTransport};

/// Cluster-wide replication settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// N.
    pub factor: u32,
    /// Default write consistency (W).
    pub write: ConsistencyLevel,
    /// Default read consistency (R).
    pub read: ConsistencyLevel,
    /// Resolve concurrent writes by timestamp instead of keeping siblings.
    pub last_write_wins: bool,
    /// Only the key's own replicas count toward W: no stand-in acks.
    pub strict_quorum: bool,
}

/// How this node serves requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// N, W, R and the conflict policy.
    pub replication: Replication,
    /// Largest value accepted.
    pub max_value_bytes: usize,
    /// Bytes of client writes coordinated at once at most.
    pub max_write_bytes_in_flight: usize,
    /// How long a request may wait for replicas.
    pub request_timeout: Duration,
    /// Every this many reads, ask all replicas instead of R and repair the
    /// stale ones (Cassandra's read-repair chance as a period): 1 = every
    /// read, 0 = never.
    pub read_repair_period: u32,
    /// A read still waiting for a replica this long after it started asks
    /// one more live replica, when there is one (Cassandra's speculative
    /// retry): a paused or slow replica costs the read this delay instead
    /// of `request_timeout`. `None`: never.
    pub speculative_retry: Option<Duration>,
}

/// The shared state of one node.
#[derive(Debug)]
pub struct Context {
    /// This node.
    pub id: NodeId,
    /// Where the cluster view comes from.
    pub topology: Topology,
    /// The local replica store.
    pub storage: Arc<Storage>,
    /// Hints this node holds for other nodes.
    pub hints: Arc<HintStore>,
    /// Channels to other nodes (forwarding, hint delivery, repair).
    pub peers: Arc<Peers>,
    /// How replica reads and writes reach other nodes (in production the
    /// same [`Peers`]).
    pub transport: Arc<dyn ReplicaTransport>,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    /// How requests are served.
    pub settings: Settings,
}

impl Context {
    /// The cluster as this node sees it now.
    #[must_use]
    pub fn view(&self) -> Arc<ClusterView> {
        self.topology.view()
    }

    /// N.
    #[must_use]
    pub fn n(&self) -> usize {
        self.settings.replication.factor as usize
    }
}
