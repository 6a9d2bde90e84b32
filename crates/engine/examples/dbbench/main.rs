//! `dbbench`: LevelDB-style engine benchmarks, Strata side by side with fjall.
//!
//! ```text
//! cargo run --release -p strata-engine --features fjall --example dbbench -- \
//!     --num 1000000 --engines strata,fjall [--json]
//! ```
//!
//! `--benchmarks sustained` (not in the default list) writes
//! `--sustained-bytes` (10 GB) of random keys with one writer and reports
//! throughput over time and every write stall (see `sustained.rs`).
//!
//! Both engines run in this one process, on the same allocator: jemalloc,
//! or glibc malloc with `--features dbbench-system-allocator`.
//!
//! Keys are 16 bytes, values 100 bytes. Fill and overwrite runs do not
//! fsync; `fillsync` fsyncs every write (Strata through group commit, fjall
//! with `persist(SyncData)` after each insert). `write_amp` is bytes the
//! process wrote to storage (`/proc/self/io`) per byte of keys and values,
//! WAL included, so it is measured the same way for every engine.

#![expect(
    clippy::cast_possible_truncation,
    reason = "benchmark arithmetic: op counts and nanosecond latencies are far below the limits"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use strata_engine::{Db, Durability, Options};

mod sustained;

// The allocator both engines run on (BENCHMARKS.md compares allocators):
// jemalloc by default, glibc malloc with `--features dbbench-system-allocator`.
#[cfg(not(feature = "dbbench-system-allocator"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 100;

#[derive(Debug, Parser)]
struct Args {
    /// Operations per benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    num: u64,
    /// Reader threads for readrandom and readwhilewriting.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Comma-separated engines: strata, fjall (needs --features fjall).
    #[arg(long, default_value = "strata", value_delimiter = ',')]
    engines: Vec<String>,
    /// Comma-separated benchmarks.
    #[arg(
        long,
        default_value = "fillseq,fillrandom,overwrite,readrandom,readseq,readwhilewriting,fillsync",
        value_delimiter = ','
    )]
    benchmarks: Vec<String>,
    /// Writer threads for the fillsync runs.
    #[arg(long, default_value = "1,8,64", value_delimiter = ',')]
    sync_threads: Vec<usize>,
    /// Writes per fillsync run (default: num / 100, at least 1000).
    #[arg(long)]
    sync_num: Option<u64>,
    /// Bytes of keys and values the `sustained` benchmark writes.
    #[arg(long, default_value_t = 10_000_000_000)]
    sustained_bytes: u64,
    /// Seconds between the `sustained` benchmark's throughput lines.
    #[arg(long, default_value_t = 5.0)]
    report_secs: f64,
    /// The `sustained` benchmark lists every write that took this many
    /// milliseconds or more, with the engine's stall causes.
    #[arg(long, default_value_t = 20.0)]
    stall_ms: f64,
    /// Directory for the databases (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// One JSON object per result instead of a table.
    #[arg(long)]
    json: bool,
    /// Strata's `Options::l0_slowdown_trigger` (default: the engine's).
    #[arg(long)]
    l0_slowdown_trigger: Option<usize>,
    /// Strata's `Options::l0_stop_trigger` (default: the engine's).
    #[arg(long)]
    l0_stop_trigger: Option<usize>,
}

/// The operations every engine offers the benchmarks.
trait Engine: Send + Sync {
    fn put(&self, key: &[u8], value: &[u8]);
    fn get(&self, key: &[u8]) -> bool;
    fn scan(&self) -> u64;
    /// Engine-specific diagnostics for the table output.
    fn diagnostics(&self) -> Option<String> {
        None
    }
    /// Write stalls the engine recorded since the last call (none when it
    /// does not report them).
    fn drain_stalls(&self) -> Vec<Stall> {
        Vec::new()
    }
}

/// A write stall as an engine reports it.
struct Stall {
    cause: &'static str,
    started: Instant,
    duration: Duration,
}

struct Strata(Db);

