//! Recent latency per node, and the policy that asks a clearly slow node
//! last (Cassandra's dynamic snitch, in its simplest form). Pure: callers
//! pass the clock's reading and keep the means under their own lock.
//!
//! A node that is up but slow (a failing disk, a starved or swapping
//! process) is never convicted by the failure detector. Each finished
//! request to it (or one given up or failed, counted as the whole timeout)
//! is a sample of an exponentially weighted mean; a node whose mean is well
//! above the fastest candidate's is tried after the others. A mean with no
//! sample for its window is forgotten, so a node that recovers is tried in
//! its place again.
//!
//! Only clearly slow nodes move: nodes within [`SLOW_FACTOR`] of the
//! fastest, or within [`SLOW_MARGIN`] of it, keep the order given (the
//! ring's), so that healthy nodes share the load instead of every caller
//! herding to whichever was a little faster a moment ago. A node without a
//! recent mean is not slow and is no reference either: it keeps its place
//! and gets sampled.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Weight of a new sample in a node's mean.
const WEIGHT: f64 = 0.2;
/// A node is slow when its mean is more than this many times the fastest
/// candidate's...
pub const SLOW_FACTOR: f64 = 4.0;
/// ...and more than this above it.
pub const SLOW_MARGIN: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy)]
struct Mean {
    micros: f64,
    at: Instant,
}

/// Recent latency per node (any key: node ids, addresses).
#[derive(Debug, Clone)]
pub struct LatencyMeans<K> {
    means: HashMap<K, Mean>,
    forget_after: Duration,
}

impl<K: Hash + Eq + Clone> LatencyMeans<K> {
    /// Means that are forgotten `forget_after` their last sample.
    #[must_use]
    pub fn new(forget_after: Duration) -> Self {
        Self {
            means: HashMap::new(),
            forget_after,
        }
    }

    /// Adds one sample for `node`, taken at `now`.
    pub fn observe(&mut self, node: &K, took: Duration, now: Instant) {
        let micros = took.as_secs_f64() * 1e6;
        match self.means.get_mut(node) {
            Some(mean) if now.saturating_duration_since(mean.at) < self.forget_after => {
                mean.micros += WEIGHT * (micros - mean.micros);
                mean.at = now;
            }
            _ => {
                self.means.insert(node.clone(), Mean { micros, at: now });
            }
        }
        // Bounded by the nodes ever sampled; drop forgotten ones now and
        // then (a cluster whose nodes come and go).
        if self.means.len() > 64 {
            let forget_after = self.forget_after;
            self.means
                .retain(|_, m| now.saturating_duration_since(m.at) < forget_after);
        }
    }

    /// `node`'s recent mean at `now` (`None`: no recent sample).
    #[must_use]
    pub fn mean(&self, node: &K, now: Instant) -> Option<Duration> {
        self.means
            .get(node)
            .filter(|m| now.saturating_duration_since(m.at) < self.forget_after)
            .map(|m| Duration::from_secs_f64(m.micros / 1e6))
    }

    /// Moves the clearly slow among `candidates` behind the others (see
    /// the module doc); returns how many moved behind one that came after
    /// them.
    pub fn slow_ones_last<T>(
        &self,
        candidates: &mut [T],
        node: impl Fn(&T) -> &K,
        now: Instant,
    ) -> usize {
        slow_ones_last(candidates, |c| self.mean(node(c), now))
    }
}

