//! The signals that stop a node gracefully: SIGINT (Ctrl-C) and SIGTERM,
//! which Kubernetes sends a pod before it kills it
//! (`terminationGracePeriodSeconds` later). Without the SIGTERM handler
//! every pod deletion and rolling restart was a crash: requests in flight
//! dropped, the engine not closed.

/// Completes when the process receives SIGINT or SIGTERM. If a handler
/// cannot be installed, that is logged and the other signal still works.
pub async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    () = interrupt() => {}
                    _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the node");
                interrupt().await;
            }
        }
    }
    #[cfg(not(unix))]
    interrupt().await;
}

async fn interrupt() {
    match tokio::signal::ctrl_c().await {
        Ok(()) => tracing::info!("SIGINT: stopping"),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}
