//! Gossip membership and failure detection, on chitchat.
//!
//! Chitchat (scuttlebutt anti-entropy gossip over UDP with a phi-accrual
//! failure detector) carries each node's [`NodeGossip`]; a refresh task
//! turns the gossiped states and the detector's verdicts into a
//! [`ClusterView`] (`strata_cluster::membership`, pure) that coordinators
//! read without locking chitchat. Why chitchat and not foca: see
//! ARCHITECTURE.md.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::faults::{Faults, FaultyTransport};
use crate::gossip_auth::SealedUdp;
use crate::gossip_health::{Gated, GossipHealth};
use crate::gossip_settle::Settle;
use crate::parsed_gossip::ParsedGossip;
use crate::replication_agreement::{Disagreement, PeerFactor, disagreements, policy_differences};
use crate::ring_file;
use crate::twin::{Sighting, Twin, TwinWatch};
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use strata_cluster::{
    ClusterView, Departure, KEY_LOAD, KEY_LOST_DATA, KEY_REJOIN, KEY_REPLICATION_FACTOR, KEY_STATE,
    KEY_STOPPING, KEY_TOKENS, KEY_WRITE_POLICY, KnownMembers, NodeGossip, NodeId, NodeState, Peer,
    Rejoin, Token, departure_values, departures_key, format_lost_data, parse_lost_data,
    rejoin_name, state_name,
};
use tokio::sync::watch;

/// Gossip settings.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    /// This node.
    pub node_id: NodeId,
    /// UDP address to gossip on.
    pub listen: SocketAddr,
    /// The gossip address peers reach this node at.
    pub advertise: SocketAddr,
    /// `host:port` of other nodes' gossip addresses to start from.
    pub seeds: Vec<String>,
    /// Nodes with another cluster id are ignored.
    pub cluster_id: String,
    /// Time between gossip rounds. The failure detector convicts a silent
    /// node after about `phi_threshold` mean heartbeat intervals.
    pub interval: Duration,
    /// Phi-accrual conviction threshold.
    pub phi_threshold: f64,
    /// Links cut by fault injection (tests).
    pub faults: Arc<Faults>,
    /// Gossip's shared key (`None`: unauthenticated gossip).
    pub key: Option<Arc<crate::gossip_auth::KeyFile>>,
    /// Where the members this node knows are kept (`ring_file.rs`).
    pub data_dir: std::path::PathBuf,
    /// The replication factor N this node runs with (gossiped: every node
    /// must agree, `replication_agreement.rs`).
    pub replication_factor: u32,
    /// This node's write policy (gossiped; peers report a difference).
    pub write_policy: String,
    /// Where gossip from peers this node does not gossip with is counted.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// `--initial-cluster`: the founders a new cluster's member waits to
    /// hear before its requests stop waiting (`gossip_settle.rs`).
    pub founders: Vec<NodeId>,
    /// This process's gossip generation: it tells peers this is a new
    /// process of the node (the start time, above every earlier start's:
    /// `node_id::generation`).
    pub generation: u64,
}

/// Gossip rounds a stopping node keeps gossiping after it announced its
/// stop, for the news to reach its peers.
pub const STOP_NOTICE_ROUNDS: u32 = 2;

/// Why this node must stop: another node was there first and disagrees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// A process started earlier runs under this node's id.
    Twin(Twin),
    /// A node started earlier runs with another replication factor.
    ReplicationFactor(Disagreement),
}

/// Why gossip could not start.
#[derive(Debug, thiserror::Error)]
#[error("starting gossip on {listen}/udp: {reason}")]
pub struct MembershipError {
    listen: SocketAddr,
    reason: String,
}

