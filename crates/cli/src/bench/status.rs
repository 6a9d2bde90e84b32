//! Progress lines while a bench phase runs, on stderr (`--status-interval`,
//! as YCSB's status thread): a long run says how it is going, and a stall
//! (a paused node, a compaction, a failover) shows as the seconds it
//! happened in rather than only as a lower average at the end: each line
//! gives the interval's rate and the latency of the operations that
//! finished in it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Operations finished so far in a phase, shared by its workers, and the
/// latencies of those that succeeded since the last progress line.
#[derive(Debug)]
pub(crate) struct Tally {
    ops: AtomicU64,
    errors: AtomicU64,
    /// Microseconds; emptied by each progress line.
    recent: Mutex<Histogram<u64>>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            ops: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            recent: Mutex::new(super::latency_histogram()),
        }
    }
}

impl Tally {
    /// Counts one finished operation: a failure, or a success that took
    /// `micros`.
    pub(crate) fn count(&self, outcome: Result<u64, ()>) {
        self.ops.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(micros) => self
                .recent
                .lock()
                .expect("tally lock")
                .saturating_record(micros),
            Err(()) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// p50, p99 and the largest latency since the last call (microseconds),
    /// and starts a new interval; `None` when nothing succeeded meanwhile.
    fn take_recent(&self) -> Option<Recent> {
        let mut recent = self.recent.lock().expect("tally lock");
        let taken = (!recent.is_empty()).then(|| Recent {
            p50: recent.value_at_quantile(0.50),
            p99: recent.value_at_quantile(0.99),
            max: recent.max(),
        });
        recent.reset();
        taken
    }
}

/// Latency of the operations that succeeded in one interval, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Recent {
    p50: u64,
    p99: u64,
    max: u64,
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
            if let Some(recent) = tally.take_recent() {
                eprintln!(
                    "{}",
                    latency_line(phase, now - started, now - last_at, recent)
                );
            }
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
        seconds(window),
        grouped(errors),
    )
}

/// The line after it, when operations succeeded in the interval: `run
/// 20 s: latency over the last 10 s: p50 412 us, p99 1,169 us, max 20,527
/// us`. A line of its own, so that the first keeps its form for scripts
/// that read it.
fn latency_line(phase: &str, elapsed: Duration, window: Duration, recent: Recent) -> String {
    format!(
        "{phase:<6} {:>4} s: latency over the last {} s: p50 {} us, p99 {} us, max {} us",
        elapsed.as_secs(),
        seconds(window),
        grouped(recent.p50),
        grouped(recent.p99),
        grouped(recent.max),
    )
}

/// Whole seconds, rounded.
fn seconds(window: Duration) -> u128 {
    (window.as_millis() + 500) / 1000
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
        let latency = Recent {
            p50: 412,
            p99: 1_169,
            max: 20_527,
        };
        assert_eq!(
            latency_line(
                "run",
                Duration::from_secs(20),
                Duration::from_secs(10),
                latency
            ),
            "run      20 s: latency over the last 10 s: p50 412 us, p99 1,169 us, max 20,527 us"
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
        tally.count(Ok(100));
        tally.count(Err(()));
        assert_eq!(tally.ops.load(Ordering::Relaxed), 2);
        assert_eq!(tally.errors.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn each_line_gives_the_latency_of_its_own_interval() {
        let tally = Tally::default();
        for _ in 0..99 {
            tally.count(Ok(400));
        }
        tally.count(Ok(30_000));
        tally.count(Err(()));
        let first = tally.take_recent().expect("operations finished");
        assert_eq!(first.p50, 400);
        assert_eq!(first.p99, 400, "one slow operation in 100 is above p99");
        assert!((29_900..=30_100).contains(&first.max), "{first:?}");
        // The next interval starts empty: the stall does not linger.
        assert_eq!(tally.take_recent(), None);
        tally.count(Ok(500));
        let second = tally.take_recent().expect("one operation");
        assert_eq!((second.p50, second.max), (500, 500));
    }
}
