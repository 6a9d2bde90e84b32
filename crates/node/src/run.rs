//! Starting and stopping a whole node: storage, gossip, coordinator, gRPC
//! and metrics servers. The `strata-node` binary and `strata dev` (which
//! runs several nodes in one process) both go through [`start`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strata_cluster::{Boot, BootFacts, NodeGossip, NodeId, NodeState, tokens_for};
use strata_engine::Durability;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::NodeConfig;
use crate::changes::Changes;
use crate::context::{Context, Replication, Settings, Topology};
use crate::coordinator::Coordinator;
use crate::dots::{DotCounter, DotError};
use crate::faults::Faults;
use crate::hints::{self, HintError, HintStore, ReplaySettings};
use crate::membership::{Conflict, GossipConfig, Membership, MembershipError};
use crate::metrics::{self, Metrics};
use crate::node_id::{self, NodeIdError};
use crate::repair::Repairer;
use crate::server::{self, ServeError};
use crate::storage::{Storage, StorageError, StoreOptions};
use crate::transport::Peers;

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Flags that conflict.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The node id could not be loaded or stored.
    #[error(transparent)]
    NodeId(#[from] NodeIdError),
    /// The storage engine did not open.
    #[error("opening the storage engine: {0}")]
    Storage(#[from] StorageError),
    /// The write-ahead log is damaged in the middle: the node will not
    /// drop acknowledged writes by itself.
    #[error(
        "opening the storage engine: {0}. The node does not drop acknowledged writes by itself: \
         start it once with --wal-recovery truncate to keep what precedes the damage (then \
         `strata repair` brings the rest back from the other replicas), or wipe the data \
         directory and let the node join again"
    )]
    WalDamaged(StorageError),
    /// A table or the MANIFEST is damaged: every start meets it again.
    #[error("opening the storage engine: {0}; {rebuild}", rebuild = crate::storage::REBUILD)]
    StoreDamaged(StorageError),
    /// `<data_dir>/REJOIN` could not be read.
    #[error("reading {path}: {source}")]
    Rejoin {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The hint store did not open.
    #[error("opening the hint store: {0}")]
    Hints(#[from] HintError),
    /// Dot counters could not be loaded.
    #[error(transparent)]
    Dots(#[from] DotError),
    /// A listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The address to advertise is unknown or does not resolve.
    #[error("{0}")]
    Advertise(String),
    /// The membership file could not be used.
    #[error(transparent)]
    Ring(#[from] crate::ring_file::RingFileError),
    /// Gossip did not start.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// The gRPC server failed.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The metrics server failed.
    #[error("metrics server: {0}")]
    Metrics(std::io::Error),
    /// The cluster removed this node while it was away.
    #[error(
        "this node was removed from the cluster (removenode) and must not own ranges again: \
         wipe its data directory and start it as a new node, which joins"
    )]
    Removed,
    /// Another process was already running under this node's id.
    #[error(
        "node {id} is already running at {other} (gossip address): two nodes cannot share an id; \
         give this one its own --node-id (and a fresh data directory)"
    )]
    DuplicateId {
        /// This node's id.
        id: String,
        /// The other process's gossip address.
        other: String,
    },
    /// A node started earlier runs with another replication factor.
    #[error(
        "this node runs with --replication-factor {mine} and node {peer}, which was running first, with {theirs}: every node of a cluster must run with the same N, and N cannot change on a live cluster"
    )]
    ReplicationFactor {
        /// The other node.
        peer: String,
        /// Its N.
        theirs: u32,
        /// This node's N.
        mine: u32,
    },
    /// A server task panicked.
    #[error("node task failed: {0}")]
    Task(String),
}

/// A started node.
#[derive(Debug)]
pub struct RunningNode {
    /// Its id.
    pub id: NodeId,
    /// `host:port` clients (and, without an internal server, peers) reach
    /// its gRPC server at.
    pub grpc_address: String,
    /// `host:port` of its internal gRPC server, if it runs one.
    pub internal_address: Option<String>,
    /// Its gossip address (UDP).
    pub gossip_address: SocketAddr,
    /// Its metrics endpoint.
    pub metrics_address: SocketAddr,
    ctx: Arc<Context>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), RunError>>,
}

