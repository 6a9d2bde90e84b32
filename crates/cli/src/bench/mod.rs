//! `strata bench`: YCSB-style workloads with latency percentiles.
//!
//! A load phase inserts `--records` records; the run phase draws operations
//! from the workload's mix for `--ops` operations or `--duration` seconds on
//! `--threads` concurrent workers. With `--rate`, workers send at fixed
//! intervals, staggered so that the sends are evenly spaced (see
//! [`send_time`]), and latency is measured from each operation's *intended*
//! send time when the worker is late for it, so a stall shows up in the
//! percentiles instead of being hidden (coordinated omission); a worker on
//! schedule counts from when its timer wakes it (see [`pace`]).

pub(crate) mod keys;
mod report;
mod status;
pub(crate) mod workload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use strata_proto::v1::{Consistency, GetResponse};

use keys::{Chooser, Distribution, Rng, record_key};
pub(crate) use report::Report;
use strata_client::{Client, Error};
use workload::{Op, Workload};

/// Options of `strata bench`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchArgs {
    /// Workload: a to f (YCSB core), or ping (RPC ceiling).
    #[arg(long, value_enum, default_value = "a")]
    pub(crate) workload: Workload,
    /// Records inserted by the load phase (and the key space of the run).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) records: u64,
    /// Operations in the run phase (default 10000 unless --duration).
    #[arg(long)]
    pub(crate) ops: Option<u64>,
    /// Length of the run phase in seconds, instead of --ops. Ctrl-C ends
    /// either phase early and reports what was measured.
    #[arg(long)]
    pub(crate) duration: Option<f64>,
    /// Concurrent workers (requests in flight).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub(crate) threads: u64,
    /// Key distribution (default: the workload's own).
    #[arg(long, value_enum)]
    pub(crate) distribution: Option<Distribution>,
    /// Fixed total rate in operations per second (default: as fast as possible).
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Size of each value in bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) value_bytes: usize,
    /// Write fresh random bytes in every value (incompressible, as YCSB
    /// does) instead of one repeated byte, so data on disk is as large as
    /// the values and compression does not flatter reads or streaming.
    #[arg(long)]
    pub(crate) random_values: bool,
    /// Skip the load phase (records already exist).
    #[arg(long)]
    pub(crate) skip_load: bool,
    /// Consistency for every request (default: the cluster's W and R).
    #[arg(long, value_parser = strata_client::parse_consistency)]
    pub(crate) consistency: Option<Consistency>,
    /// One JSON object per result line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Threads of the client's async runtime. With one (the default) the
    /// client takes at most one core, leaving the others to a local
    /// cluster; the report shows the client's own CPU per phase, so a
    /// client that saturates its core is visible.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub(crate) client_threads: u64,
    /// Seconds between progress lines on stderr (operations so far, the
    /// recent rate, errors, and the recent operations' p50, p99 and
    /// largest latency); 0: none.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub(crate) status_interval: u64,
}

/// How often one kind of error happened, and the first one's message (a
/// count alone does not say what went wrong).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ErrorTally {
    pub(crate) count: u64,
    pub(crate) first: String,
}

impl ErrorTally {
    fn add(&mut self, count: u64, message: &str) {
        if self.count == 0 {
            message.clone_into(&mut self.first);
        }
        self.count += count;
    }
}

/// An empty histogram of latencies in microseconds, up to a minute, with
/// three significant digits: one phase's per operation, and each progress
/// interval's (`status.rs`).
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// Latencies and errors of one phase.
#[derive(Debug, Default)]
pub(crate) struct PhaseStats {
    /// Latency histograms in microseconds, per operation.
    pub(crate) latencies: BTreeMap<Op, Histogram<u64>>,
    /// Errors by gRPC code name (or the client's own error).
    pub(crate) errors: BTreeMap<String, ErrorTally>,
    /// Reads of a record the load phase wrote that found no value: lost
    /// data, or records that were never loaded (`--skip-load`).
    pub(crate) missing: u64,
    /// Wall time of the phase.
    pub(crate) elapsed: Duration,
    /// CPU time the client process used during the phase (user + system),
    /// when the OS reports it.
    pub(crate) client_cpu: Option<Duration>,
}

impl PhaseStats {
    fn record(&mut self, op: Op, micros: u64) {
        self.latencies
            .entry(op)
            .or_insert_with(latency_histogram)
            .saturating_record(micros);
    }

