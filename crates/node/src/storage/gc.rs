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
//! member is down and opens again only after every member has been up for
//! a quiet period (`tombstone_gate.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use strata_engine::CompactionFilter;

use super::codec::decode;

/// Whether compaction may drop expired tombstones now. Shared by the
/// compaction filter (which reads it per key) and whoever follows the
/// cluster's liveness (which sets it).
#[derive(Debug)]
pub struct GcGate {
    open: AtomicBool,
}

impl GcGate {
    /// A gate that starts open or closed.
    #[must_use]
    pub fn new(open: bool) -> Self {
        Self {
            open: AtomicBool::new(open),
        }
    }

    /// Whether expired tombstones may be dropped.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Opens or closes the gate; compactions see it from their next key.
    pub fn set(&self, open: bool) {
        self.open.store(open, Ordering::Relaxed);
    }
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
        gc.gate.set(false);
        assert!(!gc.expired(&old_tombstone, now));
        gc.gate.set(true);
        assert!(gc.expired(&old_tombstone, now));
    }
}
