//! How fast each peer has answered this node's replica reads and writes
//! lately, so that a read asks a slow replica last (Cassandra's dynamic
//! snitch, in its simplest form).
//!
//! A replica that is up but slow (a failing disk, a starved or swapping
//! process) is never convicted by the failure detector. A read that asks
//! it waits `--speculative-retry-ms` before it asks another; and a replica
//! whose writes lag (its disk syncs slowly) answers reads of recently
//! written keys with what it had before, which a QUORUM read must then
//! repair on it, waiting for that slow write, before it answers. With the
//! preference list's order alone, every read of a key whose first remote
//! replica is the slow one pays that. Each finished remote read or write
//! (or one given up, or failed) is a sample of an exponentially weighted
//! mean per peer; a peer whose mean is well above the fastest peer's is
//! asked after the others. Writes go to every replica, and reads that ask
//! every replica (read repair) sample it too, while a mean with no sample
//! for [`STALE_AFTER`] is forgotten, so a peer that recovers is asked first
//! again.
//!
//! Only clearly slow peers move: peers within [`SLOW_FACTOR`] of the
//! fastest, or within [`SLOW_MARGIN`] of it, keep the ring's order, so
//! healthy replicas share the reads instead of all coordinators herding to
//! whichever was a little faster a moment ago.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_cluster::NodeId;

/// Weight of a new sample in a peer's mean.
const WEIGHT: f64 = 0.2;
/// A mean without a sample for this long is forgotten.
pub const STALE_AFTER: Duration = Duration::from_secs(2);
/// A peer is slow when its mean is more than this many times the
/// fastest peer's...
pub const SLOW_FACTOR: f64 = 4.0;
/// ...and more than this above it.
pub const SLOW_MARGIN: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy)]
struct Mean {
    micros: f64,
    at: Instant,
}

/// Recent replica-request latency per peer.
#[derive(Debug, Default)]
pub struct PeerLatency {
    means: Mutex<HashMap<NodeId, Mean>>,
}

impl PeerLatency {
    /// Adds one sample for `peer` taken at `now`.
    pub fn observe(&self, peer: &NodeId, took: Duration, now: Instant) {
        let micros = took.as_secs_f64() * 1e6;
        let mut means = self
            .means
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match means.get_mut(peer) {
            Some(mean) if now.saturating_duration_since(mean.at) < STALE_AFTER => {
                mean.micros += WEIGHT * (micros - mean.micros);
                mean.at = now;
            }
            _ => {
                means.insert(peer.clone(), Mean { micros, at: now });
            }
        }
    }

    /// `peer`'s recent mean at `now` (`None`: no recent sample).
    #[must_use]
    pub fn mean(&self, peer: &NodeId, now: Instant) -> Option<Duration> {
        let means = self
            .means
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        means
            .get(peer)
            .filter(|m| now.saturating_duration_since(m.at) < STALE_AFTER)
            .map(|m| Duration::from_secs_f64(m.micros / 1e6))
    }

    /// A guard that samples `peer` when dropped: with the time from now to
    /// [`Sample::done`], or to the drop if it never finished (a request
    /// given up at its deadline is a sample of at least that).
    #[must_use]
    pub fn sample(self: &Arc<Self>, peer: NodeId) -> Sample {
        Sample {
            latency: Arc::clone(self),
            peer,
            started: Instant::now(),
            at_least: Duration::ZERO,
        }
    }
}

/// One replica request being timed (see [`PeerLatency::sample`]).
#[derive(Debug)]
pub struct Sample {
    latency: Arc<PeerLatency>,
    peer: NodeId,
    started: Instant,
    at_least: Duration,
}

impl Sample {
    /// The request was answered now.
    pub fn done(self) {}

    /// The request failed: it counts as one that took `counted_as` (the
    /// request timeout), so that reads ask a failing peer last too.
    pub fn failed(mut self, counted_as: Duration) {
        self.at_least = counted_as;
    }
}

impl Drop for Sample {
    fn drop(&mut self) {
        let now = Instant::now();
        let took = now
            .saturating_duration_since(self.started)
            .max(self.at_least);
        self.latency.observe(&self.peer, took, now);
    }
}

