//! Tombstone garbage collection: compaction drops a key whose versions
//! are all tombstones once the newest is older than the grace period, and
//! only while the node's [`GcGate`] is open.
//!
//! Safety: the grace period must exceed the anti-entropy interval (checked
//! at startup, `NodeConfig::validate`), so every replica has been repaired
//! with the tombstone before any replica forgets it; a replica that
//! missed the delete then cannot bring the key back, because by the time
//! the tombstone is gone everywhere its stale value has been superseded.
//! That holds for replicas that are up: one that is down longer than the
//! grace period gets no repair, and its stale value would come back once
//! the others forgot the tombstone. So a node's gate closes while any
//! member is down, and opens again only once this node has repaired every
//! range it replicates with every replica, in a repair that started after
//! a member was last seen down (`tombstone_gate.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use strata_engine::CompactionFilter;

use super::codec::decode;

/// Whether compaction may drop expired tombstones now, from what decides
/// it (`tombstone_gate.rs`): whether every member is up, when one was last
/// seen down, and when the last repair of every range this node
/// replicates started ([`gate_open`]). Shared by the compaction filter
/// (which asks `is_open` per key), the gate's follower and the repairer.
/// Times are wall-clock microseconds.
#[derive(Debug)]
pub struct GcGate {
    /// A store on its own (tests, tools): always open.
    ungated: bool,
    all_up: AtomicBool,
    last_down: AtomicU64,
    repaired_from: AtomicU64,
}

impl GcGate {
    /// A gate for a node's store (`paused`), or one always open. A paused
    /// gate takes every member as down until now (a process that has just
    /// started knows nothing of the others).
    #[must_use]
    pub fn new(paused: bool) -> Self {
        Self {
            ungated: !paused,
            all_up: AtomicBool::new(false),
            last_down: AtomicU64::new(crate::clock::now_micros()),
            repaired_from: AtomicU64::new(0),
        }
    }

    /// Whether expired tombstones may be dropped.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.ungated || gate_open(self.all_up(), self.last_down(), self.repaired_from())
    }

    /// Records what the view shows at `now_micros`: every member holding
    /// ranges up, or not.
    pub fn observe(&self, all_up: bool, now_micros: u64) {
        if !all_up {
            self.last_down.fetch_max(now_micros, Ordering::Relaxed);
        }
        self.all_up.store(all_up, Ordering::Relaxed);
    }

    /// Whether every member was up when last observed.
    #[must_use]
    pub fn all_up(&self) -> bool {
        self.all_up.load(Ordering::Relaxed)
    }

    /// When a member was last seen down (or this store opened).
    #[must_use]
    pub fn last_down(&self) -> u64 {
        self.last_down.load(Ordering::Relaxed)
    }

    /// When the newest repair of every range this node replicates that
    /// reached every replica started (`None`: none yet).
    #[must_use]
    pub fn repaired_from(&self) -> Option<u64> {
        let micros = self.repaired_from.load(Ordering::Relaxed);
        (micros != 0).then_some(micros)
    }

    /// Records a repair of every range this node replicates, started at
    /// `started_micros`, that reached every replica.
    pub fn repaired(&self, started_micros: u64) {
        self.repaired_from
            .fetch_max(started_micros, Ordering::Relaxed);
    }

    /// Whether a repair of every range (rather than the schedule's primary
    /// ranges) is what GC waits for: every member is up, and no such
    /// repair has started since one was last seen down.
    #[must_use]
    pub fn wants_full_repair(&self) -> bool {
        self.all_up() && !self.is_open()
    }
}

/// Whether tombstones may be dropped: every member is up (`all_up`), and
/// a repair of every range this node replicates, reaching every replica,
/// started at `repaired_from`, after a member was last seen down at
/// `last_down` (wall-clock microseconds).
#[must_use]
pub fn gate_open(all_up: bool, last_down: u64, repaired_from: Option<u64>) -> bool {
    all_up && repaired_from.is_some_and(|repaired| repaired >= last_down)
}

/// Drops all-tombstone sibling sets older than `grace` while `gate` is
/// open.
#[derive(Debug, Clone)]
pub struct TombstoneGc {
    /// How long a tombstone is kept after its write.
    pub grace: Duration,
    /// Closed: every tombstone is kept.
    pub gate: Arc<GcGate>,
}

