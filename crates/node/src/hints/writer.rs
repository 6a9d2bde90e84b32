//! The hint writer thread: appends everything queued, fsyncs each touched
//! segment once, then answers every caller.
//!
//! Three steps per batch, so the state mutex is never held across IO:
//! 1. under the lock, check the bounds and account each append to its
//!    target's active segment (starting a new one when there is none or it
//!    is full), marking the segments it touches as being written;
//! 2. without the lock, create new segment files, append, fsync;
//! 3. under the lock, clear the marks; a segment whose write or fsync
//!    failed is sealed, so nothing is ever appended after a failure.
//!
//! Open files belong to this thread alone (a sealed segment's file is
//! closed after its last write).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use strata_cluster::NodeId;
use tokio::sync::mpsc;

use super::{Append, HintError, HintLimits, SEGMENT_BYTES, Segment, State, TargetHints};
use super::{lock, publish, segment};
use crate::metrics::HintMetrics;

/// Appends taken from the queue in one batch at most.
const BATCH: usize = 1024;

pub(super) fn run(
    dir: &Path,
    limits: HintLimits,
    state: &Mutex<State>,
    metrics: &HintMetrics,
    mut rx: mpsc::Receiver<Append>,
) {
    let mut files: HashMap<PathBuf, File> = HashMap::new();
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            let Ok(next) = rx.try_recv() else { break };
            batch.push(next);
        }

        // 1. Bookkeeping, under the lock.
        let placed: Vec<Result<PathBuf, HintError>> = {
            let mut state = lock(state);
            batch
                .iter()
                .map(|append| place(dir, limits, &mut state, append))
                .collect()
        };

        // 2. IO, without it.
        let mut failed: HashMap<PathBuf, String> = HashMap::new();
        let mut touched: Vec<PathBuf> = Vec::new();
        for (append, path) in batch.iter().zip(&placed) {
            let Ok(path) = path else { continue };
            if !touched.contains(path) {
                touched.push(path.clone());
            }
            if failed.contains_key(path) {
                continue;
            }
            if let Err(e) = write(dir, &append.target, path, &append.record, &mut files) {
                failed.insert(path.clone(), e);
            }
        }
        for path in &touched {
            if failed.contains_key(path) {
                continue;
            }
            if let Some(Err(e)) = files.get(path).map(File::sync_data) {
                failed.insert(path.clone(), format!("fsync: {e}"));
            }
        }

        // 3. Done: clear the marks, seal what failed, close what is sealed.
        {
            let mut state = lock(state);
            for hints in state.targets.values_mut() {
                finish_writes(hints, &touched, &failed, |path| files.contains_key(path));
            }
            let active: Vec<&PathBuf> = state
                .targets
                .values()
                .filter_map(|t| t.active.as_ref().map(|s| &s.path))
                .collect();
            files.retain(|path, _| active.contains(&path));
            publish(metrics, &state);
        }

        for (append, placed) in batch.into_iter().zip(placed) {
            let outcome = placed.and_then(|path| match failed.get(&path) {
                Some(e) => Err(HintError::Io(format!("{}: {e}", path.display()))),
                None => Ok(()),
            });
            match &outcome {
                Ok(()) => {
                    metrics.stored.inc();
                }
                Err(e) => {
                    // A full store refuses every hint until it drains: log
                    // the 1st, 2nd, 4th, 8th... drop, the metric has them all.
                    let dropped = metrics.dropped.inc() + 1;
                    if dropped.is_power_of_two() {
                        tracing::warn!(target = %append.target, error = %e, dropped,
                            "hint not stored; anti-entropy will repair what it held");
                    }
                }
            }
            let _ = append.done.send(outcome);
        }
    }
}

