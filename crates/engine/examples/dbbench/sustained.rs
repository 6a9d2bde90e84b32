//! `sustained`: one writer puts random keys until `--sustained-bytes` of
//! keys and values are written (far beyond memtables and cache, so flush and
//! compaction must keep up), reporting throughput every `--report-secs`
//! and every write that took `--stall-ms` or longer, with the engine's
//! stall causes when it reports them (Strata: `Db::drain_stalls`).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::{Engine, KEY_LEN, Rng, VALUE_LEN, histogram, key, value};

/// A write the writer waited on for at least the threshold.
struct SlowWrite {
    at: Duration,
    took: Duration,
}

/// What the run measured (the per-interval lines are printed as it goes).
pub(crate) struct Outcome {
    pub(crate) ops: u64,
    pub(crate) elapsed: Duration,
    pub(crate) hist: Histogram<u64>,
    /// Writes of at least the threshold.
    pub(crate) slow_writes: u64,
}

pub(crate) fn run(
    db: &dyn Engine,
    source: &[u8],
    bytes: u64,
    report_every: Duration,
    stall: Duration,
    json: bool,
) -> Outcome {
    let ops = bytes / (KEY_LEN + VALUE_LEN) as u64;
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut hist = histogram();
    let mut interval = histogram();
    let mut slow = Vec::new();
    let mut slow_writes = 0u64;
    let started = Instant::now();
    let mut next_report = report_every;
    let mut interval_ops = 0u64;
    let mut interval_start = Duration::ZERO;
    for i in 0..ops {
        let k = rng.next() % 10_000_000_000_000_000;
        let t0 = Instant::now();
        db.put(&key(k), value(source, k));
        let took = t0.elapsed();
        hist.saturating_record(took.as_nanos() as u64);
        interval.saturating_record(took.as_nanos() as u64);
        interval_ops += 1;
        if took >= stall {
            slow_writes += 1;
            slow.push(SlowWrite {
                at: t0 - started,
                took,
            });
        }
        let now = started.elapsed();
        if now >= next_report || i + 1 == ops {
            let secs = (now - interval_start).as_secs_f64();
            let written = interval_ops * (KEY_LEN + VALUE_LEN) as u64;
            let events = db.drain_stalls();
            let line = Interval {
                at: now,
                ops_per_sec: interval_ops as f64 / secs,
                mb_per_sec: written as f64 / secs / 1e6,
                p99: Duration::from_nanos(interval.value_at_quantile(0.99)),
                max: Duration::from_nanos(interval.max()),
                total_gb: (i + 1) as f64 * (KEY_LEN + VALUE_LEN) as f64 / 1e9,
            };
            line.print(json);
            for s in slow.drain(..) {
                let causes = causes_during(&events, started + s.at, s.took);
                if json {
                    println!(
                        "{{\"stall_at_s\": {:.3}, \"stall_ms\": {:.1}, \"causes\": \"{causes}\"}}",
                        s.at.as_secs_f64(),
                        s.took.as_secs_f64() * 1e3
                    );
                } else {
                    println!(
                        "    stall at {:>7.2} s: {:>7.1} ms  {causes}",
                        s.at.as_secs_f64(),
                        s.took.as_secs_f64() * 1e3
                    );
                }
            }
            interval.reset();
            interval_ops = 0;
            interval_start = now;
            next_report = now + report_every;
        }
    }
    Outcome {
        ops,
        elapsed: started.elapsed(),
        hist,
        slow_writes,
    }
}

/// One report line.
struct Interval {
    at: Duration,
    ops_per_sec: f64,
    mb_per_sec: f64,
    p99: Duration,
    max: Duration,
    total_gb: f64,
}

impl Interval {
    fn print(&self, json: bool) {
        if json {
            println!(
                "{{\"at_s\": {:.1}, \"ops_per_sec\": {:.0}, \"mb_per_sec\": {:.1}, \"p99_us\": {:.1}, \"max_ms\": {:.1}, \"written_gb\": {:.2}}}",
                self.at.as_secs_f64(),
                self.ops_per_sec,
                self.mb_per_sec,
                self.p99.as_secs_f64() * 1e6,
                self.max.as_secs_f64() * 1e3,
                self.total_gb
            );
        } else {
            println!(
                "  {:>7.1} s {:>10.0} ops/s {:>7.1} MB/s  p99 {:>8.1} us  max {:>8.1} ms  {:>6.2} GB written",
                self.at.as_secs_f64(),
                self.ops_per_sec,
                self.mb_per_sec,
                self.p99.as_secs_f64() * 1e6,
                self.max.as_secs_f64() * 1e3,
                self.total_gb
            );
        }
    }
}

/// The engine's stall events overlapping `[start, start + took]`, summed
/// by cause ("-" when the engine reported none).
fn causes_during(events: &[super::Stall], start: Instant, took: Duration) -> String {
    let end = start + took;
    let mut by_cause: Vec<(&'static str, Duration)> = Vec::new();
    for e in events {
        if e.started < end && e.started + e.duration > start {
            match by_cause.iter_mut().find(|(c, _)| *c == e.cause) {
                Some((_, d)) => *d += e.duration,
                None => by_cause.push((e.cause, e.duration)),
            }
        }
    }
    if by_cause.is_empty() {
        return "-".to_owned();
    }
    by_cause
        .iter()
        .map(|(c, d)| format!("{c} {:.1} ms", d.as_secs_f64() * 1e3))
        .collect::<Vec<_>>()
        .join(", ")
}
