//! Test helper for the engine's crash tests (`tests/crash.rs`); not a tool.
//!
//! `crash_writer overwrite <dir> <first-counter>`: four threads overwrite
//! their own keys with increasing counters, fsync durability, and print
//! `<key> <counter>` after each acknowledged write.
//!
//! `crash_writer sequence <dir> <first-index>`: one thread writes keys
//! `first-index, first-index + 1, ...` in batches of 1 to 8 with power-loss
//! simulation on, printing each acknowledged index.
//!
//! `crash_writer periodic <dir> <count>`: with power-loss simulation and
//! `Durability::Periodic`, writes `count` keys, printing each index; then,
//! once the last one is in the WAL file on disk (only a sync puts it there
//! in this mode), prints `synced`.
//!
//! All run until killed.

use std::io::Write as _;
use std::sync::Arc;

use strata_engine::{Db, Durability, Options, WriteBatch};

fn options() -> Options {
    Options {
        durability: Durability::SyncEachGroup,
        memtable_bytes: 64 << 10,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 4,
        l0_stop_trigger: 8,
        level_base_bytes: 256 << 10,
        target_file_bytes: 64 << 10,
        ..Options::default()
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(dir), Some(first)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: crash_writer overwrite|sequence <dir> <first>");
        std::process::exit(2);
    };
    let first: u64 = first.parse().expect("numeric start");
    if mode == "sequence" || mode == "periodic" {
        strata_engine::simulate_power_loss(true);
    }
    let mut options = options();
    if mode == "periodic" {
        options.durability = Durability::Periodic(std::time::Duration::from_millis(10));
    }
    let db = Arc::new(Db::open(dir, options).expect("open"));
    match mode.as_str() {
        "overwrite" => overwrite(&db, first),
        "sequence" => sequence(&db, first),
        "periodic" => periodic(&db, std::path::Path::new(dir), first),
        other => panic!("unknown mode {other}"),
    }
}

fn overwrite(db: &Arc<Db>, first: u64) {
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let db = Arc::clone(db);
            std::thread::spawn(move || {
                let mut counter = first;
                let mut rng = first ^ (t + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                loop {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let key = format!("t{t}-k{:03}", rng % 200);
                    counter += 1;
                    let value = format!("{counter:020}-{}", "x".repeat(64));
                    db.put(key.as_bytes(), value.as_bytes()).expect("put");
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{key} {counter}");
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

fn sequence(db: &Db, first: u64) {
    let mut next = first;
    loop {
        let size = 1 + next % 8;
        let mut batch = WriteBatch::new();
        for i in next..next + size {
            batch.put(format!("seq{i:012}").as_bytes(), format!("{i}").as_bytes());
        }
        db.write(batch).expect("write");
        next += size;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", next - 1);
    }
}

fn periodic(db: &Db, dir: &std::path::Path, count: u64) {
    let key = |i: u64| format!("periodic{i:08}");
    for i in 0..count {
        db.put(key(i).as_bytes(), b"v").expect("put");
        let _ = writeln!(std::io::stdout().lock(), "{i}");
    }
    let last = key(count - 1).into_bytes();
    loop {
        let on_disk = std::fs::read_dir(dir)
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .any(|e| {
                std::fs::read(e.path())
                    .is_ok_and(|data| data.windows(last.len()).any(|w| w == last.as_slice()))
            });
        if on_disk {
            let _ = writeln!(std::io::stdout().lock(), "synced");
            let _ = std::io::stdout().flush();
            loop {
                std::thread::park();
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
