//! One writer thread per store: async callers queue merges, the thread
//! commits everything queued as one engine batch (one WAL append, one
//! fsync) and completes each caller.
//!
//! Why: calling the engine's blocking `write` from `spawn_blocking` parks
//! one thread per in-flight write on the engine's group-commit condvars;
//! on a 2-core machine the wakeups (two thread switches per write) cost
//! more CPU than the writes (profile in docs/benchmarks.md). Here
//! a write is a channel send and a oneshot wakeup, and while the thread
//! waits for one fsync the next batch forms in the queue.

use std::sync::Arc;

use strata_engine::{Db, WriteBatch};
use tokio::sync::{mpsc, oneshot};

use super::StorageError;

/// Queued writes at most; further callers wait (backpressure).
const QUEUE: usize = 4096;
/// A batch stops growing at this many bytes of keys and values.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Failed batches are logged at most once per interval.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// One queued merge.
#[derive(Debug)]
pub(super) struct Merge {
    pub(super) key: Vec<u8>,
    pub(super) operand: Vec<u8>,
    pub(super) done: oneshot::Sender<Result<(), StorageError>>,
}

impl Merge {
    fn bytes(&self) -> usize {
        self.key.len() + self.operand.len()
    }
}

/// Starts the writer thread for `db`. It stops when every sender is gone.
///
/// # Errors
/// The OS error when the thread cannot be spawned.
pub(super) fn spawn(
    db: Arc<Db>,
) -> std::io::Result<(mpsc::Sender<Merge>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let thread = std::thread::Builder::new()
        .name("strata-writer".into())
        .spawn(move || run(&db, rx))?;
    Ok((tx, thread))
}

fn run(db: &Db, mut rx: mpsc::Receiver<Merge>) {
    let mut carried: Option<Merge> = None;
    let mut last_report: Option<std::time::Instant> = None;
    let mut failed_writes = 0;
    loop {
        let Some(first) = carried.take().or_else(|| rx.blocking_recv()) else {
            return;
        };
        let mut bytes = first.bytes();
        let mut batch = WriteBatch::new();
        batch.merge(&first.key, &first.operand);
        let mut waiters = vec![first.done];
        while bytes < MAX_BATCH_BYTES {
            let Ok(next) = rx.try_recv() else { break };
            if bytes + next.bytes() > MAX_BATCH_BYTES {
                // Too big to join: it leads the next batch.
                carried = Some(next);
                break;
            }
            bytes += next.bytes();
            batch.merge(&next.key, &next.operand);
            waiters.push(next.done);
        }
        let result = db.write(batch);
        match result {
            Ok(()) => {
                for done in waiters {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) => {
                // A store that failed refuses every later batch the same
                // way (a full disk): one line per interval, not per batch.
                failed_writes += waiters.len();
                if last_report.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                    tracing::error!(
                        error = %e,
                        writes = failed_writes,
                        "write batches failed (repeats are summed into one line per 10 s)"
                    );
                    last_report = Some(std::time::Instant::now());
                    failed_writes = 0;
                }
                // Every write of the batch failed with the same, typed
                // error (engine errors are cloneable).
                for done in waiters {
                    let _ = done.send(Err(StorageError::Engine(e.clone())));
                }
            }
        }
    }
}