impl Engine for Strata {
    fn put(&self, key: &[u8], value: &[u8]) {
        self.0.put(key, value).expect("strata put");
    }
    fn get(&self, key: &[u8]) -> bool {
        self.0.get(key).expect("strata get").is_some()
    }
    fn scan(&self) -> u64 {
        self.0
            .iter(None, None)
            .expect("strata iter")
            .map(|e| e.map(|_| 1).expect("scan"))
            .sum()
    }
    fn diagnostics(&self) -> Option<String> {
        let s = self.0.stats();
        let files: Vec<String> = s.levels.iter().map(|l| l.files.to_string()).collect();
        Some(format!(
            "stalled {:.1} ms, files per level [{}], engine write-amp {:.2}, cache hit {:.0}%",
            s.stall_micros as f64 / 1000.0,
            files.join(" "),
            s.write_amplification,
            s.block_cache_hit_rate * 100.0
        ))
    }
    fn drain_stalls(&self) -> Vec<Stall> {
        self.0
            .drain_stalls()
            .into_iter()
            .map(|e| Stall {
                cause: e.cause.name(),
                started: e.started,
                duration: e.duration,
            })
            .collect()
    }
}

fn open(engine: &str, dir: &Path, sync: bool, args: &Args) -> Arc<dyn Engine> {
    match engine {
        "strata" => {
            let durability = if sync {
                Durability::SyncEachGroup
            } else {
                Durability::None
            };
            let defaults = Options::default();
            let options = Options {
                durability,
                l0_slowdown_trigger: args
                    .l0_slowdown_trigger
                    .unwrap_or(defaults.l0_slowdown_trigger),
                l0_stop_trigger: args.l0_stop_trigger.unwrap_or(defaults.l0_stop_trigger),
                ..defaults
            };
            Arc::new(Strata(Db::open(dir, options).expect("open strata")))
        }
        #[cfg(feature = "fjall")]
        "fjall" => Arc::new(fjall_engine::Fjall::open(dir, sync)),
        #[cfg(not(feature = "fjall"))]
        "fjall" => {
            eprintln!("dbbench: built without fjall; add --features fjall");
            std::process::exit(2);
        }
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Arc::new(rocksdb_engine::Rocks::open(dir, sync)),
        #[cfg(not(feature = "rocksdb"))]
        "rocksdb" => {
            eprintln!("dbbench: built without rocksdb; add --features rocksdb (see BENCHMARKS.md)");
            std::process::exit(2);
        }
        other => {
            eprintln!("dbbench: unknown engine {other:?} (strata, fjall, rocksdb)");
            std::process::exit(2);
        }
    }
}

#[cfg(feature = "fjall")]
mod fjall_engine {
    use std::path::Path;

    use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

    pub(super) struct Fjall {
        db: Database,
        tree: Keyspace,
        sync: bool,
    }

    impl Fjall {
        pub(super) fn open(dir: &Path, sync: bool) -> Self {
            // Same block cache as Strata's default; fjall's other defaults
            // (64 MiB memtable, 4 KiB blocks, 10-bit bloom, LZ4) match.
            let db = Database::builder(dir)
                .cache_size(64 << 20)
                .open()
                .expect("open fjall");
            let tree = db
                .keyspace("bench", KeyspaceCreateOptions::default)
                .expect("keyspace");
            Self { db, tree, sync }
        }
    }

    impl super::Engine for Fjall {
        fn put(&self, key: &[u8], value: &[u8]) {
            self.tree.insert(key, value).expect("fjall insert");
            if self.sync {
                self.db
                    .persist(PersistMode::SyncData)
                    .expect("fjall persist");
            }
        }
        fn get(&self, key: &[u8]) -> bool {
            self.tree.get(key).expect("fjall get").is_some()
        }
        fn scan(&self) -> u64 {
            self.tree
                .iter()
                .map(|g| g.key().map(|_| 1).expect("scan"))
                .sum()
        }
    }
}

#[cfg(feature = "rocksdb")]
mod rocksdb_engine {
    use std::path::Path;

    use rocksdb::{BlockBasedOptions, Cache, DB, DBCompressionType, Options, WriteOptions};

