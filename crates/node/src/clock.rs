//! The wall clock, in the unit versions, hints and repairs record.

/// Microseconds since the Unix epoch (0 if the clock is before it).
#[must_use]
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}