impl RunningNode {
    /// The node's shared state (for its view of the cluster).
    #[must_use]
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Runs until `shutdown` completes (or a server fails), then stops.
    ///
    /// # Errors
    /// The server's error, if it failed.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        tokio::select! {
            () = shutdown => self.stop().await,
            result = &mut self.task => flatten(result),
        }
    }

    /// Stops the servers and gossip and waits for them.
    ///
    /// # Errors
    /// The server's error, if it failed.
    pub async fn stop(self) -> Result<(), RunError> {
        if let crate::topology::Topology::Gossip(membership) = &self.ctx.topology {
            membership.announce_stopping().await;
        }
        let _ = self.stop.send(true);
        flatten(self.task.await)
    }
}

/// How long a stopping node waits for its connections to finish. A graceful
/// HTTP/2 shutdown waits for each client to acknowledge it, and a paused or
/// unreachable client never does; well inside the 60 s the operator gives a
/// pod between SIGTERM and SIGKILL.
const DRAIN: Duration = Duration::from_secs(10);

/// Runs `serve` to its end; once `stopping` completes, gives it at most
/// `grace` more. `None`: abandoned (its connections close with the
/// runtime).
async fn drain_within<T>(
    grace: Duration,
    stopping: impl Future<Output = ()>,
    serve: impl Future<Output = T>,
) -> Option<T> {
    tokio::pin!(serve);
    tokio::select! {
        done = &mut serve => return Some(done),
        () = stopping => {}
    }
    let done = tokio::time::timeout(grace, serve).await.ok();
    if done.is_none() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "client connections still open after the stop's grace period: closing them"
        );
    }
    done
}

/// A damaged log gets its own error, which says what the operator can do.
fn storage_error(e: StorageError) -> RunError {
    if matches!(
        e,
        StorageError::Engine(strata_engine::Error::WalCorruption { .. })
    ) {
        RunError::WalDamaged(e)
    } else if matches!(&e, StorageError::Engine(engine) if engine.is_damage()) {
        RunError::StoreDamaged(e)
    } else {
        RunError::Storage(e)
    }
}

fn flatten(joined: Result<Result<(), RunError>, tokio::task::JoinError>) -> Result<(), RunError> {
    joined.map_err(|e| RunError::Task(e.to_string()))?
}