    pub(super) struct Rocks {
        db: DB,
        sync: bool,
    }

    impl Rocks {
        pub(super) fn open(dir: &Path, sync: bool) -> Self {
            // Settings comparable to Strata's defaults: 64 MiB memtable and
            // block cache, 4 KiB blocks, 10-bit bloom filters, LZ4 from level 2.
            let mut block = BlockBasedOptions::default();
            block.set_block_size(4 << 10);
            block.set_bloom_filter(10.0, false);
            block.set_block_cache(&Cache::new_lru_cache(64 << 20));
            let mut options = Options::default();
            options.create_if_missing(true);
            options.set_write_buffer_size(64 << 20);
            options.set_max_background_jobs(2);
            options.set_block_based_table_factory(&block);
            options.set_compression_per_level(&[
                DBCompressionType::None,
                DBCompressionType::None,
                DBCompressionType::Lz4,
                DBCompressionType::Lz4,
                DBCompressionType::Lz4,
                DBCompressionType::Lz4,
                DBCompressionType::Lz4,
            ]);
            Self {
                db: DB::open(&options, dir).expect("open rocksdb"),
                sync,
            }
        }
    }

    impl super::Engine for Rocks {
        fn put(&self, key: &[u8], value: &[u8]) {
            let mut options = WriteOptions::default();
            options.set_sync(self.sync);
            self.db.put_opt(key, value, &options).expect("rocksdb put");
        }
        fn get(&self, key: &[u8]) -> bool {
            self.db.get_pinned(key).expect("rocksdb get").is_some()
        }
        fn scan(&self) -> u64 {
            self.db
                .iterator(rocksdb::IteratorMode::Start)
                .map(|e| e.map(|_| 1).expect("scan"))
                .sum()
        }
    }
}

/// A deterministic xorshift generator per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn key(i: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    let text = format!("{i:016}");
    k.copy_from_slice(text.as_bytes());
    k
}

/// Half-compressible values, as LevelDB's db_bench makes them.
fn value_source() -> Vec<u8> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::with_capacity(1 << 20);
    while out.len() < (1 << 20) {
        let chunk: Vec<u8> = (0..50).map(|_| b' ' + (rng.next() % 95) as u8).collect();
        out.extend_from_slice(&chunk);
        out.extend_from_slice(&chunk);
    }
    out
}

fn value(source: &[u8], i: u64) -> &[u8] {
    let start = (i as usize * 97) % (source.len() - VALUE_LEN);
    &source[start..start + VALUE_LEN]
}

struct Result {
    bench: String,
    engine: String,
    ops: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
    write_bytes: Option<u64>,
    bytes_on_disk: u64,
    user_bytes: u64,
}

fn process_write_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                let m = e.metadata().ok();
                if m.as_ref().is_some_and(std::fs::Metadata::is_dir) {
                    dir_bytes(&e.path())
                } else {
                    m.map_or(0, |m| m.len())
                }
            })
            .sum()
    })
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

/// Runs `op(thread, i)` for `i in 0..per_thread` on `threads` threads,
/// timing each call.
fn run_threads(
    threads: usize,
    per_thread: u64,
    op: impl Fn(usize, u64) + Sync,
) -> (Duration, Histogram<u64>) {
    let started = Instant::now();
    let hists: Vec<Histogram<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let op = &op;
                s.spawn(move || {
                    let mut hist = histogram();
                    for i in 0..per_thread {
                        let t0 = Instant::now();
                        op(t, i);
                        hist.saturating_record(t0.elapsed().as_nanos() as u64);
                    }
                    hist
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread"))
            .collect()
    });
    let elapsed = started.elapsed();
    let mut total = histogram();
    for h in hists {
        total.add(h).expect("same bounds");
    }
    (elapsed, total)
}

