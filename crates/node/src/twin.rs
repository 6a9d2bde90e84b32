//! A second process gossiping under this node's id (a copied config, a
//! data directory restored elsewhere): both would answer for the same
//! ranges, and peers would route to whichever generation they prefer.
//!
//! Gossip keys participants by id *and* generation, so a twin shows up as
//! another generation of this node's id. An earlier incarnation of this
//! very node (before a restart) does too, for a while, but its heartbeat
//! has stopped; a twin's keeps rising. So a twin is another generation
//! that stays live with a rising heartbeat for a whole window. Then the
//! younger process (the higher generation: the one started later) stops
//! with an error, and the older one logs it and keeps serving.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Another generation of this node's id, as gossip shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// Its generation (start time in microseconds).
    pub generation: u64,
    /// Its gossip address.
    pub address: String,
    /// Its heartbeat.
    pub heartbeat: u64,
    /// The failure detector's verdict.
    pub live: bool,
}

/// A twin found: another process running under this node's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Twin {
    /// Its generation.
    pub generation: u64,
    /// Its gossip address.
    pub address: String,
    /// Whether it started before this process (then this one must stop).
    pub older: bool,
}

/// Watches the other generations of this node's id.
#[derive(Debug)]
pub struct TwinWatch {
    own_generation: u64,
    window: Duration,
    /// Per generation: since when it has been live, and its heartbeat then.
    since: HashMap<u64, (Instant, u64)>,
    /// Generations already reported.
    reported: HashSet<u64>,
}

impl TwinWatch {
    /// Watches for twins of the process with `own_generation`; one must
    /// stay live with a rising heartbeat for `window` to count.
    #[must_use]
    pub fn new(own_generation: u64, window: Duration) -> Self {
        Self {
            own_generation,
            window,
            since: HashMap::new(),
            reported: HashSet::new(),
        }
    }

    /// Takes what gossip shows `now` and returns the twins found since
    /// the last call (each one once).
    pub fn observe(&mut self, now: Instant, sightings: &[Sighting]) -> Vec<Twin> {
        let others: Vec<&Sighting> = sightings
            .iter()
            .filter(|s| s.generation != self.own_generation && s.live)
            .collect();
        self.since
            .retain(|generation, _| others.iter().any(|s| s.generation == *generation));
        let mut twins = Vec::new();
        for s in others {
            let (first_seen, first_beat) =
                *self.since.entry(s.generation).or_insert((now, s.heartbeat));
            if now.duration_since(first_seen) >= self.window
                && s.heartbeat > first_beat
                && self.reported.insert(s.generation)
            {
                twins.push(Twin {
                    generation: s.generation,
                    address: s.address.clone(),
                    older: s.generation < self.own_generation,
                });
            }
        }
        twins
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(5);

    fn seen(generation: u64, heartbeat: u64, live: bool) -> Sighting {
        Sighting {
            generation,
            address: format!("10.0.0.{generation}:7401"),
            heartbeat,
            live,
        }
    }

    #[test]
    fn a_generation_beating_through_the_window_is_a_twin() {
        let t0 = Instant::now();
        let mut watch = TwinWatch::new(5, WINDOW);
        assert!(
            watch
                .observe(t0, &[seen(5, 1, true), seen(3, 10, true)])
                .is_empty()
        );
        assert!(
            watch
                .observe(t0 + WINDOW / 2, &[seen(3, 20, true)])
                .is_empty(),
            "not yet a whole window"
        );
        assert_eq!(
            watch.observe(t0 + WINDOW, &[seen(3, 30, true)]),
            [Twin {
                generation: 3,
                address: "10.0.0.3:7401".to_owned(),
                older: true
            }]
        );
        let mut elder = TwinWatch::new(3, WINDOW);
        elder.observe(t0, &[seen(5, 1, true)]);
        let found = elder.observe(t0 + WINDOW, &[seen(5, 9, true)]);
        assert_eq!(found.len(), 1);
        assert!(!found[0].older, "the other one started later");
        assert!(
            elder
                .observe(t0 + WINDOW * 2, &[seen(5, 19, true)])
                .is_empty(),
            "reported once"
        );
    }

    #[test]
    fn an_earlier_incarnation_that_stopped_is_not_a_twin() {
        let t0 = Instant::now();
        let mut watch = TwinWatch::new(5, WINDOW);
        // Still live for the detector a while, but its heartbeat is frozen.
        for step in 0..4u32 {
            let found = watch.observe(t0 + WINDOW * step, &[seen(3, 10, true)]);
            assert!(found.is_empty(), "step {step}: {found:?}");
        }
        // A dead one starts over when seen live again.
        assert!(
            watch
                .observe(t0 + WINDOW * 5, &[seen(4, 1, false)])
                .is_empty()
        );
        assert!(
            watch
                .observe(t0 + WINDOW * 6, &[seen(4, 2, true)])
                .is_empty()
        );
        assert!(
            watch
                .observe(t0 + WINDOW * 6 + WINDOW / 2, &[seen(4, 3, true)])
                .is_empty()
        );
        assert_eq!(watch.observe(t0 + WINDOW * 7, &[seen(4, 4, true)]).len(), 1);
    }
}