/// This node's membership: its gossip handle and the latest view.
pub struct Membership {
    node_id: NodeId,
    handle: tokio::sync::Mutex<Option<ChitchatHandle>>,
    chitchat: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    view: RwLock<Arc<ClusterView>>,
    epoch: AtomicU64,
    /// Counts changes of a member, state, token set or incarnation.
    ring_changes: AtomicU64,
    /// This node's incarnation is recorded as having lost its data (see
    /// [`Membership::lost_data_marked`]).
    lost_data: std::sync::atomic::AtomicBool,
    stop: watch::Sender<bool>,
    /// Every member known (durable); the view is completed with it.
    known: tokio::sync::Mutex<Known>,
    /// This node's own announced state and incarnation.
    own: std::sync::Mutex<(NodeState, u64)>,
    /// Removals this node runs: departures it gossips for a member that
    /// cannot speak for itself.
    removing: std::sync::Mutex<Vec<Departure>>,
    /// What this node last gossiped as departures (the values of
    /// `departures_key(0..)`) and as members that lost their data.
    gossiped: tokio::sync::Mutex<(Vec<String>, String)>,
    /// Turns true when the cluster says this incarnation was removed.
    removed: watch::Sender<bool>,
    /// Other processes gossiping under this node's id.
    twins: std::sync::Mutex<TwinWatch>,
    /// The replication factor this node runs with.
    replication_factor: u32,
    /// Peers already reported for another replication factor.
    disagreeing: std::sync::Mutex<std::collections::HashSet<String>>,
    /// This node's write policy.
    write_policy: String,
    /// Peers and their write policies already reported as differing.
    other_policies: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    /// Set when a node that was there first conflicts with this one: this
    /// one must stop.
    conflict: watch::Sender<Option<Conflict>>,
    /// Reports gossip that does not flow: refused peers, no peer at all.
    health: Arc<GossipHealth>,
    /// Opens once this node hears the members it knows after its start.
    settle: Settle,
    /// Peers' gossip generations already logged as stopping.
    stopping_seen: std::sync::Mutex<std::collections::HashSet<ChitchatId>>,
    /// Time between gossip rounds.
    round: Duration,
    /// Each participant's gossip, parsed once per change.
    parsed: std::sync::Mutex<ParsedGossip>,
}

