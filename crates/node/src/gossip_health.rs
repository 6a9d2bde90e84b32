//! What a node says when gossip does not flow.
//!
//! A node started with another `--cluster-id` or another
//! `--gossip-key-file` than its seeds hears no one: it never joins, and
//! before this module said so nowhere useful (chitchat dropped datagrams
//! with a bad tag at debug level, and warned twice a second that a peer
//! refused "wrong cluster" without saying whose id differed). Now:
//!
//! - [`Gated`], the outermost layer of the gossip socket, answers a SYN for
//!   another cluster itself (chitchat's own `BadCluster` answer) and takes a
//!   peer's `BadCluster` answer off the wire, so each case is reported here
//!   once, with both ids where known;
//! - the sealed socket reports a datagram its key does not open;
//! - [`GossipHealth::record`] counts every rejection in
//!   `strata_gossip_rejected_total{reason}` and warns at most once a minute
//!   per peer and reason, naming the setting that differs;
//! - [`GossipHealth::observe`], called on every membership refresh, warns
//!   while a node that should hear other members ([`isolated`]) has heard
//!   none for a while.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::{ChitchatEnvelope, ChitchatMessage};

use strata_cluster::{ClusterView, NodeId, NodeState};

use crate::metrics::Metrics;

/// Why a datagram from a peer was not gossip this node takes part in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The peer answered this node's SYN with `BadCluster`: its cluster id
    /// is not this node's.
    RefusedOurClusterId,
    /// The peer's SYN names this other cluster id.
    OtherCluster(String),
    /// The datagram's tag does not verify with this node's gossip key: the
    /// peer has another key, or none.
    Unauthenticated,
}

impl Rejection {
    /// The `reason` label of `strata_gossip_rejected_total`.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Self::RefusedOurClusterId => "cluster_id_refused",
            Self::OtherCluster(_) => "other_cluster",
            Self::Unauthenticated => "unauthenticated",
        }
    }

    /// What differs and what to do, for the log; `ours` is this node's
    /// cluster id.
    #[must_use]
    pub fn explain(&self, ours: &str) -> String {
        match self {
            Self::RefusedOurClusterId => format!(
                "a peer refuses this node's gossip: it belongs to another cluster than \
                 {ours:?} (--cluster-id); give every member the same cluster id, or point \
                 --seeds at this cluster's nodes"
            ),
            Self::OtherCluster(theirs) => format!(
                "a peer gossips for cluster {theirs:?}, this node for {ours:?} (--cluster-id): \
                 they ignore each other; give every member the same cluster id"
            ),
            Self::Unauthenticated => "gossip from a peer that is not sealed with this node's \
                 key: it has another --gossip-key-file, or none; every member needs the same \
                 key"
            .to_owned(),
        }
    }
}

/// How often one peer's rejections of one kind are logged.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// Rejections logged in all per [`WARN_EVERY`]: a flood from spoofed
/// sources costs a few lines, not one per source.
const MAX_WARNINGS_PER_PERIOD: usize = 16;

/// Peers remembered for rate limiting before the memory starts over.
const MAX_WARNED: usize = 256;

/// Gossip rounds isolated before a node says it hears no one.
pub const ALONE_ROUNDS: u32 = 40;

/// Gossip rounds between those warnings.
pub const ALONE_WARN_ROUNDS: u32 = 120;

/// Whether a warning last given at `last` may be given again at `now`.
#[must_use]
pub fn due(last: Option<Instant>, now: Instant, every: Duration) -> bool {
    last.is_none_or(|t| now.saturating_duration_since(t) >= every)
}

/// Whether `me` hears no other member although it should: it knows of a
/// member that has not left, or it has yet to join (a node that founded a
/// cluster of its own, or is the last one left, is alone by design).
#[must_use]
pub fn isolated(view: &ClusterView, me: &NodeId) -> bool {
    let others = || view.nodes().filter(|(id, _)| *id != me);
    let expects_company = others().any(|(_, n)| n.state != NodeState::Left)
        || view.node(me).is_none_or(|n| n.state != NodeState::Normal);
    expects_company && !others().any(|(_, n)| n.alive)
}

