//! The operator's Prometheus metrics and its HTTP endpoints: `/metrics`,
//! `/healthz` (the process runs) and `/readyz` (it reaches the API server
//! and, when elected, reconciles).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming one KVCluster.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// Labels of a reconcile's outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok` or `error`.
    pub outcome: String,
}

/// Every metric the operator exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<OutcomeLabels, Counter>,
    duration: Histogram,
    ranges_done: Family<ClusterLabels, Gauge>,
    ranges_total: Family<ClusterLabels, Gauge>,
    changing: Family<ClusterLabels, Gauge>,
    leader: Gauge,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("strata_operator");
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles run, by outcome",
            reconciles.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile takes",
            duration.clone(),
        );
        let ranges_done = Family::<ClusterLabels, Gauge>::default();
        registry.register(
            "change_ranges_done",
            "Ranges streamed by the topology change in flight",
            ranges_done.clone(),
        );
        let ranges_total = Family::<ClusterLabels, Gauge>::default();
        registry.register(
            "change_ranges_total",
            "Ranges the topology change in flight streams",
            ranges_total.clone(),
        );
        let changing = Family::<ClusterLabels, Gauge>::default();
        registry.register(
            "change_in_progress",
            "1 while a join or decommission is in flight",
            changing.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            duration,
            ranges_done,
            ranges_total,
            changing,
            leader,
            ready: AtomicBool::new(false),
        }
    }

    /// Counts one reconcile and its duration.
    pub fn reconciled(&self, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "error" };
        self.reconciles
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// The change progress of one cluster (`None`: no change in flight).
    pub fn change(&self, cluster: &ClusterLabels, progress: Option<(u64, u64)>) {
        let (on, done, total) = progress.map_or((0, 0, 0), |(d, t)| (1, d, t));
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.changing.get_or_create(cluster).set(on);
        self.ranges_done.get_or_create(cluster).set(clamp(done));
        self.ranges_total.get_or_create(cluster).set(clamp(total));
    }

    /// Whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Marks the operator ready (it reached the API server).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Serves the endpoints on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(metrics);
    axum::serve(listener, app).await
}

/// Binds `address` for [`serve`].
///
/// # Errors
/// The address is in use or not local.
pub async fn bind(address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_and_change_progress_are_exported() {
        let metrics = Metrics::new();
        metrics.reconciled(true, Duration::from_millis(20));
        metrics.reconciled(false, Duration::from_millis(20));
        let cluster = ClusterLabels {
            namespace: "prod".into(),
            name: "kv".into(),
        };
        metrics.change(&cluster, Some((3, 12)));
        let text = metrics.encode();
        assert!(
            text.contains(r#"strata_operator_reconciles_total{outcome="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"strata_operator_reconciles_total{outcome="error"} 1"#));
        assert!(
            text.contains(r#"strata_operator_change_ranges_done{namespace="prod",name="kv"} 3"#)
        );
        assert!(
            text.contains(r#"strata_operator_change_ranges_total{namespace="prod",name="kv"} 12"#)
        );
        assert!(text.contains("strata_operator_reconcile_duration_seconds_count 2"));
    }
}