/// The known members and whether the file still lacks a change.
#[derive(Debug)]
struct Known {
    members: KnownMembers,
    unsaved: bool,
    data_dir: std::path::PathBuf,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("node_id", &self.node_id)
            .field("epoch", &self.epoch.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// Starts gossiping `me` and a task that keeps the view current.
    ///
    /// # Errors
    /// [`MembershipError`] when the UDP socket cannot be bound.
    pub async fn start(
        config: GossipConfig,
        me: &NodeGossip,
        known: KnownMembers,
    ) -> Result<Arc<Self>, MembershipError> {
        let fail = |reason: String| MembershipError {
            listen: config.listen,
            reason,
        };
        let generation = config.generation;
        let chitchat_config = ChitchatConfig {
            chitchat_id: ChitchatId::new(config.node_id.as_str(), generation, config.advertise),
            cluster_id: config.cluster_id.clone(),
            gossip_interval: config.interval,
            listen_addr: config.listen,
            seed_nodes: config.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: config.phi_threshold,
                initial_interval: config.interval,
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let mut key_values = me.to_key_values();
        key_values.push((
            KEY_REPLICATION_FACTOR.to_owned(),
            config.replication_factor.to_string(),
        ));
        key_values.push((KEY_WRITE_POLICY.to_owned(), config.write_policy.clone()));
        let health = Arc::new(GossipHealth::new(
            &config.cluster_id,
            &config.seeds,
            config.interval,
            Arc::clone(&config.metrics),
        ));
        let handle = chitchat::spawn_chitchat(
            chitchat_config,
            key_values,
            &Gated {
                inner: FaultyTransport {
                    faults: Arc::clone(&config.faults),
                    inner: SealedUdp {
                        key: config.key.clone(),
                        health: Arc::clone(&health),
                    },
                },
                health: Arc::clone(&health),
            },
        )
        .await
        .map_err(|e| fail(format!("{e:#}")))?;
        let (stop, mut stopped) = watch::channel(false);
        let membership = Arc::new(Self {
            node_id: config.node_id.clone(),
            chitchat: handle.chitchat(),
            handle: tokio::sync::Mutex::new(Some(handle)),
            view: RwLock::new(Arc::new(ClusterView::default())),
            epoch: AtomicU64::new(0),
            ring_changes: AtomicU64::new(0),
            lost_data: std::sync::atomic::AtomicBool::new(false),
            stop,
            known: tokio::sync::Mutex::new(Known {
                members: known,
                unsaved: false,
                data_dir: config.data_dir.clone(),
            }),
            own: std::sync::Mutex::new((me.state, me.incarnation)),
            removing: std::sync::Mutex::new(Vec::new()),
            gossiped: tokio::sync::Mutex::new((departure_values(&me.departures).0, String::new())),
            removed: watch::Sender::new(false),
            // Ten gossip rounds of a rising heartbeat: far longer than an
            // earlier incarnation's last heartbeats take to arrive.
            twins: std::sync::Mutex::new(TwinWatch::new(generation, config.interval * 10)),
            replication_factor: config.replication_factor,
            disagreeing: std::sync::Mutex::new(std::collections::HashSet::new()),
            write_policy: config.write_policy.clone(),
            other_policies: std::sync::Mutex::new(std::collections::HashSet::new()),
            conflict: watch::Sender::new(None),
            health,
            settle: Settle::new(config.interval, &config.node_id, &config.founders),
            stopping_seen: std::sync::Mutex::new(std::collections::HashSet::new()),
            round: config.interval,
            parsed: std::sync::Mutex::new(ParsedGossip::default()),
        });
        membership.refresh().await;
        let weak = Arc::downgrade(&membership);
        let interval = config.interval;
        tokio::spawn(async move {
            // Refresh a few times per gossip round: liveness changes show
            // up within a fraction of the detector's timeout.
            let mut tick = tokio::time::interval(interval / 4);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
                let Some(membership) = weak.upgrade() else {
                    return;
                };
                membership.refresh().await;
            }
        });
        Ok(membership)
    }

    /// The latest view of the cluster.
    #[must_use]
    pub fn view(&self) -> Arc<ClusterView> {
        Arc::clone(&self.view.read().expect("view lock"))
    }

    /// The latch that opens once gossip has settled after this node's
    /// start (`gossip_settle.rs`).
    #[must_use]
    pub fn settle(&self) -> &Settle {
        &self.settle
    }

    /// Increases whenever the view changes.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Increases whenever a member, its state, its tokens or its
    /// incarnation changes (not liveness or addresses): what makes data
    /// move between nodes. Every view is counted, so a change that began
    /// and ended between two looks is still seen.
    #[must_use]
    pub fn ring_changes(&self) -> u64 {
        self.ring_changes.load(Ordering::Acquire)
    }

    /// This node's id.
    #[must_use]
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// Publishes this node's load.
    pub async fn set_load(&self, bytes: u64) {
        self.chitchat
            .lock()
            .await
            .self_node_state()
            .set(KEY_LOAD, bytes);
    }

    /// Publishes this node's state and tokens, and makes the change
    /// durable and visible in this node's own view before returning.
    pub async fn announce(&self, state: NodeState, tokens: &[Token]) {
        self.publish(state, tokens, None).await;
    }

    /// [`Membership::announce`], with where this node stands in getting
    /// its lost data back, published at the same time.
    pub async fn announce_rejoin(&self, state: NodeState, tokens: &[Token], rejoin: Rejoin) {
        self.publish(state, tokens, Some(rejoin)).await;
    }

    async fn publish(&self, state: NodeState, tokens: &[Token], rejoin: Option<Rejoin>) {
        let gossip = NodeGossip {
            grpc_address: String::new(),
            internal_address: String::new(),
            gossip_address: String::new(),
            tokens: tokens.to_vec(),
            state,
            load_bytes: 0,
            incarnation: 0,
            departures: Vec::new(),
            rejoin: strata_cluster::Rejoin::None,
        };
        {
            let mut chitchat = self.chitchat.lock().await;
            let node = chitchat.self_node_state();
            for (key, value) in gossip.to_key_values() {
                if key == KEY_STATE || key == KEY_TOKENS {
                    node.set(key, value);
                }
            }
            if let Some(name) = rejoin.and_then(rejoin_name) {
                node.set(KEY_REJOIN, name);
            }
        }
        self.own.lock().expect("own state").0 = state;
        tracing::info!(
            state = state_name(state),
            tokens = tokens.len(),
            rejoin = rejoin.and_then(rejoin_name).unwrap_or("-"),
            "announced"
        );
        self.refresh().await;
    }

    /// Tells peers this node is stopping (a graceful stop) and gives the
    /// news [`STOP_NOTICE_ROUNDS`] gossip rounds (at most 2 s) to spread:
    /// they take it as down from then on, not after the failure detector's
    /// timeout. This node's own view is unchanged: it serves what still
    /// reaches it until it stops.
    pub async fn announce_stopping(&self) {
        self.chitchat
            .lock()
            .await
            .self_node_state()
            .set(KEY_STOPPING, "1");
        tracing::info!("announced this node's stop to its peers");
        tokio::time::sleep((self.round * STOP_NOTICE_ROUNDS).min(Duration::from_secs(2))).await;
    }

    /// Leaves gossip: peers will see this node's heartbeats stop.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        if let Some(handle) = self.handle.lock().await.take()
            && let Err(e) = handle.shutdown().await
        {
            tracing::warn!(error = %e, "gossip did not stop cleanly");
        }
    }

