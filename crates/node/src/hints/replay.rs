//! Delivering hints: a background loop that, every interval, expires old
//! hints and replays the rest to targets gossip sees alive, throttled
//! (and those of a target that has left to their keys' replicas:
//! `departed.rs`); a target whose delivery failed waits a few intervals
//! more before the next try (`backoff.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_cluster::NodeId;
use strata_proto::v1::{DeliverHintsRequest, KeyVersions};

use super::HintStore;
use super::TakeError;
use super::backoff::Backoff;
use super::departed::{self, has_left};
use crate::clock::now_micros;
use crate::context::Context;
use crate::throttle::Throttle;
use crate::transport::{Peers, ReplicaError, replica_client};

/// Why a replay to one target stopped (it is retried at the next tick).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The target could not be reached or refused the hints.
    #[error("DeliverHints: {0}")]
    Replica(#[from] ReplicaError),
    /// A segment could not be read, or (for a member that has left) a
    /// replica of a key did not take its hint.
    #[error("{0}")]
    Take(#[from] TakeError),
}

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
    ctx: Arc<Context>,
    settings: ReplaySettings,
    stop: impl Future<Output = ()>,
) {
    let work = async {
        let store = &ctx.hints;
        let mut tick = tokio::time::interval(settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = Backoff::default();
        loop {
            tick.tick().await;
            {
                let _delivery = store.delivery().await;
                let expiring = Arc::clone(store);
                let _ = tokio::task::spawn_blocking(move || expiring.expire(now_micros())).await;
            }
            let targets = store.targets();
            backoff.retain(|id| targets.iter().any(|(t, _)| t == id));
            for (target, held) in targets {
                let view = ctx.view();
                if has_left(&view, &target) {
                    if !backoff.due(&target, Instant::now()) {
                        continue;
                    }
                    tracing::info!(%target, hints = held,
                        "target has left the ring: delivering its hints to their keys' replicas");
                    let delivery = store.delivery().await;
                    let mut throttle = Throttle::new(settings.bytes_per_second);
                    let redirected =
                        departed::redirect(&ctx, &target, &mut throttle, settings.timeout).await;
                    drop(delivery);
                    let outcome = redirected.map_err(ReplayError::from);
                    report(&target, outcome, &mut backoff, settings.interval);
                    continue;
                }
                let Some(address) = view
                    .node(&target)
                    .filter(|n| n.alive && !n.internal_address.is_empty())
                    .map(|n| n.internal_address.clone())
                else {
                    // Down: tried at the first tick it is seen alive again.
                    backoff.reset(&target);
                    continue;
                };
                if !backoff.due(&target, Instant::now()) {
                    continue;
                }
                tracing::info!(%target, hints = held, "target is alive: replaying hints");
                let to = Delivery {
                    me: &ctx.id,
                    peers: &ctx.peers,
                    store,
                    target: &target,
                    address: &address,
                };
                let delivery = store.delivery().await;
                let replayed = replay_target(&to, settings).await;
                drop(delivery);
                report(&target, replayed, &mut backoff, settings.interval);
            }
        }
    };
    tokio::select! {
        () = work => {}
        () = stop => {}
    }
}

/// Logs how a pass over one target's hints ended and records it in
/// `backoff`.
fn report(
    target: &NodeId,
    outcome: Result<u64, ReplayError>,
    backoff: &mut Backoff,
    interval: Duration,
) {
    match outcome {
        Ok(delivered) => {
            backoff.reset(target);
            tracing::info!(%target, delivered, "hints replayed");
        }
        Err(e) => {
            let wait = backoff.failed(target, Instant::now(), interval);
            tracing::warn!(%target, error = %e, retry_in_ms = wait.as_millis(),
                "hint replay stopped; retrying later");
        }
    }
}

/// Delivers every sealed segment of `target`, oldest first.
/// Hints of `target` on their way from `me`.
struct Delivery<'a> {
    me: &'a NodeId,
    peers: &'a Peers,
    store: &'a Arc<HintStore>,
    target: &'a NodeId,
    address: &'a str,
}

async fn replay_target(to: &Delivery<'_>, settings: ReplaySettings) -> Result<u64, ReplayError> {
    let store = to.store;
    let mut client = replica_client(to.peers.channel(to.address)?);
    let mut throttle = Throttle::new(settings.bytes_per_second);
    let mut delivered = 0;
    for segment in store
        .sealed(to.target)
        .await
        .map_err(TakeError::Unreadable)?
    {
        let (records, damage) = store
            .live_hints(&segment)
            .await
            .map_err(TakeError::Unreadable)?;
        // Batches of about `batch_bytes`, each delivered, counted and paced.
        let mut batches: Vec<(Vec<KeyVersions>, usize)> = Vec::new();
        for record in records {
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
                from_node_id: to.me.to_string(),
                entries,
            });
            request.set_timeout(settings.timeout);
            client
                .deliver_hints(request)
                .await
                .map_err(|s| ReplicaError::from_status(&s))?;
            store.metrics().replayed.inc_by(count);
            delivered += count;
            throttle.consume(bytes as u64).await;
        }
        store.taken(to.target, segment, damage, "delivered").await;
    }
    Ok(delivered)
}
