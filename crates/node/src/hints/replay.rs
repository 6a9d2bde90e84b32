//! Delivering hints: a background loop that, every interval, expires old
//! hints and replays the rest to targets gossip sees alive, throttled
//! (and those of a target that has left to their keys' replicas:
//! `departed.rs`); a target whose delivery failed waits a few intervals
//! more before the next try (`backoff.rs`).

use std::sync::Arc;
use std::time::Duration;

use strata_cluster::{ClusterView, NodeId};
use strata_proto::v1::{DeliverHintsRequest, KeyVersions};
use tokio::time::Instant;

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
                let address = match step(&ctx.view(), &target, &mut backoff, Instant::now()) {
                    Step::Wait => continue,
                    Step::Deliver(address) => address,
                    Step::Redirect => {
                        tracing::info!(%target, hints = held,
                            "target has left the ring: delivering its hints to their keys' replicas");
                        let delivery = store.delivery().await;
                        let mut throttle = Throttle::new(settings.bytes_per_second);
                        let redirected =
                            departed::redirect(&ctx, &target, &mut throttle, settings.timeout)
                                .await;
                        drop(delivery);
                        let outcome = redirected.map_err(ReplayError::from);
                        report(store, &target, outcome, &mut backoff, settings.interval);
                        continue;
                    }
                };
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
                report(store, &target, replayed, &mut backoff, settings.interval);
            }
        }
    };
    tokio::select! {
        () = work => {}
        () = stop => {}
    }
}

/// What the replay does with a target's hints at one tick.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Nothing now: the target is down, or waits out its backoff.
    Wait,
    /// Deliver them to the target at this address.
    Deliver(String),
    /// The target has left the ring: send them to their keys' replicas.
    Redirect,
}

/// The replay's choice for `target` under `view` at `now` (pure). A target
/// seen down has its backoff reset: it is tried at the first tick it is
/// seen alive again.
fn step(view: &ClusterView, target: &NodeId, backoff: &mut Backoff, now: Instant) -> Step {
    let next = if has_left(view, target) {
        Step::Redirect
    } else if let Some(node) = view
        .node(target)
        .filter(|n| n.alive && !n.internal_address.is_empty())
    {
        Step::Deliver(node.internal_address.clone())
    } else {
        backoff.reset(target);
        return Step::Wait;
    };
    if backoff.due(target, now) {
        next
    } else {
        Step::Wait
    }
}

/// Logs how a pass over one target's hints ended and records it in
/// `backoff`.
fn report(
    store: &HintStore,
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
            store.metrics().replay_failures.inc();
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

#[cfg(test)]
mod tests {
    use strata_cluster::NodeState;

    use super::*;
    use crate::context::Topology;
    use crate::testing::{ContextBuilder, member, one_version};

    /// A target gossip calls alive that never takes its hints (its address
    /// is unusable here, so each try fails at once) is tried at ticks 0, 2,
    /// 6, 14 and 30 of the first 31, not at every tick; its hints stay.
    #[tokio::test(start_paused = true)]
    async fn a_target_that_does_not_take_its_hints_is_tried_less_and_less_often() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = |i: u32| NodeId::new(format!("node-{i}")).expect("id");
        let view = ClusterView::from_peers([
            member(&id(0), "127.0.0.1:1", NodeState::Normal, true),
            member(&id(1), "not an address", NodeState::Normal, true),
        ]);
        let ctx = ContextBuilder::new(dir.path())
            .id(&id(0))
            .topology(Topology::Fixed(Arc::new(view)))
            .build();
        ctx.hints
            .store(&id(1), b"key", &one_version("node-0", "v"))
            .await
            .expect("hint");
        let settings = ReplaySettings {
            interval: Duration::from_secs(1),
            bytes_per_second: 0,
            batch_bytes: 1 << 20,
            timeout: Duration::from_secs(1),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let replay = tokio::spawn(replay_loop(Arc::clone(&ctx), settings, async move {
            let _ = stopped.await;
        }));
        tokio::time::sleep(Duration::from_millis(31_500)).await;
        let _ = stop.send(());
        replay.await.expect("replay");

        assert_eq!(ctx.hints.metrics().replay_failures.get(), 5);
        assert_eq!(ctx.hints.targets(), [(id(1), 1)], "kept for the next try");
    }

    /// A failing target waits out its backoff while gossip calls it alive;
    /// once gossip has seen it down, it is tried at the first tick it is
    /// alive again. One that has left is redirected, also under backoff.
    #[test]
    fn a_target_seen_down_is_tried_as_soon_as_it_is_back() {
        let id = |i: u32| NodeId::new(format!("node-{i}")).expect("id");
        let view = |state, alive| {
            ClusterView::from_peers([
                member(&id(0), "127.0.0.1:1", NodeState::Normal, true),
                member(&id(1), "127.0.0.1:2", state, alive),
            ])
        };
        let (up, down) = (
            view(NodeState::Normal, true),
            view(NodeState::Normal, false),
        );
        let tick = Duration::from_secs(1);
        let now = Instant::now();
        let mut backoff = Backoff::default();
        let target = id(1);
        let deliver = Step::Deliver("127.0.0.1:2".to_owned());

        assert_eq!(step(&up, &target, &mut backoff, now), deliver);
        backoff.failed(&target, now, tick);
        backoff.failed(&target, now, tick);
        assert_eq!(
            step(&up, &target, &mut backoff, now),
            Step::Wait,
            "backing off"
        );
        assert_eq!(step(&down, &target, &mut backoff, now), Step::Wait, "down");
        assert_eq!(
            step(&up, &target, &mut backoff, now),
            deliver,
            "back after a down spell: at once"
        );

        let left = view(NodeState::Left, false);
        assert_eq!(step(&left, &target, &mut backoff, now), Step::Redirect);
        backoff.failed(&target, now, tick);
        assert_eq!(step(&left, &target, &mut backoff, now), Step::Wait);
        assert_eq!(
            step(&left, &target, &mut backoff, now + 2 * tick),
            Step::Redirect
        );
    }
}
