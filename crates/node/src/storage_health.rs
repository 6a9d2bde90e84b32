//! Health follows the store: once the engine refuses writes (a WAL
//! append, flush or compaction failed: a full disk, an IO error; or a read
//! met damage), the node reports NOT_SERVING on `grpc.health.v1.Health`
//! for the server as a whole and each service, as `/healthz` on the
//! metrics port does (`metrics.rs`): readiness, so clients go elsewhere.
//!
//! Liveness is a service of its own, [`LIVENESS`] (and `/livez`): NOT_SERVING
//! only when a restart can cure the failure. A full disk or an IO error:
//! only a restart reopens the store, so the liveness probe restarting the
//! pod is the recovery (it works once space is freed or the volume grown,
//! and crash-loops visibly until then). Damage: a restart meets the same
//! bytes, so the node stays up (serving the other replicas' repair and
//! streaming reads, and its status saying what to do) until it is rebuilt.

use std::time::Duration;

use strata_proto::v1::{
    admin_server::AdminServer, kv_server::KvServer, replica_server::ReplicaServer,
};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::services::{AdminService, KvService, ReplicaService};

/// How often the store's state is checked.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

pub(crate) use strata_proto::health::LIVENESS;

/// A failed store, as the watcher sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreFailure {
    /// Why, and what to do.
    pub(crate) text: String,
    /// The store's bytes are damaged: a restart meets them again.
    pub(crate) damaged: bool,
}

/// Checks `failure` every [`CHECK_EVERY`]; at the first failure logs it
/// once and marks the server and its services NOT_SERVING, and
/// [`LIVENESS`] too unless the store is damaged. Returns then, or when
/// `stop` turns true.
pub(crate) async fn watch(
    health: HealthReporter,
    failure: impl Fn() -> Option<StoreFailure>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Some(failure) = failure() {
            if failure.damaged {
                tracing::error!(
                    failure = %failure.text,
                    "the store refuses writes; readiness checks now fail (liveness does not: a restart would meet the damage again)"
                );
            } else {
                tracing::error!(
                    failure = %failure.text,
                    "the store refuses writes; health checks now fail"
                );
                health
                    .set_service_status(LIVENESS, ServingStatus::NotServing)
                    .await;
            }
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            health.set_not_serving::<KvServer<KvService>>().await;
            health.set_not_serving::<AdminServer<AdminService>>().await;
            health
                .set_not_serving::<ReplicaServer<ReplicaService>>()
                .await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use tonic_health::pb::health_server::Health as _;
    use tonic_health::pb::{HealthCheckRequest, health_check_response};
    use tonic_health::server::HealthService;

    use super::*;

    async fn status(service: &HealthService, name: &str) -> i32 {
        service
            .check(tonic::Request::new(HealthCheckRequest {
                service: name.to_owned(),
            }))
            .await
            .expect("known service")
            .into_inner()
            .status
    }

    /// Health after a store that was fine fails as `damaged` says.
    async fn after_a_failure(damaged: bool) -> HealthService {
        let health = HealthReporter::new();
        health.set_serving::<KvServer<KvService>>().await;
        health
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        let service = HealthService::from_health_reporter(health.clone());
        let failed = Arc::new(AtomicBool::new(false));
        let source = Arc::clone(&failed);
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let watcher = tokio::spawn(watch(
            health,
            move || {
                source.load(Ordering::Relaxed).then(|| StoreFailure {
                    text: "disk full".to_owned(),
                    damaged,
                })
            },
            stopped,
        ));
        tokio::time::sleep(CHECK_EVERY * 3).await;
        assert_eq!(status(&service, "").await, SERVING);
        assert_eq!(status(&service, LIVENESS).await, SERVING);
        assert!(!watcher.is_finished());

        failed.store(true, Ordering::Relaxed);
        tokio::time::sleep(CHECK_EVERY * 2).await;
        assert!(watcher.is_finished(), "the watcher stops at the failure");
        service
    }

    const SERVING: i32 = health_check_response::ServingStatus::Serving as i32;
    const NOT_SERVING: i32 = health_check_response::ServingStatus::NotServing as i32;

    #[tokio::test(start_paused = true)]
    async fn a_failed_store_turns_every_service_and_liveness_not_serving() {
        let service = after_a_failure(false).await;
        assert_eq!(status(&service, "").await, NOT_SERVING);
        assert_eq!(status(&service, "strata.v1.KV").await, NOT_SERVING);
        assert_eq!(status(&service, "strata.v1.Replica").await, NOT_SERVING);
        assert_eq!(status(&service, LIVENESS).await, NOT_SERVING);
    }

    #[tokio::test(start_paused = true)]
    async fn a_damaged_store_is_not_ready_but_alive_a_restart_would_not_help() {
        let service = after_a_failure(true).await;
        assert_eq!(status(&service, "").await, NOT_SERVING);
        assert_eq!(status(&service, "strata.v1.KV").await, NOT_SERVING);
        assert_eq!(status(&service, LIVENESS).await, SERVING);
    }

    #[tokio::test(start_paused = true)]
    async fn the_watcher_ends_with_the_server() {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let watcher = tokio::spawn(watch(HealthReporter::new(), || None, stopped));
        tokio::time::sleep(CHECK_EVERY * 2).await;
        stop.send(true).expect("watching");
        tokio::time::timeout(CHECK_EVERY, watcher)
            .await
            .expect("ends promptly")
            .expect("join");
    }
}