    fn merge(&mut self, other: Self) {
        for (op, h) in other.latencies {
            match self.latencies.get_mut(&op) {
                Some(mine) => mine.add(h).expect("same bounds"),
                None => {
                    self.latencies.insert(op, h);
                }
            }
        }
        for (code, tally) in other.errors {
            self.errors
                .entry(code)
                .or_default()
                .add(tally.count, &tally.first);
        }
        self.missing += other.missing;
    }

    /// Counts a read of record `n` that found `got` (only records below
    /// `loaded` must exist).
    fn check_found(&mut self, n: u64, loaded: u64, got: &GetResponse) {
        if n < loaded && !got.siblings.iter().any(|s| !s.tombstone) {
            self.missing += 1;
        }
    }
}

/// Runs the benchmark against `client` and returns its report.
///
/// # Errors
/// A worker task that panicked (reported, not propagated as a panic).
pub(crate) async fn run(client: &Client, args: &BenchArgs) -> Result<Report, Error> {
    let mut report = Report::new(args);
    let (value_bytes, random) = (args.value_bytes, args.random_values);
    let stop = interrupted();
    if !args.skip_load && args.workload != Workload::Ping {
        let next = Arc::new(AtomicU64::new(0));
        let records = args.records;
        let stop = Arc::clone(&stop);
        let load = spawn_workers(client, args, "load", move |worker| {
            let (next, stop) = (Arc::clone(&next), Arc::clone(&stop));
            async move {
                let mut stats = PhaseStats::default();
                let (client, tally) = (worker.client, worker.tally);
                let mut rng = Rng::new(0x10ad ^ (worker.index + 1).wrapping_mul(0x9e37_79b9));
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= records || stop.load(Ordering::Relaxed) {
                        return stats;
                    }
                    let started = Instant::now();
                    let result = client
                        .put(
                            record_key(n),
                            make_value(value_bytes, b'x', random.then_some(&mut rng)),
                            Vec::new(),
                            worker.consistency,
                        )
                        .await
                        .map(drop);
                    finish(&mut stats, &tally, Op::Insert, started, result);
                }
            }
        })
        .await?;
        report.add("load", load);
    }
    if stop.load(Ordering::Relaxed) {
        report.interrupted();
        return Ok(report);
    }

    let distribution = args
        .distribution
        .unwrap_or(args.workload.default_distribution());
    let chooser = Arc::new(Chooser::new(distribution, args.records));
    let inserted = Arc::new(AtomicU64::new(args.records));
    let budget = Arc::new(AtomicU64::new(match (args.ops, args.duration) {
        (Some(ops), _) => ops,
        (None, Some(_)) => u64::MAX,
        (None, None) => 10_000,
    }));
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let interval = args
        .rate
        .map(|rate| Duration::from_secs_f64(args.threads as f64 / rate.max(1e-9)));
    let workload = args.workload;
    let loaded = args.records;
    let stopped = Arc::clone(&stop);
    let threads = args.threads;
    let start = Instant::now();
    let run = spawn_workers(client, args, "run", move |worker| {
        let (chooser, inserted, budget, stop) = (
            Arc::clone(&chooser),
            Arc::clone(&inserted),
            Arc::clone(&budget),
            Arc::clone(&stopped),
        );
        async move {
            let mut stats = PhaseStats::default();
            let (client, tally) = (worker.client, worker.tally);
            let mut rng = Rng::new(0x5eed ^ (worker.index + 1).wrapping_mul(0x9e37_79b9));
            for k in 0u32.. {
                if deadline.is_some_and(|d| Instant::now() >= d)
                    || stop.load(Ordering::Relaxed)
                    || take(&budget).is_none()
                {
                    return stats;
                }
                let started = match interval {
                    Some(interval) => {
                        pace(send_time(start, interval, worker.index, threads, k)).await
                    }
                    None => Instant::now(),
                };
                let op = workload.next_op(&mut rng);
                let count = inserted.load(Ordering::Relaxed);
                let result = match op {
                    Op::Ping => client.ping(Vec::new()).await.map(drop),
                    Op::Read => {
                        let n = chooser.pick(&mut rng, count);
                        client
                            .get(record_key(n), worker.consistency)
                            .await
                            .map(|got| stats.check_found(n, loaded, &got))
                    }
                    // Against a store that keeps siblings, an update reads the
                    // record's context first (as YCSB's Riak binding does):
                    // a blind write would add a sibling each time.
                    Op::Update | Op::ReadModifyWrite => {
                        let n = chooser.pick(&mut rng, count);
                        let key = record_key(n);
                        match client.get(key.clone(), worker.consistency).await {
                            Ok(got) => {
                                stats.check_found(n, loaded, &got);
                                client
                                    .put(
                                        key,
                                        make_value(value_bytes, b'y', random.then_some(&mut rng)),
                                        got.context.to_vec(),
                                        worker.consistency,
                                    )
                                    .await
                                    .map(drop)
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Op::Insert => {
                        let n = inserted.fetch_add(1, Ordering::Relaxed);
                        client
                            .put(
                                record_key(n),
                                make_value(value_bytes, b'y', random.then_some(&mut rng)),
                                Vec::new(),
                                worker.consistency,
                            )
                            .await
                            .map(drop)
                    }
                    Op::Scan => {
                        let first = chooser.pick(&mut rng, count);
                        let len = 1 + rng.below(100);
                        let keys = (first..(first + len).min(count)).map(record_key).collect();
                        client.batch_get(keys, worker.consistency).await.map(drop)
                    }
                };
                finish(&mut stats, &tally, op, started, result);
            }
            stats
        }
    })
    .await?;
    report.add("run", run);
    if stop.load(Ordering::Relaxed) {
        report.interrupted();
    }
    Ok(report)
}

/// Turns true at the first Ctrl-C or SIGTERM: the workers stop after the
/// operation they are on and the report shows what was measured (a long
/// `--duration` run cut short still reports). A second one exits at once.
fn interrupted() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    tokio::spawn(async move {
        strata_node::signal::shutdown().await;
        eprintln!(
            "interrupted: stopping after the requests in flight and reporting what was measured \
             (again to exit at once)"
        );
        flag.store(true, Ordering::Relaxed);
        strata_node::signal::shutdown().await;
        std::process::exit(130);
    });
    stop
}

/// A value of `len` bytes: random from `rng` when given, else `fill`.
fn make_value(len: usize, fill: u8, rng: Option<&mut Rng>) -> Vec<u8> {
    let Some(rng) = rng else {
        return vec![fill; len];
    };
    let mut value = Vec::with_capacity(len + 8);
    while value.len() < len {
        value.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    value.truncate(len);
    value
}

/// Takes one operation from the budget; `None` when it is spent.
fn take(budget: &AtomicU64) -> Option<()> {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            left.checked_sub(1)
        })
        .ok()
        .map(drop)
}

