//! When the replay tries a target again after a failed delivery.
//!
//! Gossip says a target is alive before its replica port answers (a
//! process killed a moment ago is still "alive" for a second or two; a
//! NetworkPolicy that blocks the internal port keeps it so forever). Tried
//! at every tick, such a target cost a connection attempt and a warning
//! per tick and per node holding its hints. After `k` failures in a row
//! it is tried again `2^k` ticks later, at most [`MAX_TICKS`]; a success,
//! or gossip seeing the target down (it will be back as a new process),
//! starts it over, so a target that restarts is tried at the first tick
//! it is seen alive again.

use std::collections::HashMap;
use std::time::Duration;

use strata_cluster::NodeId;
use tokio::time::Instant;

/// The longest wait between two tries, in replay ticks (a power of two).
pub(super) const MAX_TICKS: u32 = 16;

/// How long after its `failures`-th failure in a row (at least 1) a target
/// is tried again, for replay ticks of `interval`.
pub(super) fn retry_after(interval: Duration, failures: u32) -> Duration {
    interval.saturating_mul(1 << failures.min(MAX_TICKS.trailing_zeros()))
}

#[derive(Debug)]
struct Failing {
    failures: u32,
    next: Instant,
}

/// Targets whose last delivery failed, and when each is due again.
#[derive(Debug, Default)]
pub(super) struct Backoff {
    failing: HashMap<NodeId, Failing>,
}

impl Backoff {
    /// Whether `target` may be tried at `now`.
    pub(super) fn due(&self, target: &NodeId, now: Instant) -> bool {
        self.failing.get(target).is_none_or(|f| now >= f.next)
    }

    /// Records a failed delivery to `target` at `now`; returns the wait
    /// before the next try.
    pub(super) fn failed(&mut self, target: &NodeId, now: Instant, interval: Duration) -> Duration {
        let failures = self.failing.get(target).map_or(0, |f| f.failures) + 1;
        let wait = retry_after(interval, failures);
        self.failing.insert(
            target.clone(),
            Failing {
                failures,
                next: now + wait,
            },
        );
        wait
    }

    /// Forgets `target`'s failures: it took its hints, gossip saw it down
    /// (its next start is tried at once), or it holds no hints any more.
    pub(super) fn reset(&mut self, target: &NodeId) {
        self.failing.remove(target);
    }

    /// Keeps only the targets `keep` says to (those still holding hints).
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&NodeId) -> bool) {
        self.failing.retain(|id, _| keep(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_per_failure_up_to_sixteen_ticks() {
        let tick = Duration::from_millis(200);
        let waits: Vec<u128> = (1..=7).map(|k| retry_after(tick, k).as_millis()).collect();
        assert_eq!(waits, [400, 800, 1600, 3200, 3200, 3200, 3200]);
        assert_eq!(retry_after(tick, u32::MAX), tick * MAX_TICKS);
        assert_eq!(retry_after(Duration::MAX, 3), Duration::MAX);
    }

    #[test]
    fn a_failing_target_waits_and_a_success_or_a_down_spell_starts_over() {
        let tick = Duration::from_secs(1);
        let id = |s: &str| NodeId::new(s.to_owned()).expect("id");
        let (a, b) = (id("node-a"), id("node-b"));
        let t0 = Instant::now();
        let mut backoff = Backoff::default();
        assert!(backoff.due(&a, t0), "never failed: due");

        assert_eq!(backoff.failed(&a, t0, tick), Duration::from_secs(2));
        assert!(!backoff.due(&a, t0 + Duration::from_millis(1999)));
        assert!(backoff.due(&a, t0 + Duration::from_secs(2)));
        assert!(backoff.due(&b, t0), "another target is not held back");

        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(backoff.failed(&a, t1, tick), Duration::from_secs(4));
        assert!(!backoff.due(&a, t1 + Duration::from_secs(3)));

        backoff.reset(&a);
        assert!(backoff.due(&a, t1), "reset: due at once");
        assert_eq!(
            backoff.failed(&a, t1, tick),
            Duration::from_secs(2),
            "counting starts over"
        );

        backoff.failed(&b, t1, tick);
        backoff.retain(|id| *id == b);
        assert!(backoff.due(&a, t1), "a target without hints is forgotten");
        assert!(!backoff.due(&b, t1));
    }
}
