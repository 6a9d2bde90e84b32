//! The compaction-filter hook: let the application drop values it knows
//! are dead (expired tombstones, TTLs) while compaction rewrites them.

use std::fmt::Debug;

/// Decides, during compaction, whether a key's fully resolved value may
/// be dropped.
///
/// Contract: called only for values no live snapshot can see in any other
/// state (after merge operands are folded onto their base). A dropped
/// value becomes an engine tombstone, so older versions below stay
/// hidden; at the bottommost level it disappears entirely. It must be
/// deterministic for the bytes given and must not panic on any input.
pub trait CompactionFilter: Send + Sync + Debug + 'static {
    /// Whether `value` of `key` may be dropped.
    fn drop_value(&self, key: &[u8], value: &[u8]) -> bool;
}