fn finish(
    stats: &mut PhaseStats,
    tally: &status::Tally,
    op: Op,
    started: Instant,
    result: Result<(), Error>,
) {
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    tally.count(result.as_ref().map(|()| micros).map_err(drop));
    let (code, message) = match result {
        Ok(()) => return stats.record(op, micros),
        Err(Error::Status(status)) => (format!("{:?}", status.code()), status.message().to_owned()),
        Err(other) => (other.to_string(), String::new()),
    };
    stats.errors.entry(code).or_default().add(1, &message);
}

/// What each worker gets.
struct Worker {
    index: u64,
    client: Client,
    consistency: Option<Consistency>,
    /// The phase's operations so far, for its progress lines.
    tally: Arc<status::Tally>,
}

/// Runs `threads` workers to completion and merges their stats.
async fn spawn_workers<F, Fut>(
    client: &Client,
    args: &BenchArgs,
    phase: &'static str,
    body: F,
) -> Result<PhaseStats, Error>
where
    F: Fn(Worker) -> Fut,
    Fut: std::future::Future<Output = PhaseStats> + Send + 'static,
{
    let started = Instant::now();
    let cpu_before = process_cpu();
    let tally = Arc::new(status::Tally::default());
    let progress = (args.status_interval > 0).then(|| {
        let every = Duration::from_secs(args.status_interval);
        AbortOnDrop(status::spawn(phase, Arc::clone(&tally), every))
    });
    let tasks: Vec<_> = (0..args.threads)
        .map(|index| {
            tokio::spawn(body(Worker {
                index,
                client: client.clone(),
                consistency: args.consistency,
                tally: Arc::clone(&tally),
            }))
        })
        .collect();
    let mut total = PhaseStats::default();
    for task in tasks {
        let stats = task.await.map_err(|e| Error::Worker(e.to_string()))?;
        total.merge(stats);
    }
    drop(progress);
    total.elapsed = started.elapsed();
    total.client_cpu = process_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    Ok(total)
}