/// Opens the node's storage, joins gossip and starts serving.
///
/// # Errors
/// [`RunError`] naming the step that failed.
pub async fn start(config: NodeConfig) -> Result<RunningNode, RunError> {
    config.validate().map_err(RunError::Config)?;
    let existing = config.data_dir.join(node_id::NODE_ID_FILE).exists();
    let id = node_id::load_or_init(&config.data_dir, config.node_id.as_deref())?;
    let storage = Arc::new(
        Storage::open_with(
            &config.data_dir.join("engine"),
            Durability::SyncEachGroup,
            StoreOptions {
                tombstone_grace: Duration::from_secs(config.tombstone_grace_secs),
                wal_recovery: config.wal_recovery.into(),
                memtable_bytes: config.memtable_bytes,
                block_cache_bytes: config.block_cache_bytes,
                tombstone_gc_paused: true,
            },
        )
        .map_err(storage_error)?,
    );
    let dots = DotCounter::open(&config.data_dir, id.clone())?;
    let rejoin =
        crate::changes::load_rejoin(&config.data_dir).map_err(|source| RunError::Rejoin {
            path: config.data_dir.join("REJOIN"),
            source,
        })?;
    let incarnation = node_id::incarnation(&config.data_dir)?;
    let generation = node_id::generation(&config.data_dir, crate::clock::now_micros())?;
    let known = crate::ring_file::load(&config.data_dir, &config.cluster_id)?;
    let own_record = known
        .members()
        .find(|(member, _)| **member == id)
        .map(|(_, record)| record.clone());
    if known.is_empty() {
        for warning in config.start_warnings() {
            tracing::warn!("{warning}");
        }
    }
    let recorded = own_record.as_ref().map(|r| r.state);
    // A data directory this node has no record of itself in: a first
    // start, or a lost one (`lost_data.rs`).
    let own_state_is_new = recorded.is_none() && !existing;
    // A join interrupted after it claimed its tokens keeps them: its
    // pending writes must keep coming (as hints while it was down).
    let claimed = own_record
        .filter(|r| r.state == NodeState::Joining)
        .map(|r| r.tokens)
        .unwrap_or_default();
    let seeds = config.seed_list();
    let boot = strata_cluster::boot(BootFacts {
        recorded,
        existing,
        initial_member: config.initial_cluster.iter().any(|m| m == id.as_str()),
        initial_list: !config.initial_cluster.is_empty(),
        has_seeds: !seeds.is_empty(),
        auto_bootstrap: config.auto_bootstrap,
    });
    if let Boot::Refuse(why) = &boot {
        return Err(RunError::Config(format!("node {id}: {why}")));
    }
    tracing::info!(%id, ?boot, "starting");
    let max_connections = max_connections(config.max_connections);
    let bind = |addr: SocketAddr| move |source| RunError::Bind { addr, source };
    let crate::listeners::Listeners {
        grpc: (listener, addr),
        internal,
        gossip: gossip_listen,
        gossip_port,
    } = crate::listeners::Listeners::bind(
        config.listen,
        config.internal_listen,
        config.gossip_listen,
    )
    .await
    .map_err(|(addr, source)| RunError::Bind { addr, source })?;
    let host = match config.advertised_host() {
        Some(host) => host,
        None if addr.ip().is_unspecified() => {
            return Err(RunError::Advertise(format!(
                "listening on {addr}: set --advertise-host to the address other nodes reach this one at"
            )));
        }
        None => strata_cluster::host_of(addr.ip()),
    };
    let grpc_address = format!("{host}:{}", addr.port());
    let internal_address = internal
        .as_ref()
        .map(|(_, local)| format!("{host}:{}", local.port()));
    let gossip_address = if gossip_listen.ip().is_unspecified() {
        tokio::net::lookup_host((host.as_str(), gossip_listen.port()))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                RunError::Advertise(format!("--advertise-host {host} does not resolve"))
            })?
    } else {
        gossip_listen
    };
    let faults = Arc::new(Faults::default());
    if let Some(path) = &config.fault_file {
        faults.load(path);
    }
    let (stop, stopped) = watch::channel(false);
    // A joiner claims its tokens only once no other change is in
    // progress (`changes`); until then it is a tokenless member.
    let (state, tokens) = match boot {
        Boot::Normal => (NodeState::Normal, tokens_for(&id, config.vnodes)),
        Boot::Leave => (NodeState::Leaving, tokens_for(&id, config.vnodes)),
        Boot::Join => (NodeState::Joining, claimed),
        Boot::AwaitJoin | Boot::Refuse(_) => (NodeState::Joining, Vec::new()),
    };
    let me = NodeGossip {
        grpc_address: grpc_address.clone(),
        internal_address: internal_address.clone().unwrap_or_default(),
        gossip_address: String::new(),
        tokens,
        state,
        load_bytes: storage.load_bytes(),
        incarnation,
        departures: known.departures(),
        rejoin,
    };
    let metrics = Arc::new(Metrics::new());
    // Gossip binds the UDP port held for it since the TCP bind.
    drop(gossip_port);
    let membership = Membership::start(
        GossipConfig {
            node_id: id.clone(),
            listen: gossip_listen,
            advertise: gossip_address,
            seeds: gossip_seeds(&seeds, &known, &id),
            cluster_id: config.cluster_id.clone(),
            interval: Duration::from_millis(config.gossip_interval_ms.max(10)),
            phi_threshold: config.phi_threshold,
            faults: Arc::clone(&faults),
            key: match &config.gossip_key_file {
                Some(path) => Some(
                    crate::gossip_auth::KeyFile::load(path)
                        .map(Arc::new)
                        .map_err(|e| RunError::Config(e.to_string()))?,
                ),
                None => None,
            },
            data_dir: config.data_dir.clone(),
            replication_factor: config.replication_factor,
            write_policy: crate::replication_agreement::write_policy(
                config.last_write_wins,
                config.strict_quorum,
            ),
            metrics: Arc::clone(&metrics),
            founders: config
                .initial_cluster
                .iter()
                .filter_map(|f| NodeId::new(f).ok())
                .collect(),
            generation,
        },
        &me,
        known,
    )
    .await?;
    let tokens = match &config.auth_tokens_file {
        Some(path) => Some(Arc::new(
            crate::auth::TokenStore::load(path, Arc::clone(&metrics))
                .map_err(|e| RunError::Config(e.to_string()))?,
        )),
        None => None,
    };
    if let Some(tokens) = &tokens {
        let (tokens, mut stopped) = (Arc::clone(tokens), stop.subscribe());
        tokio::spawn(tokens.watch(Duration::from_secs(2), async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
    }
    let hints = Arc::new(HintStore::open(
        &config.data_dir.join("hints"),
        config.hint_limits(),
        metrics.hints(),
    )?);
    let request_timeout = Duration::from_millis(config.request_timeout_ms.max(1));
    let replay = ReplaySettings {
        interval: Duration::from_millis(config.gossip_interval_ms.clamp(10, 1000)),
        bytes_per_second: config.hint_replay_bytes_per_sec,
        batch_bytes: 1 << 20,
        timeout: request_timeout * 5,
    };
    let tls = match (&config.tls_cert, &config.tls_key, &config.tls_ca) {
        (Some(cert), Some(key), Some(ca)) => Some(
            crate::tls::NodeTls::load(
                cert,
                key,
                ca,
                config.tls_client_ca.as_deref(),
                config.tls_peer_name.as_deref(),
            )
            .map_err(|e| RunError::Config(e.to_string()))?,
        ),
        _ => None,
    };
    if tls.is_some() && config.gossip_key_file.is_none() {
        tracing::warn!(
            "TLS without --gossip-key-file: gossip is not covered by TLS, so a process without a \
             cluster certificate can still gossip its way into the ring; set a gossip key"
        );
    }
    let mut peers = Peers::new(request_timeout.min(Duration::from_secs(1)), request_timeout)
        .with_faults(Arc::clone(&faults));
    if let Some(tls) = &tls {
        peers = peers.with_tls(Arc::clone(&tls.peers));
    }
    let peers = Arc::new(peers);
    let ctx = Arc::new(Context {
        id: id.clone(),
        topology: Topology::Gossip(Arc::clone(&membership)),
        storage: Arc::clone(&storage),
        hints: Arc::clone(&hints),
        transport: Arc::clone(&peers) as _,
        peers,
        metrics: Arc::clone(&metrics),
        settings: Settings {
            replication: Replication {
                factor: config.replication_factor,
                write: config.write_consistency,
                read: config.read_consistency,
                last_write_wins: config.last_write_wins,
                strict_quorum: config.strict_quorum,
            },
            max_value_bytes: config.max_value_bytes,
            max_write_bytes_in_flight: config.max_write_bytes_in_flight,
            request_timeout,
            read_repair_period: config.read_repair_period(),
            speculative_retry: config.speculative_retry(),
        },
    });
    let coordinator = Arc::new(Coordinator::new(Arc::clone(&ctx), dots));
    if let Some(path) = config.fault_file.clone() {
        tracing::warn!(file = %path.display(), "fault injection enabled");
        let (faults, mut stopped) = (Arc::clone(&faults), stop.subscribe());
        tokio::spawn(faults.watch(path, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
    }
    let repairer = Arc::new(Repairer::new(Arc::clone(&ctx), config.repair_settings()));
    let changes = Arc::new(Changes::new(
        Arc::clone(&ctx),
        Arc::clone(&membership),
        config.data_dir.clone(),
        config.stream_settings(),
    ));
    let unsure = matches!(boot, Boot::Normal | Boot::AwaitJoin) && own_state_is_new;
    if unsure || rejoin == strata_cluster::Rejoin::Running {
        let (membership, changes, mut stopped) = (
            Arc::clone(&membership),
            Arc::clone(&changes),
            stop.subscribe(),
        );
        tokio::spawn(crate::lost_data::watch(
            membership,
            changes,
            incarnation,
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            },
        ));
    }
    match boot {
        Boot::Join => {
            let _ = changes.join().await;
        }
        Boot::Leave => {
            let _ = changes.decommission().await;
        }
        Boot::Normal => changes.resume_removal().await,
        Boot::AwaitJoin | Boot::Refuse(_) => {}
    }
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .map_err(bind(config.metrics_listen))?;
    let metrics_address = metrics_listener
        .local_addr()
        .map_err(bind(config.metrics_listen))?;
    tracing::info!(%id, %grpc_address, internal = ?internal_address, gossip = %gossip_address, seeds = ?seeds,
        metrics = %metrics::describe(metrics_address), data_dir = %config.data_dir.display(), "node started");

    let task = tokio::spawn(serve_all(
        Arc::clone(&ctx),
        coordinator,
        Admins { repairer, changes },
        membership,
        Listeners {
            grpc: listener,
            internal: internal.map(|(listener, _)| listener),
            tokens,
            tls: tls.clone(),
            metrics: metrics_listener,
            max_connections,
        },
        replay,
        stopped,
    ));
    Ok(RunningNode {
        id,
        grpc_address,
        internal_address,
        gossip_address,
        metrics_address,
        ctx,
        stop,
        task,
    })
}

/// What runs the node's background operations (repairs, topology changes).
struct Admins {
    repairer: Arc<Repairer>,
    changes: Arc<Changes>,
}

/// Where gossip looks for the cluster: the configured seeds, then every
/// member this node knew (not itself, not one that left) at the gossip
/// address it last had, and at its gRPC host name with that gossip port
/// (on Kubernetes a restarted pod keeps its DNS name but not its IP).
/// Without these, nodes restarted while every seed is down would never
/// find each other.
fn gossip_seeds(
    configured: &[String],
    known: &strata_cluster::KnownMembers,
    me: &strata_cluster::NodeId,
) -> Vec<String> {
    let mut seeds = configured.to_vec();
    for (id, member) in known.members() {
        if id == me || member.state == NodeState::Left || member.gossip_address.is_empty() {
            continue;
        }
        let by_name = member
            .gossip_address
            .parse::<SocketAddr>()
            .ok()
            .zip(member.grpc_address.rsplit_once(':'))
            .map(|(gossip, (host, _))| format!("{host}:{}", gossip.port()));
        for seed in std::iter::once(member.gossip_address.clone()).chain(by_name) {
            if !seeds.contains(&seed) {
                seeds.push(seed);
            }
        }
    }
    seeds
}

/// The sockets a node serves on.
struct Listeners {
    grpc: tokio::net::TcpListener,
    /// Node-to-node traffic, when apart from `grpc`.
    internal: Option<tokio::net::TcpListener>,
    /// Client tokens checked on `grpc`.
    tokens: Option<Arc<crate::auth::TokenStore>>,
    /// TLS for both sockets.
    tls: Option<crate::tls::NodeTls>,
    metrics: tokio::net::TcpListener,
    /// Open connections on `grpc` and `internal` together at most.
    max_connections: usize,
}

/// The connection cap: `asked`, or what the open-file limit leaves once
/// raised to its hard limit. Says so when the limit is too low for the
/// store.
fn max_connections(asked: Option<usize>) -> usize {
    let open_files = match crate::connections::raise_open_file_limit() {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit");
            None
        }
    };
    if let Some(limit) = open_files
        && limit < 2 * crate::connections::RESERVED_FILES
    {
        tracing::warn!(
            limit,
            "the open-file limit is low: the store may keep {} files open; raise it \
             (ulimit -n, systemd LimitNOFILE, the container runtime's nofile)",
            crate::connections::RESERVED_FILES
        );
    }
    let default = open_files.map_or(4_096, crate::connections::default_max_connections);
    let max = asked.unwrap_or(default);
    tracing::info!(max, open_files, "connection cap");
    max
}

async fn serve_all(
    ctx: Arc<Context>,
    coordinator: Arc<Coordinator>,
    admins: Admins,
    membership: Arc<Membership>,
    listeners: Listeners,
    replay: ReplaySettings,
    stopped: watch::Receiver<bool>,
) -> Result<(), RunError> {
    let wait = |mut stopped: watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    // Everything stops on a stop request, when the cluster says this
    // node was removed (its ranges belong to others now), or when a node
    // that was there first conflicts with it (the same id, another N).
    let stopped = {
        let (halt, halted) = watch::channel(false);
        let (mut removed, stop_requested) = (membership.removed(), wait(stopped));
        let mut conflict = membership.conflict();
        tokio::spawn(async move {
            tokio::select! {
                () = stop_requested => {}
                _ = removed.wait_for(|r| *r) => {}
                _ = conflict.wait_for(Option::is_some) => {}
            }
            let _ = halt.send(true);
        });
        halted
    };
    let replay_task = tokio::spawn(hints::replay_loop(
        Arc::clone(&ctx),
        replay,
        wait(stopped.clone()),
    ));
    // Publish the node's load to gossip now and then.
    let (gossip, store) = (Arc::clone(&membership), Arc::clone(&ctx.storage));
    let load_stopped = wait(stopped.clone());
    let load_task = tokio::spawn(async move {
        let publish = async {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                gossip.set_load(store.load_bytes()).await;
            }
        };
        tokio::select! {
            () = publish => {}
            () = load_stopped => {}
        }
    });
    let scrape = Arc::clone(&ctx);
    let metrics_server = tokio::spawn(metrics::serve(
        listeners.metrics,
        Arc::clone(&ctx.metrics),
        move || {
            let view = scrape.view();
            let alive = view.nodes().filter(|(_, n)| n.alive).count();
            scrape
                .metrics
                .set_membership(view.ring().members().len(), alive);
            scrape.storage.db().stats()
        },
        wait(stopped.clone()),
    ));
    let Admins { repairer, changes } = admins;
    let cleanup_task = tokio::spawn(Arc::clone(&changes).auto_cleanup(wait(stopped.clone())));
    let schedule_task = tokio::spawn(Arc::clone(&repairer).schedule(wait(stopped.clone())));
    let gate_task = tokio::spawn(crate::tombstone_gate::follow(
        Arc::clone(&ctx),
        wait(stopped.clone()),
    ));
    let served = drain_within(
        DRAIN,
        wait(stopped.clone()),
        server::serve(
            Arc::clone(&ctx),
            coordinator,
            repairer,
            Some(changes),
            server::Sockets {
                grpc: listeners.grpc,
                internal: listeners.internal,
                tokens: listeners.tokens,
                tls: listeners.tls,
                max_connections: listeners.max_connections,
            },
            wait(stopped),
        ),
    )
    .await
    .unwrap_or(Ok(()));
    let was_removed = *membership.removed().borrow();
    let conflict = membership.conflict().borrow().clone();
    let _ = load_task.await;
    let _ = replay_task.await;
    let _ = schedule_task.await;
    let _ = gate_task.await;
    let _ = cleanup_task.await;
    membership.shutdown().await;
    let metrics_result = metrics_server.await;
    served?;
    metrics_result
        .map_err(|e| RunError::Task(e.to_string()))?
        .map_err(RunError::Metrics)?;
    // Engine threads stop when the last handle to the store drops.
    drop(ctx);
    if was_removed {
        return Err(RunError::Removed);
    }
    match conflict {
        Some(Conflict::Twin(twin)) => Err(RunError::DuplicateId {
            id: membership.node_id().to_string(),
            other: twin.address,
        }),
        Some(Conflict::ReplicationFactor(d)) => Err(RunError::ReplicationFactor {
            peer: d.peer,
            theirs: d.theirs,
            mine: d.mine,
        }),
        None => {
            tracing::info!("node stopped");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_seeds_add_known_members_by_address_and_by_name() {
        use strata_cluster::{KnownMembers, NodeGossip, NodeId, Peer};
        let peer = |id: &str, state, grpc: &str, gossip: &str| Peer {
            id: NodeId::new(id).expect("id"),
            generation: 1,
            gossip: NodeGossip {
                grpc_address: grpc.to_owned(),
                internal_address: String::new(),
                gossip_address: gossip.to_owned(),
                tokens: Vec::new(),
                state,
                load_bytes: 0,
                incarnation: 1,
                departures: Vec::new(),
                rejoin: strata_cluster::Rejoin::None,
            },
            alive: true,
        };
        let mut known = KnownMembers::new("c");
        known.observe(&[
            peer(
                "kv-0",
                NodeState::Normal,
                "kv-0.peers:7400",
                "10.0.0.1:7401",
            ),
            peer(
                "kv-1",
                NodeState::Normal,
                "kv-1.peers:7400",
                "10.0.0.2:7401",
            ),
            peer("kv-2", NodeState::Left, "kv-2.peers:7400", "10.0.0.3:7401"),
            peer(
                "kv-3",
                NodeState::Normal,
                "127.0.0.1:7400",
                "127.0.0.1:7402",
            ),
            peer("kv-4", NodeState::Joining, "kv-4.peers:7400", ""),
        ]);
        let me = NodeId::new("kv-1").expect("id");
        let seeds = gossip_seeds(&["kv-0.peers:7401".to_owned()], &known, &me);
        assert_eq!(
            seeds,
            ["kv-0.peers:7401", "10.0.0.1:7401", "127.0.0.1:7402"],
            "configured first; not itself, not a member that left, not an unknown address; \
             no duplicates"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_waits_for_connections_only_so_long() {
        let never = std::future::pending::<u8>();
        let started = tokio::time::Instant::now();
        let stopping = tokio::time::sleep(Duration::from_secs(1));
        assert_eq!(drain_within(DRAIN, stopping, never).await, None);
        assert_eq!(started.elapsed(), Duration::from_secs(1) + DRAIN);
        // A server that ends by itself (or drains in time) is waited for.
        let serve = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            7
        };
        let stopping = tokio::time::sleep(Duration::from_secs(1));
        assert_eq!(drain_within(DRAIN, stopping, serve).await, Some(7));
        let serve = async { 8 };
        assert_eq!(
            drain_within(DRAIN, std::future::pending(), serve).await,
            Some(8)
        );
    }

    #[test]
    fn a_damaged_log_gets_the_error_that_says_what_to_do() {
        let damaged = storage_error(StorageError::Engine(strata_engine::Error::WalCorruption {
            path: "engine/000001.log".into(),
            offset: 18_157,
            reason: "record payload checksum mismatch".into(),
        }));
        assert!(matches!(damaged, RunError::WalDamaged(_)), "{damaged:?}");
        let text = damaged.to_string();
        assert!(
            text.contains("000001.log") && text.contains("--wal-recovery truncate"),
            "{text}"
        );
        let other = storage_error(StorageError::Writer("stopped".into()));
        assert!(matches!(other, RunError::Storage(_)), "{other:?}");
        // A damaged MANIFEST or table: a restart will not help.
        let table = storage_error(StorageError::Engine(strata_engine::Error::Corruption {
            path: "engine/MANIFEST-000002".into(),
            offset: 0,
            reason: "record payload checksum mismatch".into(),
        }));
        assert!(matches!(table, RunError::StoreDamaged(_)), "{table:?}");
        let text = table.to_string();
        assert!(
            text.contains("MANIFEST-000002") && text.contains("delete its data directory"),
            "{text}"
        );
    }
}