impl TombstoneGc {
    /// Whether a stored value may be dropped at wall-clock `now_micros`.
    #[must_use]
    pub fn expired(&self, value: &[u8], now_micros: u64) -> bool {
        if !self.gate.is_open() {
            return false;
        }
        // Unreadable values (quarantine records) are never dropped.
        let Ok(siblings) = decode(value) else {
            return false;
        };
        let grace = u64::try_from(self.grace.as_micros()).unwrap_or(u64::MAX);
        !siblings.is_empty()
            && siblings.versions().iter().all(|v| v.value.is_none())
            && siblings
                .versions()
                .iter()
                .all(|v| v.timestamp_micros.saturating_add(grace) < now_micros)
    }
}

impl CompactionFilter for TombstoneGc {
    fn drop_value(&self, _: &[u8], value: &[u8]) -> bool {
        self.expired(value, crate::clock::now_micros())
    }
}

#[cfg(test)]
mod tests {
    use strata_cluster::{Dot, NodeId, Siblings, Version, VersionVector};

    use super::*;
    use crate::storage::encode;

    fn version(counter: u64, value: Option<&str>, timestamp_micros: u64) -> Version {
        Version {
            dot: Dot {
                node: NodeId::new("n1").expect("id"),
                counter,
            },
            context: VersionVector::new(),
            value: value.map(|v| v.as_bytes().to_vec().into()),
            timestamp_micros,
            request_id: 0,
        }
    }

    #[test]
    fn only_sets_of_old_tombstones_expire() {
        let gc = TombstoneGc {
            grace: Duration::from_secs(10),
            gate: Arc::new(GcGate::new(true)),
        };
        let open = |gate: &GcGate| {
            gate.observe(true, crate::clock::now_micros());
            gate.repaired(crate::clock::now_micros());
        };
        open(&gc.gate);
        let now = 100_000_000;
        let old_tombstone = encode(&Siblings::from_versions([version(1, None, 1_000)]));
        assert!(gc.expired(&old_tombstone, now));
        let young_tombstone = encode(&Siblings::from_versions([version(1, None, now - 1_000)]));
        assert!(!gc.expired(&young_tombstone, now));
        let with_live_sibling = encode(&Siblings::from_versions([
            version(1, None, 1_000),
            version(2, Some("v"), 1_000),
        ]));
        assert!(!gc.expired(&with_live_sibling, now));
        assert!(!gc.expired(b"\\xffgarbage", now));
        // A closed gate keeps even the oldest tombstone.
        gc.gate.observe(false, crate::clock::now_micros());
        assert!(!gc.expired(&old_tombstone, now));
        open(&gc.gate);
        assert!(gc.expired(&old_tombstone, now));
    }

    #[test]
    fn a_full_repair_is_wanted_once_every_member_is_up_until_one_starts_after() {
        let gate = GcGate::new(true);
        let opened = gate.last_down();
        assert!(opened > 0, "down until it knows better");
        assert!(!gate.wants_full_repair(), "not observed yet");
        gate.observe(false, opened + 100);
        assert!(!gate.wants_full_repair(), "a member is down");
        gate.observe(true, opened + 200);
        assert_eq!(gate.last_down(), opened + 100);
        assert!(gate.wants_full_repair());
        gate.repaired(opened + 99);
        assert!(gate.wants_full_repair(), "started while a member was down");
        gate.repaired(opened + 100);
        assert!(!gate.wants_full_repair());
        gate.repaired(opened);
        assert_eq!(
            gate.repaired_from(),
            Some(opened + 100),
            "the newest start stays"
        );
        gate.observe(false, opened + 300);
        gate.observe(true, opened + 400);
        assert!(gate.wants_full_repair(), "a member went down and came back");
    }
    #[test]
    fn the_gate_opens_after_a_full_repair_that_started_after_a_member_was_last_down() {
        assert!(!gate_open(false, 100, Some(200)), "a member is down");
        assert!(!gate_open(true, 100, None), "no repair yet");
        assert!(
            !gate_open(true, 100, Some(99)),
            "repaired before the return"
        );
        assert!(gate_open(true, 100, Some(100)));
        assert!(gate_open(true, 100, Some(150)));
        assert!(GcGate::new(false).is_open(), "a store on its own");
    }
}
