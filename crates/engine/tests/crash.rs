//! Crash safety with real processes: a child writes and reports each
//! acknowledged write on a pipe; the parent kills it with SIGKILL at a
//! random moment, reopens the database and checks the acknowledged state.
//!
//! Cycles: 20 by default; set `STRATA_CRASH_CYCLES` for more.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use strata_engine::{Db, Options};

fn cycles() -> u64 {
    std::env::var("STRATA_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

/// Kills the child on drop, so a failing assertion leaves no process behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `crash_writer <mode> <dir> <arg>` with its stdout piped.
fn spawn_writer(mode: &str, dir: &Path, arg: u64) -> (Killed, std::process::ChildStdout) {
    let child = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
        .args([mode, dir.to_str().expect("utf-8 path"), &arg.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crash_writer");
    let mut child = Killed(child);
    let stdout = child.0.stdout.take().expect("piped");
    (child, stdout)
}

/// Runs the writer for a pseudo-random 50 to 350 ms, kills it with SIGKILL
/// and returns every line it printed.
fn run_and_kill(mode: &str, dir: &Path, first: u64, cycle: u64) -> Vec<String> {
    let (child, stdout) = spawn_writer(mode, dir, first);
    let (first_ack, acked) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.is_empty() {
                let _ = first_ack.send(());
            }
            lines.push(line);
        }
        lines
    });
    // The kill lands at a varying point after the first acknowledgement,
    // not after the start: a writer slow to start on a loaded machine
    // would otherwise be killed before it wrote anything.
    let _ = acked.recv_timeout(Duration::from_secs(60));
    let wait_ms = 50 + (cycle.wrapping_mul(2_654_435_761) % 300);
    std::thread::sleep(Duration::from_millis(wait_ms));
    drop(child); // SIGKILL, then reap: the pipe closes and the reader ends.
    reader.join().expect("reader thread")
}

fn counter_of(value: &[u8]) -> u64 {
    let text = std::str::from_utf8(value).expect("utf-8 value");
    text.split('-')
        .next()
        .expect("counter")
        .parse()
        .expect("numeric counter")
}

#[test]
fn sigkill_never_loses_an_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut total_acked = 0;
    for cycle in 0..cycles() {
        let first = (cycle + 1) * 1_000_000_000;
        let lines = run_and_kill("overwrite", dir.path(), first, cycle);
        total_acked += lines.len();
        for line in lines {
            let (key, counter) = line.split_once(' ').expect("key counter");
            let counter: u64 = counter.parse().expect("numeric");
            let slot = acked.entry(key.to_owned()).or_default();
            *slot = (*slot).max(counter);
        }
        let db = Db::open(dir.path(), Options::default()).expect("reopen after SIGKILL");
        for (key, &counter) in &acked {
            let value = db
                .get(key.as_bytes())
                .expect("get")
                .unwrap_or_else(|| panic!("cycle {cycle}: acknowledged key {key} is missing"));
            // A later write may have been durable without being reported.
            assert!(
                counter_of(&value) >= counter,
                "cycle {cycle}: {key} went back in time"
            );
        }
        db.close().expect("close");
    }
    assert!(
        total_acked > 100,
        "the writer made progress: {total_acked} writes"
    );
}

#[test]
fn power_loss_recovers_a_prefix_with_every_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut next = 0u64;
    for cycle in 0..cycles() {
        let lines = run_and_kill("sequence", dir.path(), next, cycle);
        let acked = lines.last().map(|l| l.parse::<u64>().expect("numeric"));

        let db = Db::open(dir.path(), Options::default()).expect("reopen after power loss");
        let recovered: Vec<u64> = db
            .iter(Some(b"seq"), Some(b"seq~"))
            .expect("iter")
            .map(|entry| {
                let (_, value) = entry.expect("scan");
                std::str::from_utf8(&value)
                    .expect("utf-8")
                    .parse()
                    .expect("numeric")
            })
            .collect();
        db.close().expect("close");
        // The recovered keys are exactly 0..n: a prefix of the history.
        let n = recovered.len() as u64;
        assert_eq!(
            recovered,
            (0..n).collect::<Vec<_>>(),
            "cycle {cycle}: not a prefix"
        );
        if let Some(acked) = acked {
            assert!(
                n > acked,
                "cycle {cycle}: acknowledged {acked} but recovered only {n}"
            );
        }
        assert!(
            n >= next,
            "cycle {cycle}: lost writes recovered by an earlier cycle"
        );
        next = n;
    }
    assert!(next > 100, "the writer made progress: {next} writes");
}

/// `Durability::Periodic` syncs in the background: writes reach the disk
/// with no further write and no `close`. Under power-loss simulation only a
/// sync puts bytes in the file, so the child sees its last write on disk
/// only after a background sync; then a SIGKILL must lose nothing.
#[test]
fn periodic_durability_syncs_in_the_background_without_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let count = 200u64;
    let (child, stdout) = spawn_writer("periodic", dir.path(), count);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line == "synced" => break,
            Ok(_) => {}
            Err(e) => panic!("no background sync within 30 s: {e}"),
        }
    }
    drop(child); // SIGKILL: a power cut for the engine's files.
    let db = Db::open(dir.path(), Options::default()).expect("reopen");
    let present = (0..count)
        .filter(|i| {
            db.get(format!("periodic{i:08}").as_bytes())
                .expect("get")
                .is_some()
        })
        .count();
    assert_eq!(present as u64, count);
}
