//! Test fixtures: a node's [`Context`] over a temporary directory, built
//! step by step (`ContextBuilder::new(dir).factor(3).build()`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use strata_cluster::{ConsistencyLevel, NodeGossip, NodeId, NodeState, Peer, Rejoin, tokens_for};

use crate::context::{Context, Replication, Settings, Topology};
use crate::hints::{HintLimits, HintStore};
use crate::metrics::Metrics;
use crate::storage::Storage;
use crate::transport::{Peers, ReplicaTransport};

/// Builds a [`Context`] for node `strata-0` (by default) alone on its ring,
/// with N = 1, QUORUM reads and writes, 1 KiB values, a 2 s timeout and
/// read repair on every read.
pub(crate) struct ContextBuilder<'a> {
    dir: &'a Path,
    id: NodeId,
    topology: Option<Topology>,
    transport: Option<Arc<dyn ReplicaTransport>>,
    hint_limits: HintLimits,
    settings: Settings,
}

impl<'a> ContextBuilder<'a> {
    pub(crate) fn new(dir: &'a Path) -> Self {
        Self {
            dir,
            id: NodeId::new("strata-0").expect("id"),
            topology: None,
            transport: None,
            hint_limits: HintLimits::default(),
            settings: Settings {
                replication: Replication {
                    factor: 1,
                    write: ConsistencyLevel::Quorum,
                    read: ConsistencyLevel::Quorum,
                    last_write_wins: false,
                    strict_quorum: false,
                },
                max_value_bytes: 1024,
                max_write_bytes_in_flight: 64 << 20,
                request_timeout: Duration::from_secs(2),
                read_repair_period: 1,
                speculative_retry: None,
            },
        }
    }

    pub(crate) fn id(mut self, id: &NodeId) -> Self {
        self.id = id.clone();
        self
    }

    pub(crate) fn factor(mut self, factor: u32) -> Self {
        self.settings.replication.factor = factor;
        self
    }

    pub(crate) fn last_write_wins(mut self, on: bool) -> Self {
        self.settings.replication.last_write_wins = on;
        self
    }

    pub(crate) fn strict_quorum(mut self, on: bool) -> Self {
        self.settings.replication.strict_quorum = on;
        self
    }

    pub(crate) fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.request_timeout = timeout;
        self
    }

    pub(crate) fn speculative_retry(mut self, after: Option<Duration>) -> Self {
        self.settings.speculative_retry = after;
        self
    }

    pub(crate) fn read_repair_period(mut self, period: u32) -> Self {
        self.settings.read_repair_period = period;
        self
    }

    pub(crate) fn topology(mut self, topology: Topology) -> Self {
        self.topology = Some(topology);
        self
    }

    pub(crate) fn hint_window(mut self, window: Duration) -> Self {
        self.hint_limits.window = window;
        self
    }

    pub(crate) fn transport(mut self, transport: Arc<dyn ReplicaTransport>) -> Self {
        self.transport = Some(transport);
        self
    }

    pub(crate) fn build(self) -> Arc<Context> {
        let metrics = Arc::new(Metrics::new());
        let storage = Arc::new(
            Storage::open(
                &self.dir.join("engine"),
                strata_engine::Durability::SyncEachGroup,
            )
            .expect("open storage"),
        );
        let hints = Arc::new(
            HintStore::open(&self.dir.join("hints"), self.hint_limits, metrics.hints())
                .expect("open hints"),
        );
        let timeout = self.settings.request_timeout;
        let peers = Arc::new(Peers::new(timeout.min(Duration::from_secs(1)), timeout));
        let transport = self
            .transport
            .unwrap_or_else(|| Arc::clone(&peers) as Arc<dyn ReplicaTransport>);
        Arc::new(Context {
            topology: self
                .topology
                .unwrap_or_else(|| Topology::single(&self.id, 16)),
            id: self.id,
            storage,
            hints,
            peers,
            transport,
            metrics,
            settings: self.settings,
        })
    }
}

/// A member for a fixed test view: 16 tokens, both addresses `address`
/// (the in-memory transport resolves members by id).
pub(crate) fn member(id: &NodeId, address: &str, state: NodeState, alive: bool) -> Peer {
    Peer {
        id: id.clone(),
        generation: 0,
        gossip: NodeGossip {
            grpc_address: address.to_owned(),
            internal_address: address.to_owned(),
            gossip_address: String::new(),
            tokens: tokens_for(id, 16),
            state,
            load_bytes: 0,
            incarnation: 1,
            departures: Vec::new(),
            rejoin: Rejoin::None,
        },
        alive,
    }
}
