//! Health follows the store: once the engine refuses writes until it is
//! reopened (a WAL append, flush or compaction failed: a full disk, an IO
//! error), the node reports NOT_SERVING on `grpc.health.v1.Health`, as
//! `/healthz` on the metrics port does (`metrics.rs`). Only a restart
//! reopens the store, so the liveness probe restarting the pod is the
//! recovery: it works once space is freed or the volume grown, and
//! crash-loops visibly until then.

use std::time::Duration;

use strata_proto::v1::{
    admin_server::AdminServer, kv_server::KvServer, replica_server::ReplicaServer,
};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::services::{AdminService, KvService, ReplicaService};

/// How often the store's state is checked.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Checks `failure` every [`CHECK_EVERY`]; at the first failure logs it
/// once and marks the server and its services NOT_SERVING. Returns then,
/// or when `stop` turns true.
pub(crate) async fn watch(
    health: HealthReporter,
    failure: impl Fn() -> Option<String>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Some(failure) = failure() {
            tracing::error!(
                %failure,
                "the store refuses writes; health checks now fail"
            );
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

    #[tokio::test(start_paused = true)]
    async fn a_failed_store_turns_every_service_not_serving() {
        let health = HealthReporter::new();
        health.set_serving::<KvServer<KvService>>().await;
        let service = HealthService::from_health_reporter(health.clone());
        let failed = Arc::new(AtomicBool::new(false));
        let source = Arc::clone(&failed);
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let watcher = tokio::spawn(watch(
            health,
            move || {
                source
                    .load(Ordering::Relaxed)
                    .then(|| "disk full".to_owned())
            },
            stopped,
        ));
        let serving = health_check_response::ServingStatus::Serving as i32;
        let not_serving = health_check_response::ServingStatus::NotServing as i32;
        tokio::time::sleep(CHECK_EVERY * 3).await;
        assert_eq!(status(&service, "").await, serving);
        assert!(!watcher.is_finished());

        failed.store(true, Ordering::Relaxed);
        tokio::time::sleep(CHECK_EVERY * 2).await;
        assert!(watcher.is_finished(), "the watcher stops at the failure");
        assert_eq!(status(&service, "").await, not_serving);
        assert_eq!(status(&service, "strata.v1.KV").await, not_serving);
        assert_eq!(status(&service, "strata.v1.Replica").await, not_serving);
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
