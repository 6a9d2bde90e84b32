//! How fast each peer has answered this node's replica reads and writes
//! lately, so that a read asks a slow replica last
//! (`strata_cluster::LatencyMeans`, the policy).
//!
//! A replica that is up but slow (a failing disk, a starved or swapping
//! process) is never convicted by the failure detector. A read that asks
//! it waits `--speculative-retry-ms` before it asks another; and a replica
//! whose writes lag (its disk syncs slowly) answers reads of recently
//! written keys with what it had before, which a QUORUM read must then
//! repair on it, waiting for that slow write, before it answers. With the
//! preference list's order alone, every read of a key whose first remote
//! replica is the slow one pays that. Every remote read and write a
//! coordinator sends is a sample; writes go to every replica, so a slow
//! one keeps being sampled while reads pass it, and its mean is forgotten
//! [`FORGET_AFTER`] after the last sample.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_cluster::{LatencyMeans, NodeId};

/// A mean without a sample for this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(2);

/// Recent replica-request latency per peer.
#[derive(Debug)]
pub struct PeerLatency {
    means: Mutex<LatencyMeans<NodeId>>,
}

impl Default for PeerLatency {
    fn default() -> Self {
        Self {
            means: Mutex::new(LatencyMeans::new(FORGET_AFTER)),
        }
    }
}

impl PeerLatency {
    fn lock(&self) -> std::sync::MutexGuard<'_, LatencyMeans<NodeId>> {
        self.means
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `peer`'s recent mean at `now` (`None`: no recent sample).
    #[must_use]
    pub fn mean(&self, peer: &NodeId, now: Instant) -> Option<Duration> {
        self.lock().mean(peer, now)
    }

    /// Moves the clearly slow replicas among `targets` behind the others;
    /// returns how many moved.
    pub fn slow_ones_last<T>(&self, targets: &mut [T], id: impl Fn(&T) -> &NodeId) -> usize {
        self.lock().slow_ones_last(targets, id, Instant::now())
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
        self.latency.lock().observe(&self.peer, took, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfinished_request_is_a_sample_when_given_up_and_a_failure_the_timeout() {
        let latency = Arc::new(PeerLatency::default());
        let peer = NodeId::new("node-2").expect("id");
        let sample = latency.sample(peer.clone());
        std::thread::sleep(Duration::from_millis(20));
        drop(sample);
        let mean = latency.mean(&peer, Instant::now()).expect("sampled");
        assert!(mean >= Duration::from_millis(20), "{mean:?}");
        let other = NodeId::new("node-3").expect("id");
        latency.sample(other.clone()).failed(Duration::from_secs(2));
        assert_eq!(
            latency.mean(&other, Instant::now()),
            Some(Duration::from_secs(2))
        );
    }
}
