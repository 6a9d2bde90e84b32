//! Prometheus metrics, served over HTTP at `/metrics`.
//!
//! Request counters by RPC and gRPC status code, latency histograms by RPC,
//! and the engine's statistics, read at scrape time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use strata_engine::Stats;
use tokio::net::TcpListener;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    rpc: &'static str,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabel {
    rpc: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LevelLabel {
    level: u32,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The node's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RpcLabel, Histogram, fn() -> Histogram>,
    level_files: Family<LevelLabel, Gauge>,
    level_bytes: Family<LevelLabel, Gauge>,
    write_amplification: FloatGauge,
    stall_seconds: FloatGauge,
    stalls_by_cause: Family<CauseLabel, Gauge>,
    stall_seconds_by_cause: Family<CauseLabel, FloatGauge>,
    block_cache_hit_rate: FloatGauge,
    memtable_bytes: Gauge,
    ingested_bytes: Gauge,
    storage_failed: Gauge,
    read_repairs: Counter,
    forwarded: Counter,
    waited_for_gossip: Counter,
    retried_writes: Counter,
    replica_failures: Counter,
    speculative_reads: Counter,
    reads_passing_slow_replicas: Counter,
    replica_writes_shed: Counter,
    writes_refused_overloaded: Counter,
    messages_refused_receiving: Counter,
    sessions_opened: Counter,
    sessions_open: Gauge,
    connections_open: Gauge,
    connections_refused: Counter,
    accept_failures: Counter,
    members: Gauge,
    members_alive: Gauge,
    tombstone_gc_paused: Gauge,
    hints: HintMetrics,
    repair: RepairMetrics,
    stream: StreamMetrics,
    auth_denied: Family<AuthLabels, Counter>,
    gossip_rejected: Family<ReasonLabel, Counter>,
}

/// One of something open (a connection, a session stream), counted in its
/// gauge until dropped.
#[derive(Debug)]
pub struct Open {
    gauge: Gauge,
}