/// Whether a node alone since `since`, last warned about it at `warned`,
/// says so at `now`, with gossip rounds of `round`.
#[must_use]
pub fn alone_warning_due(
    since: Instant,
    warned: Option<Instant>,
    now: Instant,
    round: Duration,
) -> bool {
    now.saturating_duration_since(since) >= round * ALONE_ROUNDS
        && due(warned, now, round * ALONE_WARN_ROUNDS)
}

/// Which rejections are logged: once per [`WARN_EVERY`] per peer and
/// reason, and at most [`MAX_WARNINGS_PER_PERIOD`] in all per period.
#[derive(Debug, Default)]
struct Warnings {
    by_peer: HashMap<(Rejection, SocketAddr), Instant>,
    period: Option<Instant>,
    in_period: usize,
}

impl Warnings {
    /// Whether `key`'s rejection is logged at `now` (and, if so, noted).
    fn admit(&mut self, key: &(Rejection, SocketAddr), now: Instant) -> bool {
        if !due(self.by_peer.get(key).copied(), now, WARN_EVERY) {
            return false;
        }
        if due(self.period, now, WARN_EVERY) {
            self.period = Some(now);
            self.in_period = 0;
        }
        if self.in_period >= MAX_WARNINGS_PER_PERIOD {
            return false;
        }
        self.in_period += 1;
        if self.by_peer.len() >= MAX_WARNED {
            self.by_peer.clear();
        }
        self.by_peer.insert(key.clone(), now);
        true
    }
}

/// Gossip rejections and isolation, counted and reported (see the module
/// documentation).
#[derive(Debug)]
pub struct GossipHealth {
    cluster_id: String,
    metrics: Arc<Metrics>,
    /// The gossip addresses this node starts from, named when it is alone.
    seeds: Vec<String>,
    /// Time between gossip rounds.
    round: Duration,
    warnings: Mutex<Warnings>,
    alone: Mutex<Alone>,
}

/// Since when no other member is live, and when that was last said.
#[derive(Debug)]
struct Alone {
    since: Option<Instant>,
    warned: Option<Instant>,
}

impl GossipHealth {
    /// Reports for a node of `cluster_id` that starts from `seeds` and
    /// gossips every `round`, counting in `metrics`.
    #[must_use]
    pub fn new(cluster_id: &str, seeds: &[String], round: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            cluster_id: cluster_id.to_owned(),
            metrics,
            seeds: seeds.to_vec(),
            round,
            warnings: Mutex::new(Warnings::default()),
            alone: Mutex::new(Alone {
                since: Some(Instant::now()),
                warned: None,
            }),
        }
    }

    /// This node's cluster id.
    #[must_use]
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// Counts `rejection` of gossip from `peer`, and logs it unless the same
    /// was logged for `peer` within [`WARN_EVERY`] (or too many others were).
    pub fn record(&self, rejection: Rejection, peer: SocketAddr) {
        self.metrics.gossip_rejected(rejection.label());
        let key = (rejection, peer);
        let admitted = self
            .warnings
            .lock()
            .expect("gossip warnings")
            .admit(&key, Instant::now());
        if admitted {
            tracing::warn!(%peer, "{}", key.0.explain(&self.cluster_id));
        }
    }

    /// Called on every membership refresh with whether this node is
    /// [`isolated`]. Warns after [`ALONE_ROUNDS`] rounds isolated, and every
    /// [`ALONE_WARN_ROUNDS`] after that.
    pub fn observe(&self, isolated: bool) {
        let now = Instant::now();
        let mut alone = self.alone.lock().expect("gossip isolation");
        if !isolated {
            alone.since = None;
            alone.warned = None;
            return;
        }
        let since = *alone.since.get_or_insert(now);
        if !alone_warning_due(since, alone.warned, now, self.round) {
            return;
        }
        alone.warned = Some(now);
        tracing::warn!(
            seeds = %self.seeds.join(","),
            "no other member heard for {} s: if they run, check that the seeds are their \
             gossip addresses (UDP) and that --cluster-id ({:?}) and --gossip-key-file \
             match theirs; gossip they refuse is logged and counted in \
             strata_gossip_rejected_total",
            now.saturating_duration_since(since).as_secs(),
            self.cluster_id,
        );
    }
}