/// Orders `candidates`: those that are not slow first, in the order given,
/// then the slow ones, fastest first. `mean` gives each one's recent mean
/// (`None`: unknown, never slow). Returns how many moved behind a
/// candidate that came after them.
pub fn slow_ones_last<T>(candidates: &mut [T], mean: impl Fn(&T) -> Option<Duration>) -> usize {
    let means: Vec<Option<Duration>> = candidates.iter().map(&mean).collect();
    let Some(fastest) = means.iter().flatten().min().copied() else {
        return 0;
    };
    let threshold = fastest.mul_f64(SLOW_FACTOR).max(fastest + SLOW_MARGIN);
    let slow = |m: Option<Duration>| m.is_some_and(|m| m > threshold);
    let flags: Vec<bool> = means.iter().map(|m| slow(*m)).collect();
    if !flags.contains(&true) {
        return 0;
    }
    let moved = (0..flags.len())
        .filter(|&i| flags[i] && flags[i..].iter().any(|s| !s))
        .count();
    // A stable sort: the others keep their order.
    candidates.sort_by_key(|c| {
        let m = mean(c);
        if slow(m) {
            (true, m.unwrap_or(Duration::ZERO))
        } else {
            (false, Duration::ZERO)
        }
    });
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
    fn a_clearly_slow_node_goes_last_and_healthy_ones_keep_their_order() {
        // Healthy nodes a little apart: no herding to the faster one.
        assert_eq!(order(&[Some(3), Some(1)]), (vec![0, 1], 0));
        assert_eq!(order(&[Some(9), Some(1), Some(2)]), (vec![0, 1, 2], 0));
        // A slow disk: 150 ms against 1 ms.
        assert_eq!(order(&[Some(150), Some(1)]), (vec![1, 0], 1));
        assert_eq!(order(&[Some(150), Some(1), Some(2)]), (vec![1, 2, 0], 1));
        // Two slow ones: the faster of them first; already last: no move.
        assert_eq!(order(&[Some(300), Some(80), Some(1)]), (vec![2, 1, 0], 2));
        assert_eq!(order(&[Some(1), Some(300)]), (vec![0, 1], 0));
        // Unknown: neither slow nor the reference; it keeps its place.
        assert_eq!(order(&[None, Some(150)]), (vec![0, 1], 0));
        assert_eq!(order(&[Some(150), None]), (vec![0, 1], 0));
        assert_eq!(order(&[Some(150), None, Some(1)]), (vec![1, 2, 0], 1));
        // Everyone slow alike (a loaded machine): nothing moves.
        assert_eq!(order(&[Some(200), Some(180)]), (vec![0, 1], 0));
        assert_eq!(order(&[]), (vec![], 0));
        assert_eq!(order(&[Some(500)]), (vec![0], 0));
    }

    #[test]
    fn means_follow_samples_and_are_forgotten_when_stale() {
        let window = Duration::from_secs(2);
        let mut means = LatencyMeans::new(window);
        let node = "node-1".to_owned();
        let t0 = Instant::now();
        assert_eq!(means.mean(&node, t0), None);
        means.observe(&node, ms(1), t0);
        assert_eq!(means.mean(&node, t0), Some(ms(1)));
        // One slow answer makes it slow at once (1 + 0.2 * 149 = 30.8 ms).
        means.observe(&node, ms(150), t0);
        let mean = means.mean(&node, t0).expect("mean");
        assert!(mean > ms(30) && mean < ms(31), "{mean:?}");
        // Fast answers bring it back.
        for _ in 0..20 {
            means.observe(&node, ms(1), t0);
        }
        assert!(means.mean(&node, t0).expect("mean") < ms(2));
        // Without samples it is forgotten; the next sample starts afresh.
        means.observe(&node, ms(150), t0);
        let later = t0 + window;
        assert_eq!(means.mean(&node, later), None);
        means.observe(&node, ms(2), later);
        assert_eq!(means.mean(&node, later), Some(ms(2)));
        // Ordering through the means.
        let fast = "node-2".to_owned();
        means.observe(&fast, ms(1), later);
        means.observe(&node, ms(500), later);
        let mut candidates = vec![node.clone(), fast.clone()];
        assert_eq!(means.slow_ones_last(&mut candidates, |c| c, later), 1);
        assert_eq!(candidates, [fast, node]);
    }

    #[test]
    fn forgotten_nodes_do_not_pile_up() {
        let window = Duration::from_secs(1);
        let mut means = LatencyMeans::new(window);
        let t0 = Instant::now();
        for i in 0..1000_u64 {
            means.observe(&i, ms(1), t0 + Duration::from_secs(i));
        }
        assert!(means.means.len() <= 65, "{}", means.means.len());
    }
}
