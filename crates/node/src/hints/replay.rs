//! Delivering hints: a background loop that, every interval, expires old
//! hints and replays the rest to targets gossip sees alive, throttled.

use std::sync::Arc;
use std::time::Duration;

use strata_cluster::NodeId;
use strata_proto::v1::{DeliverHintsRequest, KeyVersions};

use super::{HintStore, SegmentFate};
use crate::clock::now_micros;
use crate::coordinator::Coordinator;
use crate::peers::Peers;
use crate::throttle::Throttle;

/// How hints are replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplaySettings {
    /// Time between checks for deliverable or expired hints.
    pub interval: Duration,
    /// Replay rate limit in bytes per second (0: unlimited).
    pub bytes_per_second: u64,
    /// Upper bound on one `DeliverHints` request.
    pub batch_bytes: usize,
    /// Deadline of one `DeliverHints` request.
    pub timeout: Duration,
}

/// Runs until `stop` completes.
pub async fn replay_loop(
    coordinator: Arc<Coordinator>,
    store: Arc<HintStore>,
    settings: ReplaySettings,
    stop: impl Future<Output = ()>,
) {
    let work = async {
        let mut tick = tokio::time::interval(settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let expiring = Arc::clone(&store);
            let _ = tokio::task::spawn_blocking(move || expiring.expire(now_micros())).await;
            for (target, held) in store.targets() {
                let view = coordinator.view();
                let Some(address) = view
                    .node(&target)
                    .filter(|n| n.alive && !n.grpc_address.is_empty())
                    .map(|n| n.grpc_address.clone())
                else {
                    continue;
                };
                tracing::info!(%target, hints = held, "target is alive: replaying hints");
                match replay_target(&coordinator, &store, &target, &address, settings).await {
                    Ok(delivered) => {
                        tracing::info!(%target, delivered, "hints replayed");
                    }
                    Err(e) => {
                        tracing::warn!(%target, error = %e, "hint replay stopped; retrying later");
                    }
                }
            }
        }
    };
    tokio::select! {
        () = work => {}
        () = stop => {}
    }
}

/// Delivers every sealed segment of `target`, oldest first.
async fn replay_target(
    coordinator: &Coordinator,
    store: &Arc<HintStore>,
    target: &NodeId,
    address: &str,
    settings: ReplaySettings,
) -> Result<u64, String> {
    let sealing = Arc::clone(store);
    let sealed_target = target.clone();
    let segments = tokio::task::spawn_blocking(move || sealing.seal(&sealed_target))
        .await
        .map_err(|e| e.to_string())?;
    let channel = coordinator.peers().channel(address)?;
    let mut client = Peers::replica_client(channel);
    let mut throttle = Throttle::new(settings.bytes_per_second);
    let mut delivered = 0;
    for segment in segments {
        let path = segment.path.clone();
        let (records, damage) = tokio::task::spawn_blocking(move || HintStore::read(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("reading {}: {e}", segment.path.display()))?;
        let now = now_micros();
        let (expired, live): (Vec<_>, Vec<_>) = records
            .into_iter()
            .partition(|r| store.is_expired(r.stored_at_micros, now));
        // Batches of about `batch_bytes`, each delivered, counted and paced.
        let mut batches: Vec<(Vec<KeyVersions>, usize)> = Vec::new();
        for record in live {
            let bytes = prost::Message::encoded_len(&record.entry);
            match batches.last_mut() {
                Some((entries, size)) if *size < settings.batch_bytes => {
                    entries.push(record.entry);
                    *size += bytes;
                }
                _ => batches.push((vec![record.entry], bytes)),
            }
        }
        for (entries, bytes) in batches {
            let count = entries.len() as u64;
            let mut request = tonic::Request::new(DeliverHintsRequest {
                from_node_id: coordinator.node_id().to_string(),
                entries,
            });
            request.set_timeout(settings.timeout);
            client
                .deliver_hints(request)
                .await
                .map_err(|s| format!("DeliverHints: {:?}: {}", s.code(), s.message()))?;
            store.metrics().replayed.inc_by(count);
            delivered += count;
            throttle.consume(bytes as u64).await;
        }
        let expired = expired.len() as u64;
        store.metrics().expired.inc_by(expired);
        let fate = match damage {
            None => SegmentFate::Delivered,
            Some(damage) => {
                tracing::error!(segment = %segment.path.display(), offset = damage.offset,
                    reason = %damage.reason, "damaged hint segment: delivered the hints before the damage, setting it aside");
                SegmentFate::Damaged
            }
        };
        let (finishing, finished_target) = (Arc::clone(store), target.clone());
        tokio::task::spawn_blocking(move || {
            finishing.finish(&finished_target, &segment.path, fate);
        })
        .await
        .map_err(|e| e.to_string())?;
    }
    Ok(delivered)
}