fn main() {
    let args = Args::parse();
    let base = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("dbbench-{}", std::process::id())));
    let source = value_source();
    let mut results = Vec::new();
    if !args.json {
        println!(
            "{:<20} {:<7} {:>12} {:>9} {:>9} {:>9} {:>12}",
            "bench", "engine", "ops/sec", "p50 us", "p99 us", "w-amp", "disk MiB"
        );
    }
    for engine in &args.engines {
        let root = base.join(engine);
        let _ = std::fs::remove_dir_all(&root);
        let mut shared: Option<Arc<dyn Engine>> = None;
        for bench in &args.benchmarks {
            let runs: Vec<Result> = match bench.as_str() {
                "fillsync" => args
                    .sync_threads
                    .iter()
                    .map(|&threads| {
                        let dir = root.join(format!("fillsync{threads}"));
                        let db = open(engine, &dir, true, &args);
                        let total = args.sync_num.unwrap_or((args.num / 100).max(1000));
                        let per = (total / threads as u64).max(1);
                        let wb = process_write_bytes();
                        let (elapsed, hist) = run_threads(threads, per, |t, i| {
                            let k = t as u64 * per + i;
                            db.put(&key(k), value(&source, k));
                        });
                        let r = finish(
                            format!("fillsync/{threads}"),
                            engine,
                            per * threads as u64,
                            elapsed,
                            hist,
                            wb,
                            &dir,
                        );
                        diagnose(&*db, args.json);
                        drop(db);
                        let _ = std::fs::remove_dir_all(&dir);
                        r
                    })
                    .collect(),
                "fillseq" | "fillrandom" => {
                    let dir = root.join(bench);
                    let db = open(engine, &dir, false, &args);
                    let random = bench == "fillrandom";
                    let wb = process_write_bytes();
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
                    let num = args.num;
                    let keys: Vec<u64> = (0..num)
                        .map(|i| if random { rng.next() % num } else { i })
                        .collect();
                    let (elapsed, hist) = run_threads(1, num, |_, i| {
                        let k = keys[i as usize];
                        db.put(&key(k), value(&source, k));
                    });
                    let r = finish(bench.clone(), engine, num, elapsed, hist, wb, &dir);
                    diagnose(&*db, args.json);
                    if random {
                        shared = Some(db);
                    } else {
                        drop(db);
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                    vec![r]
                }
                "overwrite" | "readrandom" | "readseq" | "readwhilewriting" => {
                    let Some(db) = shared.clone() else {
                        eprintln!("dbbench: {bench} needs fillrandom earlier in --benchmarks");
                        std::process::exit(2);
                    };
                    let dir = root.join("fillrandom");
                    let num = args.num;
                    let wb = process_write_bytes();
                    let (ops, (elapsed, hist)) = match bench.as_str() {
                        "overwrite" => (
                            num,
                            run_threads(1, num, |_, i| {
                                let k = Rng(i + 1).next() % num;
                                db.put(&key(k), value(&source, k + 1));
                            }),
                        ),
                        "readrandom" => {
                            let per = num / args.threads as u64;
                            (
                                per * args.threads as u64,
                                run_threads(args.threads, per, |t, i| {
                                    let k = Rng(((t as u64) << 40) + i + 1).next() % num;
                                    db.get(&key(k));
                                }),
                            )
                        }
                        "readseq" => {
                            let started = Instant::now();
                            let n = db.scan();
                            let mut hist = histogram();
                            hist.saturating_record(started.elapsed().as_nanos() as u64 / n.max(1));
                            (n, (started.elapsed(), hist))
                        }
                        _ => {
                            let stop = AtomicBool::new(false);
                            let per = num / args.threads as u64;
                            let result = std::thread::scope(|s| {
                                let writer = s.spawn(|| {
                                    let mut i = 0u64;
                                    while !stop.load(Ordering::Relaxed) {
                                        let k = Rng(i + 7).next() % num;
                                        db.put(&key(k), value(&source, k + 2));
                                        i += 1;
                                    }
                                });
                                let r = run_threads(args.threads, per, |t, i| {
                                    let k = Rng(((t as u64) << 40) + i + 3).next() % num;
                                    db.get(&key(k));
                                });
                                stop.store(true, Ordering::Relaxed);
                                writer.join().expect("writer");
                                r
                            });
                            (per * args.threads as u64, result)
                        }
                    };
                    let r = finish(bench.clone(), engine, ops, elapsed, hist, wb, &dir);
                    diagnose(&*db, args.json);
                    vec![r]
                }
                "sustained" => {
                    let dir = root.join(bench);
                    let db = open(engine, &dir, false, &args);
                    if !args.json {
                        println!(
                            "sustained, {engine}: {:.1} GB of random keys, one writer",
                            args.sustained_bytes as f64 / 1e9
                        );
                    }
                    let wb = process_write_bytes();
                    let out = sustained::run(
                        &*db,
                        &source,
                        args.sustained_bytes,
                        Duration::from_secs_f64(args.report_secs.max(0.1)),
                        Duration::from_secs_f64(args.stall_ms.max(0.0) / 1e3),
                        args.json,
                    );
                    let r = finish(
                        bench.clone(),
                        engine,
                        out.ops,
                        out.elapsed,
                        out.hist,
                        wb,
                        &dir,
                    );
                    if !args.json {
                        eprintln!(
                            "    writes of {} ms or more: {}, longest write {:.1} ms",
                            args.stall_ms,
                            out.slow_writes,
                            r.hist.max() as f64 / 1e6
                        );
                    }
                    diagnose(&*db, args.json);
                    drop(db);
                    let _ = std::fs::remove_dir_all(&dir);
                    vec![r]
                }
                other => {
                    eprintln!("dbbench: unknown benchmark {other:?}");
                    std::process::exit(2);
                }
            };
            for r in runs {
                report(&r, args.json);
                results.push(r);
            }
        }
        drop(shared);
        let _ = std::fs::remove_dir_all(&root);
    }
    let _ = std::fs::remove_dir_all(&base);
}