/// Accounts `append` to its target's active segment (a new one when there
/// is none or it is full) and marks that segment as being written.
fn place(
    dir: &Path,
    limits: HintLimits,
    state: &mut State,
    append: &Append,
) -> Result<PathBuf, HintError> {
    let size = append.record.len() as u64;
    let (_, total) = state.totals();
    let held = state
        .targets
        .get(&append.target)
        .map_or(0, TargetHints::bytes);
    if held + size > limits.per_target_bytes || total + size > limits.total_bytes {
        return Err(HintError::Full {
            target: append.target.clone(),
            held,
            total,
            per_target: limits.per_target_bytes,
            limit: limits.total_bytes,
        });
    }
    let next = state.next_segment;
    let hints = state.targets.entry(append.target.clone()).or_default();
    if hints
        .active
        .as_ref()
        .is_some_and(|s| s.bytes >= SEGMENT_BYTES)
    {
        let full = hints.active.take().expect("checked");
        hints.sealed.push_back(full);
    }
    let opened = hints.active.is_none();
    let active = hints.active.get_or_insert_with(|| Segment {
        path: dir
            .join(append.target.as_str())
            .join(format!("{next:016x}.hint")),
        bytes: segment::MAGIC.len() as u64,
        records: 0,
        newest_micros: 0,
        writing: false,
    });
    active.writing = true;
    active.bytes += size;
    active.records += 1;
    active.newest_micros = active.newest_micros.max(append.stored_at_micros);
    let path = active.path.clone();
    if opened {
        state.next_segment = next + 1;
    }
    Ok(path)
}

/// Appends `record` to the segment at `path`, creating the file (and making
/// its directory entries durable) on first use.
fn write(
    dir: &Path,
    target: &NodeId,
    path: &Path,
    record: &[u8],
    files: &mut HashMap<PathBuf, File>,
) -> Result<(), String> {
    let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    if !files.contains_key(path) {
        let target_dir = dir.join(target.as_str());
        std::fs::create_dir_all(&target_dir).map_err(|e| io(&target_dir, e))?;
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        file.write_all(segment::MAGIC).map_err(|e| io(path, e))?;
        // The new file's directory entries must survive a crash too.
        for d in [target_dir.as_path(), dir] {
            File::open(d)
                .and_then(|d| d.sync_all())
                .map_err(|e| io(d, e))?;
        }
        files.insert(path.to_owned(), file);
    }
    let file = files.get_mut(path).expect("opened above");
    file.write_all(record).map_err(|e| io(path, e))
}

/// Clears the write marks of `touched` segments of one target; a segment
/// that `failed` is sealed (its file may end in a torn record), or forgotten
/// when its file could not even be created.
fn finish_writes(
    hints: &mut TargetHints,
    touched: &[PathBuf],
    failed: &HashMap<PathBuf, String>,
    created: impl Fn(&Path) -> bool,
) {
    for segment in hints.sealed.iter_mut().chain(hints.active.as_mut()) {
        if touched.contains(&segment.path) {
            segment.writing = false;
        }
    }
    if hints
        .active
        .as_ref()
        .is_some_and(|s| failed.contains_key(&s.path))
    {
        let broken = hints.active.take().expect("checked");
        if created(&broken.path) {
            hints.sealed.push_back(broken);
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    fn append(target: &NodeId) -> Append {
        Append {
            target: target.clone(),
            record: vec![1; 10],
            stored_at_micros: 1,
            done: oneshot::channel().0,
        }
    }

    #[test]
    fn a_segment_being_written_is_not_handed_to_replay_until_the_write_is_done() {
        let dir = Path::new("/hints");
        let target = NodeId::new("node-1").expect("id");
        let mut state = State::default();
        let path = place(dir, HintLimits::default(), &mut state, &append(&target)).expect("placed");
        // Replay seals while the writer appends outside the lock.
        assert!(state.seal(&target).is_empty(), "in flight: not handed out");
        let hints = state.targets.get_mut(&target).expect("target");
        finish_writes(hints, std::slice::from_ref(&path), &HashMap::new(), |_| {
            true
        });
        let sealed = state.seal(&target);
        assert_eq!(sealed.len(), 1);
        assert_eq!((sealed[0].path.clone(), sealed[0].records), (path, 1));
        // The next append starts a new segment: the sealed one is final.
        let next = place(dir, HintLimits::default(), &mut state, &append(&target)).expect("placed");
        assert_ne!(next, sealed[0].path);
    }

    #[test]
    fn a_failed_segment_is_sealed_or_forgotten_when_it_was_never_created() {
        let dir = Path::new("/hints");
        let target = NodeId::new("node-1").expect("id");
        for created in [true, false] {
            let mut state = State::default();
            let path =
                place(dir, HintLimits::default(), &mut state, &append(&target)).expect("placed");
            let failed = HashMap::from([(path.clone(), "disk full".to_owned())]);
            let hints = state.targets.get_mut(&target).expect("target");
            finish_writes(hints, std::slice::from_ref(&path), &failed, |_| created);
            assert!(hints.active.is_none(), "never appended to again");
            assert_eq!(hints.sealed.len(), usize::from(created));
        }
    }
}