impl Open {
    fn count(gauge: &Gauge) -> Self {
        gauge.inc();
        Self {
            gauge: gauge.clone(),
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Why a request was refused by client authentication (never which
/// token).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// `unauthenticated` or `permission_denied`.
    reason: &'static str,
}

/// Hinted-handoff counters, shared with the hint store.
#[derive(Debug, Clone, Default)]
pub struct HintMetrics {
    /// Hints written to disk.
    pub stored: Counter,
    /// Hints delivered to their target.
    pub replayed: Counter,
    /// Replays to one target that stopped on a failure (retried later).
    pub replay_failures: Counter,
    /// Hints removed undelivered because the hint window passed.
    pub expired: Counter,
    /// Hints not stored: the store was full or overloaded.
    pub dropped: Counter,
    /// Damaged hint segments set aside.
    pub corrupt_segments: Counter,
    /// Hints held now.
    pub pending: Gauge,
    /// Bytes of hint segments held now.
    pub pending_bytes: Gauge,
}

/// Anti-entropy progress, shared with the repair runner.
#[derive(Debug, Clone, Default)]
pub struct RepairMetrics {
    /// Token ranges compared with another replica.
    pub ranges: Counter,
    /// Keys merged in either direction.
    pub keys: Counter,
    /// Bytes of versions exchanged.
    pub bytes: Counter,
    /// Repairs that finished (every range compared).
    pub completed: Counter,
    /// Repairs that failed.
    pub failed: Counter,
    /// Ranges still to compare in the running repair (0: none running).
    pub ranges_pending: Gauge,
    /// Wall-clock seconds of the last completed repair (0: never).
    pub last_completed_seconds: Gauge,
}

/// Topology-change streaming, shared with the change runner.
#[derive(Debug, Clone, Default)]
pub struct StreamMetrics {
    /// Ranges streamed (joins, decommissions, removals).
    pub ranges: Counter,
    /// Keys streamed.
    pub keys: Counter,
    /// Bytes of versions streamed.
    pub bytes: Counter,
    /// Ranges left in the running change (0: none running).
    pub ranges_pending: Gauge,
    /// Cleanups that finished, automatic ones that found nothing to
    /// delete included (those are not kept in the operations history).
    pub cleanups: Counter,
    /// Keys cleanups deleted (ranges this node no longer replicates).
    pub cleanup_keys: Counter,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~13 s.
    Histogram::new(exponential_buckets(50e-6, 2.0, 19))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty set of metrics, registered under the `strata` prefix.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("strata");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RpcLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let level_files = Family::<LevelLabel, Gauge>::default();
        let level_bytes = Family::<LevelLabel, Gauge>::default();
        let write_amplification = FloatGauge::default();
        let stall_seconds = FloatGauge::default();
        let stalls_by_cause = Family::<CauseLabel, Gauge>::default();
        let stall_seconds_by_cause = Family::<CauseLabel, FloatGauge>::default();
        let block_cache_hit_rate = FloatGauge::default();
        let memtable_bytes = Gauge::default();
        let ingested_bytes = Gauge::default();
        let storage_failed = Gauge::default();
        let (read_repairs, forwarded, replica_failures) =
            (Counter::default(), Counter::default(), Counter::default());
        let (members, members_alive) = (Gauge::default(), Gauge::default());
        let tombstone_gc_paused = Gauge::default();
        let retried_writes = Counter::default();
        let waited_for_gossip = Counter::default();
        let speculative_reads = Counter::default();
        let reads_passing_slow_replicas = Counter::default();
        let replica_writes_shed = Counter::default();
        let writes_refused_overloaded = Counter::default();
        let messages_refused_receiving = Counter::default();
        let (sessions_opened, sessions_open) = (Counter::default(), Gauge::default());
        registry.register(
            "sessions_opened",
            "KV.Session streams clients opened to this node",
            sessions_opened.clone(),
        );
        registry.register(
            "sessions_open",
            "KV.Session streams open now (the node reads requests from them)",
            sessions_open.clone(),
        );
        let (connections_open, connections_refused, accept_failures) =
            (Gauge::default(), Counter::default(), Counter::default());
        registry.register(
            "connections_open",
            "gRPC connections (clients and other nodes) open now",
            connections_open.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed as soon as they were accepted because --max-connections were open",
            connections_refused.clone(),
        );
        registry.register(
            "accept_failures",
            "Failed accepts of new connections other than one connection's own (out of file descriptors or memory); accepting pauses 100 ms after each",
            accept_failures.clone(),
        );
        registry.register(
            "writes_refused_overloaded",
            "Client writes refused with RESOURCE_EXHAUSTED because the bytes of writes in flight reached --max-write-bytes-in-flight",
            writes_refused_overloaded.clone(),
        );
        registry.register(
            "messages_refused_receiving",
            "Client messages other than unary writes refused with RESOURCE_EXHAUSTED as their header arrived, because the bytes of such messages still arriving reached --max-write-bytes-in-flight",
            messages_refused_receiving.clone(),
        );
        registry.register(
            "replica_writes_shed",
            "Replica writes not sent because this node already held its bound of bytes for that replica (a replica slower than the others); each is kept as a hint instead",
            replica_writes_shed.clone(),
        );
        registry.register(
            "retried_writes",
            "Write retries recognized by their request id and answered without a new version",
            retried_writes.clone(),
        );
        registry.register(
            "read_repairs",
            "Replicas sent a merged sibling set because a read found them stale",
            read_repairs.clone(),
        );
        registry.register(
            "forwarded_writes",
            "Writes this node forwarded to a replica of the key",
            forwarded.clone(),
        );
        registry.register(
            "requests_waited_for_gossip",
            "Requests that found too few of their replicas alive just after this node started and \
             waited for gossip to settle instead of failing",
            waited_for_gossip.clone(),
        );
        registry.register(
            "speculative_reads",
            "Reads that asked one more replica because one asked had not answered within \
             --speculative-retry-ms",
            speculative_reads.clone(),
        );
        registry.register(
            "reads_passing_slow_replicas",
            "Reads that asked other replicas before one whose recent replica reads were \
             slow (peer_latency.rs)",
            reads_passing_slow_replicas.clone(),
        );
        registry.register(
            "replica_request_failures",
            "Replica reads and writes to other nodes that failed or timed out",
            replica_failures.clone(),
        );
        registry.register(
            "cluster_members",
            "Ring members known through gossip",
            members.clone(),
        );
        registry.register(
            "cluster_members_alive",
            "Ring members the failure detector believes alive",
            members_alive.clone(),
        );
        registry.register(
            "tombstone_gc_paused",
            "1 while compaction keeps expired tombstones: a member is down, or this node has \
             not repaired its ranges since every member was up (tombstone_gate.rs)",
            tombstone_gc_paused.clone(),
        );
        let hints = HintMetrics::default();
        for (name, help, counter) in [
            (
                "hints_stored",
                "Hints written for replicas that were down or failed",
                &hints.stored,
            ),
            (
                "hints_replayed",
                "Hints delivered to their target",
                &hints.replayed,
            ),
            (
                "hint_replay_failures",
                "Hint replays to one target that stopped on a failure (the target is retried \
                 2, 4, 8, then every 16 replay intervals)",
                &hints.replay_failures,
            ),
            (
                "hints_expired",
                "Hints removed undelivered after the hint window",
                &hints.expired,
            ),
            (
                "hints_dropped",
                "Hints not stored because the hint store was full or overloaded",
                &hints.dropped,
            ),
            (
                "hint_segments_corrupt",
                "Damaged hint segment files set aside",
                &hints.corrupt_segments,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "hints_pending",
            "Hints held for other nodes",
            hints.pending.clone(),
        );
        registry.register(
            "hints_pending_bytes",
            "Bytes of hint segments held for other nodes",
            hints.pending_bytes.clone(),
        );
        let stream = StreamMetrics::default();
        for (name, help, counter) in [
            (
                "stream_ranges",
                "Token ranges streamed by topology changes",
                &stream.ranges,
            ),
            (
                "stream_keys",
                "Keys streamed by topology changes",
                &stream.keys,
            ),
            (
                "stream_bytes",
                "Bytes of versions streamed by topology changes",
                &stream.bytes,
            ),
            (
                "cleanups_completed",
                "Cleanups that finished, automatic ones that deleted nothing included",
                &stream.cleanups,
            ),
            (
                "cleanup_keys",
                "Keys deleted by cleanups (ranges this node no longer replicates)",
                &stream.cleanup_keys,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "stream_ranges_pending",
            "Ranges left in the running topology change (0: none running)",
            stream.ranges_pending.clone(),
        );
        let repair = RepairMetrics::default();
        for (name, help, counter) in [
            (
                "repair_ranges",
                "Token ranges anti-entropy compared with another replica",
                &repair.ranges,
            ),
            (
                "repair_keys",
                "Keys anti-entropy merged, in either direction",
                &repair.keys,
            ),
            (
                "repair_bytes",
                "Bytes of versions anti-entropy exchanged",
                &repair.bytes,
            ),
            (
                "repairs_completed",
                "Anti-entropy repairs that compared every range",
                &repair.completed,
            ),
            (
                "repairs_failed",
                "Anti-entropy repairs that failed",
                &repair.failed,
            ),
        ] {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "repair_ranges_pending",
            "Ranges left in the running repair (0: none running)",
            repair.ranges_pending.clone(),
        );
        registry.register(
            "repair_last_completed_timestamp_seconds",
            "Unix time of the last completed repair (0: never)",
            repair.last_completed_seconds.clone(),
        );
        registry.register(
            "requests",
            "Client requests by RPC and gRPC status code",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Client request latency by RPC",
            latency.clone(),
        );
        registry.register(
            "engine_level_files",
            "Table files per LSM level",
            level_files.clone(),
        );
        registry.register(
            "engine_level_bytes",
            "Bytes of tables per LSM level",
            level_bytes.clone(),
        );
        registry.register(
            "engine_write_amplification",
            "Table bytes written per user byte since start",
            write_amplification.clone(),
        );
        registry.register(
            "engine_stall_seconds",
            "Time writers were delayed or stalled",
            stall_seconds.clone(),
        );
        registry.register(
            "engine_stalls",
            "Write stalls since start by cause (level0_slowdown: a 1 ms delay; memtables_full: waiting for flush; level0_full: waiting for compaction)",
            stalls_by_cause.clone(),
        );
        registry.register(
            "engine_stall_cause_seconds",
            "Time writers were delayed or stalled since start, by cause",
            stall_seconds_by_cause.clone(),
        );
        registry.register(
            "engine_block_cache_hit_rate",
            "Block cache hit rate",
            block_cache_hit_rate.clone(),
        );
        registry.register(
            "engine_memtable_bytes",
            "Bytes in the mutable memtable",
            memtable_bytes.clone(),
        );
        registry.register(
            "engine_ingested_bytes",
            "Table bytes loaded behind the store's data (ranges streamed to this node) since it opened",
            ingested_bytes.clone(),
        );
        registry.register(
            "storage_failed",
            "1 when the store refuses writes (a full disk, an IO error, a damaged table)",
            storage_failed.clone(),
        );
        let auth_denied = Family::<AuthLabels, Counter>::default();
        registry.register(
            "auth_denied",
            "Client requests refused by token authentication, by reason",
            auth_denied.clone(),
        );
        let gossip_rejected = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "gossip_rejected",
            "Gossip datagrams from peers this node does not gossip with, by reason: cluster_id_refused (a peer refused this node's --cluster-id), other_cluster (a peer's SYN named another cluster id), unauthenticated (not sealed with this node's --gossip-key-file)",
            gossip_rejected.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            level_files,
            level_bytes,
            write_amplification,
            stall_seconds,
            stalls_by_cause,
            stall_seconds_by_cause,
            block_cache_hit_rate,
            memtable_bytes,
            ingested_bytes,
            storage_failed,
            read_repairs,
            forwarded,
            waited_for_gossip,
            retried_writes,
            replica_failures,
            speculative_reads,
            reads_passing_slow_replicas,
            replica_writes_shed,
            writes_refused_overloaded,
            messages_refused_receiving,
            sessions_opened,
            sessions_open,
            connections_open,
            connections_refused,
            accept_failures,
            members,
            members_alive,
            tombstone_gc_paused,
            hints,
            repair,
            stream,
            auth_denied,
            gossip_rejected,
        }
    }

    /// The hinted-handoff counters (clones share the registered values).
    #[must_use]
    pub fn hints(&self) -> HintMetrics {
        self.hints.clone()
    }

    /// The streaming counters (clones share the registered values).
    #[must_use]
    pub fn stream(&self) -> StreamMetrics {
        self.stream.clone()
    }

    /// The anti-entropy counters (clones share the registered values).
    #[must_use]
    pub fn repair(&self) -> RepairMetrics {
        self.repair.clone()
    }

    /// Counts replicas repaired by a read.
    pub fn read_repaired(&self, replicas: usize) {
        self.read_repairs.inc_by(replicas as u64);
    }

    /// Counts a write forwarded to a replica.
    pub fn forwarded_write(&self) {
        self.forwarded.inc();
    }

    /// Counts a request that waited for gossip to settle.
    pub fn waited_for_gossip(&self) {
        self.waited_for_gossip.inc();
    }

    /// Counts a retried write recognized by its request id.
    pub fn retried_write(&self) {
        self.retried_writes.inc();
    }

    /// Counts a request refused by client authentication.
    pub fn auth_denied(&self, unauthenticated: bool) {
        let reason = if unauthenticated {
            "unauthenticated"
        } else {
            "permission_denied"
        };
        self.auth_denied.get_or_create(&AuthLabels { reason }).inc();
    }

    /// Counts gossip from a peer this node does not gossip with
    /// (`gossip_health.rs`).
    pub fn gossip_rejected(&self, reason: &'static str) {
        self.gossip_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts a read that asked other replicas before a slow one.
    pub fn read_passed_slow_replica(&self) {
        self.reads_passing_slow_replicas.inc();
    }

    /// Counts a read that asked one more replica for a slow one.
    pub fn speculative_read(&self) {
        self.speculative_reads.inc();
    }

    /// Counts a failed replica request.
    pub fn replica_failed(&self) {
        self.replica_failures.inc();
    }

    /// Counts a replica write not sent because the replica's queue on this
    /// node was full.
    pub fn replica_write_shed(&self) {
        self.replica_writes_shed.inc();
    }

    /// Counts a client write refused by the write budget.
    pub fn write_refused_overloaded(&self) {
        self.writes_refused_overloaded.inc();
    }

    /// Counts a client message refused as its header arrived.
    pub fn message_refused_receiving(&self) {
        self.messages_refused_receiving.inc();
    }

    /// Counts a connection accepted; the gauge of open ones falls again
    /// when the returned guard is dropped.
    #[must_use]
    pub fn connection_opened(&self) -> Open {
        Open::count(&self.connections_open)
    }

    /// Counts a connection closed at once for the connection cap.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Counts a failed accept (not one connection's own error).
    pub fn accept_failed(&self) {
        self.accept_failures.inc();
    }

    /// Counts a client session stream opened; the gauge of open ones falls
    /// again when the returned guard is dropped.
    #[must_use]
    pub fn session_opened(&self) -> Open {
        self.sessions_opened.inc();
        Open::count(&self.sessions_open)
    }

    /// Sets the membership gauges.
    pub fn set_membership(&self, members: usize, alive: usize) {
        self.members.set(i64::try_from(members).unwrap_or(i64::MAX));
        self.members_alive
            .set(i64::try_from(alive).unwrap_or(i64::MAX));
    }

    /// Sets whether tombstone GC is paused.
    pub fn set_tombstone_gc_paused(&self, paused: bool) {
        self.tombstone_gc_paused.set(i64::from(paused));
    }

    /// Records one finished request.
    pub fn record(&self, rpc: &'static str, code: tonic::Code, elapsed: Duration) {
        let code = format!("{code:?}");
        self.requests
            .get_or_create(&RequestLabels { rpc, code })
            .inc();
        self.latency
            .get_or_create(&RpcLabel { rpc })
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition, with engine gauges refreshed from `stats`.
    #[must_use]
    pub fn render(&self, stats: &Stats) -> String {
        for (level, l) in stats.levels.iter().enumerate() {
            let label = LevelLabel {
                level: u32::try_from(level).unwrap_or(u32::MAX),
            };
            self.level_files
                .get_or_create(&label)
                .set(i64::try_from(l.files).unwrap_or(i64::MAX));
            self.level_bytes
                .get_or_create(&label)
                .set(i64::try_from(l.bytes).unwrap_or(i64::MAX));
        }
        self.write_amplification.set(stats.write_amplification);
        self.stall_seconds.set(stats.stall_micros as f64 / 1e6);
        for total in &stats.stalls_by_cause {
            let label = CauseLabel {
                cause: total.cause.label(),
            };
            self.stalls_by_cause
                .get_or_create(&label)
                .set(i64::try_from(total.count).unwrap_or(i64::MAX));
            self.stall_seconds_by_cause
                .get_or_create(&label)
                .set(total.micros as f64 / 1e6);
        }
        self.block_cache_hit_rate.set(stats.block_cache_hit_rate);
        self.memtable_bytes
            .set(i64::try_from(stats.memtable_bytes).unwrap_or(i64::MAX));
        self.ingested_bytes
            .set(i64::try_from(stats.ingested_bytes).unwrap_or(i64::MAX));
        self.storage_failed.set(i64::from(stats.failure.is_some()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Serves `GET /metrics` on `listener` until `shutdown` completes; `stats`
/// reads the engine's statistics at scrape time.
///
/// # Errors
/// IO errors from the listener.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    stats: impl Fn() -> Stats + Send + Sync + 'static,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stats = Arc::new(stats);
    let (ready, live) = (Arc::clone(&stats), Arc::clone(&stats));
    let app = axum::Router::new()
        // For probes that cannot speak TLS (a kubelet's gRPC probe), as
        // the gRPC health checks (`storage_health.rs`): readiness fails
        // while the store refuses writes, liveness only when a restart
        // can cure it (not damage).
        .route(
            strata_proto::health::READY_PATH,
            axum::routing::get(move || {
                let ready = Arc::clone(&ready);
                async move { probe(&ready(), false) }
            }),
        )
        .route(
            strata_proto::health::LIVE_PATH,
            axum::routing::get(move || {
                let live = Arc::clone(&live);
                async move { probe(&live(), true) }
            }),
        )
        .route(
            "/metrics",
            axum::routing::get(move || {
                let (metrics, stats) = (Arc::clone(&metrics), Arc::clone(&stats));
                async move {
                    (
                        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                        metrics.render(&stats()),
                    )
                }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A probe's answer: 503 with the failure while the store refuses writes
/// (for `liveness`, only if a restart can cure it: not damage).
fn probe(stats: &Stats, liveness: bool) -> (axum::http::StatusCode, String) {
    match &stats.failure {
        Some(failure) if !(liveness && stats.failure_is_damage) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("storage failed: {failure}"),
        ),
        Some(failure) => (
            axum::http::StatusCode::OK,
            format!("alive; the store is damaged (a restart would not help): {failure}"),
        ),
        None => (axum::http::StatusCode::OK, "ok".to_owned()),
    }
}

/// The address a metrics listener is bound to, for the startup log.
#[must_use]
pub fn describe(addr: SocketAddr) -> String {
    format!("http://{addr}/metrics")
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[test]
    fn renders_requests_latency_and_engine_stats() {
        let m = Metrics::new();
        m.record("Put", tonic::Code::Ok, Duration::from_micros(300));
        m.record("Put", tonic::Code::Unavailable, Duration::from_millis(2));
        m.hints().stored.inc_by(3);
        m.hints().pending.set(2);
        m.repair().completed.inc();
        m.repair().last_completed_seconds.set(1_700_000_000);
        let stats = Stats {
            levels: vec![strata_engine::LevelStats {
                files: 3,
                bytes: 4096,
            }],
            write_amplification: 2.5,
            ingested_bytes: 1 << 20,
            stalls_by_cause: vec![strata_engine::StallTotal {
                cause: strata_engine::StallCause::TooManyMemtables,
                count: 4,
                micros: 1_500_000,
            }],
            ..Stats::default()
        };
        let text = m.render(&stats);
        for expected in [
            r#"strata_requests_total{rpc="Put",code="Ok"} 1"#,
            r#"strata_requests_total{rpc="Put",code="Unavailable"} 1"#,
            r#"strata_request_duration_seconds_count{rpc="Put"} 2"#,
            r#"strata_engine_level_files{level="0"} 3"#,
            r#"strata_engine_level_bytes{level="0"} 4096"#,
            "strata_engine_write_amplification 2.5",
            "strata_engine_ingested_bytes 1048576",
            r#"strata_engine_stalls{cause="memtables_full"} 4"#,
            r#"strata_engine_stall_cause_seconds{cause="memtables_full"} 1.5"#,
            "strata_hints_stored_total 3",
            "strata_hints_replayed_total 0",
            "strata_hint_replay_failures_total 0",
            "strata_hints_expired_total 0",
            "strata_hints_dropped_total 0",
            "strata_hints_pending 2",
            "strata_repairs_completed_total 1",
            "strata_repair_last_completed_timestamp_seconds 1700000000",
            "strata_repair_ranges_pending 0",
            "strata_storage_failed 0",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[tokio::test]
    async fn serves_the_exposition_over_http() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = Arc::new(Metrics::new());
        metrics.record("Get", tonic::Code::Ok, Duration::from_micros(100));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, metrics, Stats::default, async {
            let _ = stopped.await;
        }));
        let response = get(addr, "/metrics").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            response.contains(r#"strata_requests_total{rpc="Get",code="Ok"} 1"#),
            "{response}"
        );
        stop.send(()).expect("running");
        server.await.expect("join").expect("clean shutdown");
    }

    /// GET `path` from `addr`; the whole response.
    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .expect("request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("response");
        response
    }

    #[tokio::test]
    async fn healthz_fails_once_the_store_refuses_writes_livez_unless_it_is_damaged() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        // 0: fine, 1: a full disk, 2: damage.
        let state = Arc::new(std::sync::atomic::AtomicU8::new(0));
        let source = Arc::clone(&state);
        let stats = move || match source.load(std::sync::atomic::Ordering::Relaxed) {
            0 => Stats::default(),
            1 => Stats {
                failure: Some("io error: No space left on device".to_owned()),
                ..Stats::default()
            },
            _ => Stats {
                failure: Some("000011.sst is corrupt at offset 7".to_owned()),
                failure_is_damage: true,
                ..Stats::default()
            },
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, Arc::new(Metrics::new()), stats, async {
            let _ = stopped.await;
        }));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/livez").await.starts_with("HTTP/1.1 200"));
        state.store(1, std::sync::atomic::Ordering::Relaxed);
        for path in ["/healthz", "/livez"] {
            let response = get(addr, path).await;
            assert!(response.starts_with("HTTP/1.1 503"), "{path}: {response}");
            assert!(response.contains("No space left on device"), "{response}");
        }
        assert!(
            get(addr, "/metrics")
                .await
                .contains("strata_storage_failed 1")
        );
        state.store(2, std::sync::atomic::Ordering::Relaxed);
        let response = get(addr, "/healthz").await;
        assert!(response.starts_with("HTTP/1.1 503"), "{response}");
        let response = get(addr, "/livez").await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("corrupt"), "{response}");
        stop.send(()).expect("running");
        server.await.expect("join").expect("clean shutdown");
    }
}