/// Ends a background task when dropped (the progress lines stop with
/// their phase, also when a worker fails).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// CPU time (user + system) this process has used, from `/proc/self/stat`
/// (Linux; `None` elsewhere or when unreadable).
fn process_cpu() -> Option<Duration> {
    parse_proc_stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// When worker `index` of `threads`, each sending every `interval` from
/// `start`, sends its `k`-th operation: the workers are staggered by
/// `interval / threads`, so together they send one operation every
/// `interval / threads`, the requested rate. Without the stagger all of
/// them would send at the same instants, in bursts of `threads`, and the
/// percentiles would measure the queueing of each burst (at `--rate 500`
/// with 32 workers on three nodes: reads p50 1.8 ms against 0.33 ms for
/// one worker).
fn send_time(start: Instant, interval: Duration, index: u64, threads: u64, k: u32) -> Instant {
    #[expect(
        clippy::cast_precision_loss,
        reason = "a fraction of one interval; worker counts are small"
    )]
    let stagger = interval.mul_f64(index as f64 / threads.max(1) as f64);
    start + interval * k + stagger
}

/// At a fixed rate, waits for an operation's `intended` send time and
/// returns when its latency starts counting. A worker already late for it
/// (its previous operation ran long) counts from `intended`, so that a slow
/// server's queueing shows in the latencies (no coordinated omission); a
/// worker that sleeps until then counts from when it wakes, so that the
/// timer's own lateness (tokio's timer has millisecond ticks, and it wakes
/// up to a tick late) is not charged to the server.
async fn pace(intended: Instant) -> Instant {
    if Instant::now() >= intended {
        return intended;
    }
    tokio::time::sleep_until(intended.into()).await;
    Instant::now()
}

/// utime + stime of a `/proc/PID/stat` line. They are fields 14 and 15, in
/// clock ticks of USER_HZ (100 on Linux); the command name (field 2) may
/// hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_proc_stat_cpu(stat: &str) -> Option<Duration> {
    const USER_HZ: u64 = 100;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_a_repeated_byte_or_fresh_random_bytes() {
        assert_eq!(make_value(5, b'x', None), b"xxxxx");
        let mut rng = Rng::new(7);
        let a = make_value(4099, b'x', Some(&mut rng));
        let b = make_value(4099, b'x', Some(&mut rng));
        assert_eq!((a.len(), b.len()), (4099, 4099));
        assert_ne!(a, b, "every value is fresh");
        let distinct = a.iter().collect::<std::collections::HashSet<_>>().len();
        assert!(distinct > 200, "bytes spread over the range: {distinct}");
    }

    #[tokio::test]
    async fn a_late_worker_counts_from_the_intended_time_a_sleeping_one_from_its_wake_up() {
        let late = Instant::now() - Duration::from_millis(5);
        assert_eq!(pace(late).await, late, "the server's delay is counted");
        let ahead = Instant::now() + Duration::from_millis(3);
        let started = pace(ahead).await;
        assert!(
            started > ahead,
            "the sleep ends on a timer tick after the intended time, and the latency counts from there"
        );
    }

    #[test]
    fn paced_workers_send_evenly_spaced_not_in_bursts() {
        let start = Instant::now();
        let (interval, threads) = (Duration::from_millis(100), 4);
        let mut sends: Vec<Duration> = (0..3)
            .flat_map(|k| {
                (0..threads).map(move |index| send_time(start, interval, index, threads, k) - start)
            })
            .collect();
        sends.sort();
        let gaps: Vec<Duration> = sends.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(sends[0], Duration::ZERO);
        assert!(
            gaps.iter().all(|gap| *gap == Duration::from_millis(25)),
            "one send every interval / threads: {sends:?}"
        );
        assert_eq!(send_time(start, interval, 0, 1, 2) - start, interval * 2);
    }

    #[test]
    fn client_cpu_is_utime_plus_stime_counted_after_the_command_name() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime ...; the name holds ") 9 9 (".
        let line = "42 (a) 9 9 (b) S 1 42 42 0 -1 4194560 10 0 0 0 250 130 0 0 20 0 3";
        assert_eq!(parse_proc_stat_cpu(line), Some(Duration::from_millis(3800)));
        assert_eq!(parse_proc_stat_cpu("42 (a) S 1 2"), None, "too short");
        assert_eq!(parse_proc_stat_cpu("no name here"), None);
        let own = process_cpu().expect("this test runs on Linux");
        assert!(own < Duration::from_secs(24 * 3600));
    }
}