/// Orders remote replicas for a read: those that are not slow first, in
/// the order given (the ring's), then the slow ones, fastest first.
/// `means` holds each peer's recent mean (`None`: no recent sample, which
/// counts as fast, so that a peer is tried again). Returns how many were
/// moved behind a peer that came after them.
pub fn slow_ones_last<T>(remotes: &mut [T], mean: impl Fn(&T) -> Option<Duration>) -> usize {
    let means: Vec<Duration> = remotes
        .iter()
        .map(|r| mean(r).unwrap_or(Duration::ZERO))
        .collect();
    let Some(fastest) = means.iter().min().copied() else {
        return 0;
    };
    let threshold = fastest.mul_f64(SLOW_FACTOR).max(fastest + SLOW_MARGIN);
    let slow: Vec<bool> = means.iter().map(|m| *m > threshold).collect();
    if !slow.contains(&true) {
        return 0;
    }
    // A slow one that some fast one follows moves behind it.
    let moved = (0..remotes.len())
        .filter(|&i| slow[i] && slow[i..].iter().any(|s| !s))
        .count();
    // A stable sort: the fast ones keep their order.
    let key = |m: Duration| {
        let slow = m > threshold;
        (slow, if slow { m } else { Duration::ZERO })
    };
    remotes.sort_by_key(|r| key(mean(r).unwrap_or(Duration::ZERO)));
    moved
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn order(means: &[Option<u64>]) -> (Vec<usize>, usize) {
        let mut items: Vec<(usize, Option<Duration>)> = means
            .iter()
            .enumerate()
            .map(|(i, m)| (i, m.map(ms)))
            .collect();
        let moved = slow_ones_last(&mut items, |(_, m)| *m);
        (items.into_iter().map(|(i, _)| i).collect(), moved)
    }

    #[test]
    fn a_clearly_slow_replica_is_asked_last_and_healthy_ones_keep_the_ring_order() {
        // Healthy peers a little apart: no herding to the faster one.
        assert_eq!(order(&[Some(3), Some(1)]), (vec![0, 1], 0));
        assert_eq!(order(&[Some(9), Some(1), Some(2)]), (vec![0, 1, 2], 0));
        // A slow disk: 150 ms against 1 ms.
        assert_eq!(order(&[Some(150), Some(1)]), (vec![1, 0], 1));
        assert_eq!(order(&[Some(150), Some(1), Some(2)]), (vec![1, 2, 0], 1));
        // Two slow ones: the faster of them first; already last: no move.
        assert_eq!(order(&[Some(300), Some(80), Some(1)]), (vec![2, 1, 0], 2));
        assert_eq!(order(&[Some(1), Some(300)]), (vec![0, 1], 0));
        // No recent sample counts as fast: such a peer is tried again.
        assert_eq!(order(&[None, Some(150)]), (vec![0, 1], 0));
        assert_eq!(order(&[Some(150), None]), (vec![1, 0], 1));
        // Everyone slow alike (a loaded machine): nothing moves.
        assert_eq!(order(&[Some(200), Some(180)]), (vec![0, 1], 0));
        assert_eq!(order(&[]), (vec![], 0));
        assert_eq!(order(&[Some(500)]), (vec![0], 0));
    }

    #[test]
    fn means_follow_samples_and_are_forgotten_when_stale() {
        let latency = PeerLatency::default();
        let peer = NodeId::new("node-1").expect("id");
        let t0 = Instant::now();
        assert_eq!(latency.mean(&peer, t0), None);
        latency.observe(&peer, ms(1), t0);
        assert_eq!(latency.mean(&peer, t0), Some(ms(1)));
        // One slow answer makes it slow at once (1 + 0.2 * 149 = 30.8 ms).
        latency.observe(&peer, ms(150), t0);
        let mean = latency.mean(&peer, t0).expect("mean");
        assert!(mean > ms(30) && mean < ms(31), "{mean:?}");
        // Fast answers bring it back.
        for _ in 0..20 {
            latency.observe(&peer, ms(1), t0);
        }
        assert!(latency.mean(&peer, t0).expect("mean") < ms(2));
        // Without samples it is forgotten; the next sample starts afresh.
        latency.observe(&peer, ms(150), t0);
        let later = t0 + STALE_AFTER;
        assert_eq!(latency.mean(&peer, later), None);
        latency.observe(&peer, ms(2), later);
        assert_eq!(latency.mean(&peer, later), Some(ms(2)));
    }

    #[test]
    fn an_unfinished_read_is_a_sample_when_given_up() {
        let latency = Arc::new(PeerLatency::default());
        let peer = NodeId::new("node-2").expect("id");
        let sample = latency.sample(peer.clone());
        std::thread::sleep(ms(20));
        drop(sample);
        let mean = latency.mean(&peer, Instant::now()).expect("sampled");
        assert!(mean >= ms(20), "{mean:?}");
        // A failure counts as the whole timeout, however fast it came.
        let other = NodeId::new("node-3").expect("id");
        latency.sample(other.clone()).failed(Duration::from_secs(2));
        assert_eq!(
            latency.mean(&other, Instant::now()),
            Some(Duration::from_secs(2))
        );
    }
}