    /// Rebuilds the view from chitchat's state.
    async fn refresh(&self) {
        let mut lost: Vec<(NodeId, u64)>;
        let peers = {
            let chitchat = self.chitchat.lock().await;
            let live: std::collections::HashSet<&ChitchatId> = chitchat.live_nodes().collect();
            self.watch_twins(&chitchat, &live);
            self.check_peer_settings(&chitchat, &live);
            // What the live members recorded as having lost its data:
            // every node routes around such a member alike, the member
            // itself included, even before its own records would say so.
            lost = chitchat
                .node_states()
                .iter()
                .filter(|(id, _)| live.contains(id))
                .filter_map(|(_, state)| state.get(KEY_LOST_DATA))
                .flat_map(parse_lost_data)
                .collect();
            let stopping = self.note_stopping(&chitchat);
            self.parsed
                .lock()
                .expect("parsed gossip")
                .parse(chitchat.node_states())
                .into_iter()
                .filter_map(|(id, gossip)| {
                    Some(Peer {
                        alive: live.contains(id) && !stopping.contains(id),
                        id: NodeId::new(&*id.node_id).ok()?,
                        generation: id.generation_id,
                        gossip,
                    })
                })
                .collect::<Vec<_>>()
        };
        let (_, incarnation) = *self.own.lock().expect("own state");
        let (peers, recorded) = self.remember(peers).await;
        lost.extend(recorded);
        self.lost_data.store(
            lost.contains(&(self.node_id.clone(), incarnation)),
            Ordering::Release,
        );
        lost.sort_unstable();
        lost.dedup();
        let view = ClusterView::following(&self.view(), peers, &lost);
        self.health
            .observe(crate::gossip_health::isolated(&view, &self.node_id));
        let (own_state, _) = *self.own.lock().expect("own state");
        if view
            .node(&self.node_id)
            .is_some_and(|n| n.state == NodeState::Left)
            && own_state != NodeState::Left
            && !self.removed.send_replace(true)
        {
            tracing::error!(
                "the cluster removed this node (removenode); it must not own ranges again: \
                 wipe its data directory and start it as a new node, which joins"
            );
        }
        let mut current = self.view.write().expect("view lock");
        if !same_ring(&current, &view) {
            self.ring_changes.fetch_add(1, Ordering::AcqRel);
        }
        if !same_routing(&current, &view) {
            for (id, node) in view.nodes() {
                let before = current.node(id).map(|n| n.alive);
                if before != Some(node.alive) {
                    tracing::info!(node = %id, alive = node.alive, address = %node.grpc_address, "membership change");
                }
            }
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
        let view = Arc::new(view);
        *current = Arc::clone(&view);
        drop(current);
        // After the view is published: a request the latch releases reads
        // this view or a later one.
        self.settle.observe(&view, &self.node_id);
    }
}

impl Membership {
    /// The peers (gossip generations) that announced a graceful stop, each
    /// logged the first time it is seen.
    fn note_stopping(
        &self,
        chitchat: &chitchat::Chitchat,
    ) -> std::collections::HashSet<ChitchatId> {
        let stopping: std::collections::HashSet<ChitchatId> = chitchat
            .node_states()
            .iter()
            .filter(|(id, state)| {
                *id.node_id != *self.node_id.as_str() && state.get(KEY_STOPPING).is_some()
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut seen = self.stopping_seen.lock().expect("stopping peers");
        for id in &stopping {
            if seen.insert(id.clone()) {
                tracing::info!(node = %id.node_id, "a member announced its stop: down from now");
            }
        }
        // Forget generations gossip no longer carries.
        seen.retain(|id| stopping.contains(id));
        stopping
    }

    /// Records what gossip says in the durable member list (written before
    /// the view using it is published) and returns `peers` completed with
    /// every known member gossip does not hear, as down, and the members
    /// recorded as having lost their data.
    async fn remember(&self, peers: Vec<Peer>) -> (Vec<Peer>, Vec<(NodeId, u64)>) {
        let mut known = self.known.lock().await;
        if known.members.observe(&peers) {
            known.unsaved = true;
        }
        if known.unsaved {
            let (dir, snapshot) = (known.data_dir.clone(), known.members.clone());
            match tokio::task::spawn_blocking(move || ring_file::save(&dir, &snapshot)).await {
                Ok(Ok(())) => known.unsaved = false,
                Ok(Err(e)) => tracing::error!(error = %e, "membership not saved; retrying"),
                Err(e) => tracing::error!(error = %e, "membership save task failed; retrying"),
            }
        }
        let completed = known.members.complete(peers);
        let snapshot = known.members.clone();
        drop(known);
        self.publish_records(&snapshot).await;
        (completed, snapshot.lost_data())
    }

    /// Every member this node knows, with its last known state.
    pub async fn known(&self) -> KnownMembers {
        self.known.lock().await.members.clone()
    }

    /// Whether a live member recorded this node's incarnation as lacking
    /// the data of an earlier one (see
    /// [`Membership::lost_data_reported_by`]). Every node's view then
    /// reads from its ranges' other replicas (`NodeInfo::rejoining`).
    #[must_use]
    pub fn lost_data_marked(&self) -> bool {
        self.lost_data.load(Ordering::Acquire)
    }

    /// The live members that recorded this node's incarnation as having
    /// started without its predecessor's data (`MemberRecord::lost_data`):
    /// its data directory was lost or wiped.
    pub async fn lost_data_reported_by(&self) -> Vec<NodeId> {
        let (_, incarnation) = *self.own.lock().expect("own state");
        let chitchat = self.chitchat.lock().await;
        let me = chitchat.self_chitchat_id().clone();
        let live: std::collections::HashSet<&ChitchatId> = chitchat.live_nodes().collect();
        chitchat
            .node_states()
            .iter()
            .filter(|(id, _)| id.node_id != me.node_id && live.contains(id))
            .filter(|(_, state)| {
                state.get(KEY_LOST_DATA).is_some_and(|value| {
                    parse_lost_data(value)
                        .iter()
                        .any(|(id, i)| *id == self.node_id && *i == incarnation)
                })
            })
            .filter_map(|(id, _)| NodeId::new(&*id.node_id).ok())
            .collect()
    }

    /// Gossips that `departure.id` is being removed (or was): every node
    /// moves that incarnation to the departure's state.
    pub async fn depart(&self, departure: Departure) {
        {
            let mut removing = self.removing.lock().expect("removing");
            removing.retain(|d| d.id != departure.id);
            removing.push(departure);
        }
        self.refresh().await;
    }

    /// Turns true when the cluster says this node was removed: it must
    /// stop serving (its data directory belongs to a removed member).
    #[must_use]
    pub fn removed(&self) -> watch::Receiver<bool> {
        self.removed.subscribe()
    }

    /// Set when a node started earlier conflicts with this one (the same
    /// id: `twin.rs`; another replication factor:
    /// `replication_agreement.rs`): this one must stop.
    #[must_use]
    pub fn conflict(&self) -> watch::Receiver<Option<Conflict>> {
        self.conflict.subscribe()
    }

    /// Stops this node for `conflict` (the first one found).
    fn stop_for(&self, conflict: Conflict) {
        if self.conflict.borrow().is_none() {
            self.conflict.send_replace(Some(conflict));
        }
    }

    /// Compares this node's replication factor with the live peers' and
    /// acts on the ones that differ; reports (once) the live peers that
    /// coordinate writes with another policy.
    fn check_peer_settings(
        &self,
        chitchat: &chitchat::Chitchat,
        live: &std::collections::HashSet<&ChitchatId>,
    ) {
        let me = chitchat.self_chitchat_id();
        let peers: Vec<PeerFactor> = chitchat
            .node_states()
            .iter()
            .filter(|(id, _)| id.node_id != me.node_id)
            .map(|(id, state)| PeerFactor {
                id: id.node_id.to_string(),
                generation: id.generation_id,
                replication_factor: state
                    .get(KEY_REPLICATION_FACTOR)
                    .and_then(|n| n.parse().ok()),
                write_policy: state.get(KEY_WRITE_POLICY).map(str::to_owned),
                live: live.contains(id),
            })
            .collect();
        for (peer, theirs) in policy_differences(&self.write_policy, &peers) {
            let new = self
                .other_policies
                .lock()
                .expect("other policies")
                .insert((peer.to_owned(), theirs.to_owned()));
            if new {
                tracing::warn!(
                    peer = %peer,
                    theirs = %theirs,
                    mine = %self.write_policy,
                    "a node coordinates writes with another policy (--last-write-wins, \
                     --strict-quorum): each request follows its coordinator's, so give every \
                     node the same flags"
                );
            }
        }
        let mine = self.replication_factor;
        for d in disagreements(mine, me.generation_id, &peers) {
            if !self
                .disagreeing
                .lock()
                .expect("disagreeing")
                .insert(d.peer.clone())
            {
                continue;
            }
            if d.older {
                tracing::error!(
                    peer = %d.peer,
                    theirs = d.theirs,
                    mine,
                    "this node's replication factor differs from the cluster's; stopping (every node must run with the same --replication-factor)"
                );
                self.stop_for(Conflict::ReplicationFactor(d));
            } else {
                tracing::error!(
                    peer = %d.peer,
                    theirs = d.theirs,
                    mine,
                    "a node started later with another replication factor; it stops itself"
                );
            }
        }
    }

    /// Looks for other processes gossiping under this node's id in
    /// chitchat's state and acts on the ones found.
    fn watch_twins(
        &self,
        chitchat: &chitchat::Chitchat,
        live: &std::collections::HashSet<&ChitchatId>,
    ) {
        let me = chitchat.self_chitchat_id();
        let sightings: Vec<Sighting> = chitchat
            .node_states()
            .iter()
            .filter(|(id, _)| id.node_id == me.node_id && *id != me)
            .map(|(id, state)| Sighting {
                generation: id.generation_id,
                address: id.gossip_advertise_addr.to_string(),
                heartbeat: u64::from(state.heartbeat()),
                live: live.contains(id),
            })
            .collect();
        if sightings.is_empty() {
            return;
        }
        let twins = self
            .twins
            .lock()
            .expect("twin watch")
            .observe(std::time::Instant::now(), &sightings);
        for twin in twins {
            if twin.older {
                tracing::error!(
                    node = %self.node_id,
                    other = %twin.address,
                    "another node with this id was running first; stopping this one (give each node its own --node-id)"
                );
                self.stop_for(Conflict::Twin(twin));
            } else {
                tracing::error!(
                    node = %self.node_id,
                    other = %twin.address,
                    "a second process gossips under this node's id; it started later and stops itself (give each node its own --node-id)"
                );
            }
        }
    }

    /// Publishes what this node's records tell the others, when it
    /// changed: the departures it knows (the members it records as left,
    /// plus the removals it runs) and the members that lost their data.
    async fn publish_records(&self, known: &KnownMembers) {
        let mut departures = known.departures();
        for d in self.removing.lock().expect("removing").iter() {
            departures.retain(|k| k.id != d.id);
            departures.push(d.clone());
        }
        let (departures, left_out) = departure_values(&departures);
        let lost_data = format_lost_data(&known.lost_data());
        let mut gossiped = self.gossiped.lock().await;
        if gossiped.0 != departures || gossiped.1 != lost_data {
            if left_out > 0 {
                tracing::warn!(
                    node = %self.node_id,
                    left_out,
                    "too many removed members to gossip them all: a member that was down while one of those left is not told of it by this node"
                );
            }
            let mut chitchat = self.chitchat.lock().await;
            let state = chitchat.self_node_state();
            for (i, (new, old)) in departures.iter().zip(&gossiped.0).enumerate() {
                if new != old {
                    state.set(departures_key(i), new.clone());
                }
            }
            state.set(KEY_LOST_DATA, lost_data.clone());
            *gossiped = (departures, lost_data);
        }
    }
}

/// Whether two views hold the same members in the same states, with the
/// same tokens and incarnations, rejoining or not alike.
fn same_ring(a: &ClusterView, b: &ClusterView) -> bool {
    let key = |v: &ClusterView| {
        v.nodes()
            .map(|(id, n)| {
                (
                    id.clone(),
                    n.state,
                    n.tokens.clone(),
                    n.incarnation,
                    n.rejoining,
                )
            })
            .collect::<Vec<_>>()
    };
    key(a) == key(b)
}

/// Equal for routing: load changes constantly and does not count.
fn same_routing(a: &ClusterView, b: &ClusterView) -> bool {
    let key = |v: &ClusterView| {
        v.nodes()
            .map(|(id, n)| {
                (
                    id.clone(),
                    n.grpc_address.clone(),
                    n.internal_address.clone(),
                    n.state,
                    n.alive,
                    n.tokens.clone(),
                    n.rejoining,
                )
            })
            .collect::<Vec<_>>()
    };
    key(a) == key(b)
}

#[cfg(test)]
mod tests {
    use strata_cluster::{NodeGossip, Peer, tokens_for};

    use super::*;

    fn view(b_state: NodeState, b_alive: bool, b_incarnation: u64) -> ClusterView {
        let member = |id: &str, state, alive, incarnation| {
            let id = NodeId::new(id).expect("id");
            Peer {
                gossip: NodeGossip {
                    grpc_address: format!("{id}:7400"),
                    internal_address: String::new(),
                    gossip_address: String::new(),
                    tokens: tokens_for(&id, 8),
                    state,
                    load_bytes: 0,
                    incarnation,
                    departures: Vec::new(),
                    rejoin: strata_cluster::Rejoin::None,
                },
                id,
                generation: 1,
                alive,
            }
        };
        ClusterView::from_peers([
            member("node-a", NodeState::Normal, true, 7),
            member("node-b", b_state, b_alive, b_incarnation),
        ])
    }

    #[test]
    fn the_ring_changes_with_states_and_incarnations_not_with_liveness() {
        let normal = view(NodeState::Normal, true, 3);
        assert!(same_ring(&normal, &view(NodeState::Normal, false, 3)));
        assert!(!same_routing(&normal, &view(NodeState::Normal, false, 3)));
        // node-b lost its data: a new incarnation, joining again under the
        // same tokens, then normal again. Each step counts.
        assert!(!same_ring(&normal, &view(NodeState::Normal, true, 4)));
        assert!(!same_ring(
            &view(NodeState::Normal, true, 4),
            &view(NodeState::Joining, true, 4)
        ));
    }
}