fn diagnose(db: &dyn Engine, json: bool) {
    if let (false, Some(line)) = (json, db.diagnostics()) {
        eprintln!("    {line}");
    }
}

fn finish(
    bench: String,
    engine: &str,
    ops: u64,
    elapsed: Duration,
    hist: Histogram<u64>,
    write_bytes_before: Option<u64>,
    dir: &Path,
) -> Result {
    let write_bytes =
        write_bytes_before.and_then(|b| Some(process_write_bytes()?.saturating_sub(b)));
    let is_write = !bench.starts_with("read");
    Result {
        bench,
        engine: engine.to_owned(),
        ops,
        elapsed,
        hist,
        write_bytes,
        bytes_on_disk: dir_bytes(dir),
        user_bytes: if is_write {
            ops * (KEY_LEN + VALUE_LEN) as u64
        } else {
            0
        },
    }
}

fn report(r: &Result, json: bool) {
    let ops_per_sec = r.ops as f64 / r.elapsed.as_secs_f64();
    let p50 = r.hist.value_at_quantile(0.50) as f64 / 1000.0;
    let p99 = r.hist.value_at_quantile(0.99) as f64 / 1000.0;
    let write_amp = match (r.write_bytes, r.user_bytes) {
        (Some(w), u) if u > 0 => Some(w as f64 / u as f64),
        _ => None,
    };
    if json {
        let wa = write_amp.map_or_else(|| "null".to_owned(), |w| format!("{w:.2}"));
        println!(
            "{{\"bench\": \"{}\", \"engine\": \"{}\", \"ops_per_sec\": {ops_per_sec:.0}, \"p50_us\": {p50:.2}, \"p99_us\": {p99:.2}, \"write_amp\": {wa}, \"bytes_on_disk\": {}}}",
            r.bench, r.engine, r.bytes_on_disk
        );
    } else {
        let wa = write_amp.map_or_else(|| "-".to_owned(), |w| format!("{w:.2}"));
        println!(
            "{:<20} {:<7} {:>12.0} {:>9.2} {:>9.2} {:>9} {:>12.1}",
            r.bench,
            r.engine,
            ops_per_sec,
            p50,
            p99,
            wa,
            r.bytes_on_disk as f64 / f64::from(1 << 20)
        );
    }
}