/// A gossip transport whose sockets keep other clusters' gossip away from
/// chitchat and report it (see the module documentation).
#[derive(Debug)]
pub struct Gated<T> {
    /// The transport underneath (fault injection, sealing, UDP).
    pub inner: T,
    /// Where rejections are reported.
    pub health: Arc<GossipHealth>,
}

struct GatedSocket {
    inner: Box<dyn Socket>,
    health: Arc<GossipHealth>,
}

#[async_trait::async_trait]
impl<T: Transport> Transport for Gated<T> {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        Ok(Box::new(GatedSocket {
            inner: self.inner.open(listen_addr).await?,
            health: Arc::clone(&self.health),
        }))
    }
}

#[async_trait::async_trait]
impl Socket for GatedSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        self.inner.send(to, envelope).await
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let outcome = self.inner.recv().await?;
            let from = outcome.from_addr;
            match &outcome.envelope.message {
                ChitchatMessage::Syn { cluster_id, .. }
                    if cluster_id.as_str() != self.health.cluster_id() =>
                {
                    // A peer's bytes: at most 64 characters of it are kept
                    // and logged.
                    let theirs: String = cluster_id.chars().take(64).collect();
                    self.health.record(Rejection::OtherCluster(theirs), from);
                    // What chitchat answers, so that the peer learns it too.
                    let refusal = ChitchatEnvelope {
                        version: outcome.envelope.version,
                        message: ChitchatMessage::BadCluster,
                    };
                    if let Err(e) = self.inner.send(from, refusal).await {
                        tracing::debug!(peer = %from, error = %e, "answering a SYN for another cluster failed");
                    }
                }
                ChitchatMessage::BadCluster => {
                    self.health.record(Rejection::RefusedOurClusterId, from);
                }
                _ => return Ok(outcome),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chitchat::transport::ChannelTransport;
    use chitchat::{ChitchatConfig, ChitchatId, FailureDetectorConfig};

    use super::*;

    #[test]
    fn a_warning_is_due_first_and_then_once_per_period() {
        let now = Instant::now();
        let every = Duration::from_secs(60);
        assert!(due(None, now, every));
        assert!(!due(Some(now), now + Duration::from_secs(59), every));
        assert!(due(Some(now), now + every, every));
        // A clock read before `last` (another thread's) is not due.
        assert!(!due(Some(now + every), now, every));
    }

    #[test]
    fn rejections_are_logged_once_a_minute_per_peer_and_sixteen_in_all() {
        let mut warnings = Warnings::default();
        let now = Instant::now();
        let peer = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let key = |port| (Rejection::Unauthenticated, peer(port));
        assert!(warnings.admit(&key(1), now));
        assert!(!warnings.admit(&key(1), now + Duration::from_secs(59)));
        // Another reason from the same peer is news.
        assert!(warnings.admit(&(Rejection::RefusedOurClusterId, peer(1)), now));
        let admitted = (2..40).filter(|p| warnings.admit(&key(*p), now)).count();
        assert_eq!(admitted, MAX_WARNINGS_PER_PERIOD - 2);
        let later = now + WARN_EVERY;
        assert!(warnings.admit(&key(1), later));
        assert!(warnings.admit(&key(39), later), "a new period");
    }

    #[test]
    fn a_node_alone_says_so_after_forty_rounds_then_every_hundred_and_twenty() {
        let (start, round) = (Instant::now(), Duration::from_millis(500));
        let at = |rounds: u32| start + round * rounds;
        assert!(!alone_warning_due(start, None, at(39), round));
        assert!(alone_warning_due(start, None, at(40), round));
        assert!(!alone_warning_due(start, Some(at(40)), at(159), round));
        assert!(alone_warning_due(start, Some(at(40)), at(160), round));
    }

    #[test]
    fn a_node_is_isolated_when_it_hears_no_member_it_expects() {
        use crate::testing::member;
        let id = |s: &str| NodeId::new(s).expect("id");
        let (me, other) = (id("me"), id("other"));
        let view = |mine: NodeState, theirs: Option<(NodeState, bool)>| {
            let mut peers = vec![member(&me, "me:1", mine, true)];
            if let Some((state, alive)) = theirs {
                peers.push(member(&other, "other:1", state, alive));
            }
            ClusterView::from_peers(peers)
        };
        use NodeState::{Joining, Left, Normal};
        // A member it knows is down, or a joiner that hears no one.
        assert!(isolated(&view(Normal, Some((Normal, false))), &me));
        assert!(isolated(&view(Joining, None), &me));
        // Hearing one, or alone by design: a cluster of one, the last
        // member left.
        assert!(!isolated(&view(Normal, Some((Normal, true))), &me));
        assert!(!isolated(&view(Joining, Some((Normal, true))), &me));
        assert!(!isolated(&view(Normal, None), &me));
        assert!(!isolated(&view(Normal, Some((Left, false))), &me));
    }

    #[test]
    fn each_rejection_names_the_setting_that_differs() {
        let ours = "prod";
        assert!(
            Rejection::OtherCluster("staging".to_owned())
                .explain(ours)
                .contains("\"staging\", this node for \"prod\" (--cluster-id)")
        );
        assert!(
            Rejection::RefusedOurClusterId
                .explain(ours)
                .contains("another cluster than \"prod\" (--cluster-id)")
        );
        assert!(
            Rejection::Unauthenticated
                .explain(ours)
                .contains("--gossip-key-file")
        );
    }

    fn rejected(metrics: &Metrics, reason: &str) -> u64 {
        let rendered = metrics.render(&strata_engine::Stats::default());
        let line = format!("strata_gossip_rejected_total{{reason=\"{reason}\"}} ");
        rendered
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .map_or(0, |n| n.parse().expect("counter"))
    }

    async fn start(
        transport: &ChannelTransport,
        port: u16,
        cluster_id: &str,
        seed: u16,
    ) -> (chitchat::ChitchatHandle, Arc<Metrics>) {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let metrics = Arc::new(Metrics::new());
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(format!("n{port}"), 1, addr),
            cluster_id: cluster_id.to_owned(),
            gossip_interval: Duration::from_millis(20),
            listen_addr: addr,
            seed_nodes: vec![format!("127.0.0.1:{seed}")],
            failure_detector_config: FailureDetectorConfig::default(),
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let gated = Gated {
            inner: transport.clone(),
            health: Arc::new(GossipHealth::new(
                cluster_id,
                &[],
                Duration::from_millis(20),
                Arc::clone(&metrics),
            )),
        };
        let handle = chitchat::spawn_chitchat(config, Vec::new(), &gated)
            .await
            .expect("chitchat");
        (handle, metrics)
    }

    async fn hears(handle: &chitchat::ChitchatHandle) -> usize {
        handle.chitchat().lock().await.node_states().len()
    }

    #[tokio::test]
    async fn two_clusters_refuse_each_other_and_both_sides_count_it() {
        let transport = ChannelTransport::with_mtu(65_507);
        let (a, a_metrics) = start(&transport, 1, "prod", 2).await;
        let (b, b_metrics) = start(&transport, 2, "staging", 1).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while rejected(&a_metrics, "other_cluster") == 0
            || rejected(&a_metrics, "cluster_id_refused") == 0
            || rejected(&b_metrics, "other_cluster") == 0
            || rejected(&b_metrics, "cluster_id_refused") == 0
        {
            assert!(Instant::now() < deadline, "no rejections counted");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(hears(&a).await, 1, "only itself");
        assert_eq!(hears(&b).await, 1, "only itself");
        assert_eq!(rejected(&a_metrics, "unauthenticated"), 0);
    }

    #[tokio::test]
    async fn one_cluster_s_gossip_passes_the_gate() {
        let transport = ChannelTransport::with_mtu(65_507);
        let (a, a_metrics) = start(&transport, 1, "prod", 2).await;
        let (b, b_metrics) = start(&transport, 2, "prod", 1).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while hears(&a).await < 2 || hears(&b).await < 2 {
            assert!(Instant::now() < deadline, "the two never heard each other");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for metrics in [&a_metrics, &b_metrics] {
            for reason in ["other_cluster", "cluster_id_refused", "unauthenticated"] {
                assert_eq!(rejected(metrics, reason), 0, "{reason}");
            }
        }
    }
}
