//! Progress lines while a bench phase runs, on stderr (`--status-interval`,
//! as YCSB's status thread): a long run says how it is going, and a stall
//! (a paused node, a compaction, a failover) shows as the seconds it
//! happened in rather than only as a lower average at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Operations finished so far in a phase, shared by its workers.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    ops: AtomicU64,
    errors: AtomicU64,
}

impl Tally {
    /// Counts one finished operation.
    pub(crate) fn count(&self, failed: bool) {
        self.ops.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Prints a line every `every` to stderr until the returned task is
/// aborted.
pub(crate) fn spawn(
    phase: &'static str,
    tally: Arc<Tally>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let (mut last_ops, mut last_at) = (0, started);
        loop {
            ticks.tick().await;
            let now = Instant::now();
            let ops = tally.ops.load(Ordering::Relaxed);
            let errors = tally.errors.load(Ordering::Relaxed);
            eprintln!(
                "{}",
                line(
                    phase,
                    now - started,
                    ops,
                    ops - last_ops,
                    now - last_at,
                    errors
                )
            );
            (last_ops, last_at) = (ops, now);
        }
    })
}

/// One progress line: `run    20 s: 301,442 ops, 14,870 ops/s over the
/// last 10 s, 0 errors`.
fn line(
    phase: &str,
    elapsed: Duration,
    ops: u64,
    recent: u64,
    window: Duration,
    errors: u64,
) -> String {
    let window_ms = window.as_millis().max(1);
    let rate = u64::try_from(u128::from(recent) * 1000 / window_ms).unwrap_or(u64::MAX);
    format!(
        "{phase:<6} {:>4} s: {} ops, {} ops/s over the last {} s, {} errors",
        elapsed.as_secs(),
        grouped(ops),
        grouped(rate),
        (window_ms + 500) / 1000,
        grouped(errors),
    )
}

/// `1234567` as `1,234,567`.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_gives_the_total_the_recent_rate_and_the_errors() {
        let text = line(
            "run",
            Duration::from_secs(20),
            301_442,
            148_700,
            Duration::from_secs(10),
            3,
        );
        assert_eq!(
            text,
            "run      20 s: 301,442 ops, 14,870 ops/s over the last 10 s, 3 errors"
        );
        // A stalled second shows as a rate of zero.
        let text = line(
            "load",
            Duration::from_secs(1),
            5,
            0,
            Duration::from_secs(1),
            0,
        );
        assert!(text.contains(" 0 ops/s over the last 1 s"), "{text}");
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn the_tally_counts_operations_and_errors() {
        let tally = Tally::default();
        tally.count(false);
        tally.count(true);
        assert_eq!(tally.ops.load(Ordering::Relaxed), 2);
        assert_eq!(tally.errors.load(Ordering::Relaxed), 1);
    }
}
