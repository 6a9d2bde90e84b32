//! Background threads: one flushes immutable memtables to level 0 (and, in
//! periodic durability mode, syncs the WAL); one runs compactions. Separate
//! threads so that a long compaction never blocks a flush.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use super::Inner;
use crate::compaction::{self, Context};
use crate::version::{FileKind, PickerConfig, VersionEdit, pick_compaction, pick_manual};
use crate::{Durability, Error, Result};

pub(crate) fn start(inner: &Arc<Inner>) -> Result<Vec<JoinHandle<()>>> {
    let spawn = |name: &str, body: fn(&Inner)| {
        let worker = Arc::clone(inner);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || body(&worker))
            .map_err(Error::io(&inner.dir))
    };
    Ok(vec![
        spawn("strata-flush", flush_loop)?,
        spawn("strata-compact", compaction_loop)?,
    ])
}

fn flush_loop(inner: &Inner) {
    let sync_every = match inner.options.durability {
        Durability::Periodic(interval) => interval,
        Durability::SyncEachGroup | Durability::None => Duration::from_secs(3600),
    };
    loop {
        {
            let mut bg = inner.bg.lock().expect("bg lock");
            while !bg.shutdown && bg.error.is_none() && inner.state().imms.is_empty() {
                let (guard, timeout) = inner.bg_cv.wait_timeout(bg, sync_every).expect("bg lock");
                bg = guard;
                if timeout.timed_out() {
                    break;
                }
            }
            if bg.shutdown || bg.error.is_some() {
                return;
            }
        }
        if let Durability::Periodic(_) = inner.options.durability {
            // A second handle: writers keep going while the fsync runs.
            // Under power-loss simulation the bytes are held by the writer
            // itself, so its own sync (under the lock) must write them.
            let synced = if crate::fs::holding_unsynced() {
                inner.wal.lock().expect("wal lock").writer.sync()
            } else {
                let handle = inner.wal.lock().expect("wal lock").writer.sync_handle();
                handle.and_then(|f| f.sync_data().map_err(Error::io(&inner.dir)))
            };
            if let Err(e) = synced {
                inner.set_background_error(&e);
            }
        }
        if !inner.state().imms.is_empty() {
            if let Err(e) = flush_oldest(inner) {
                inner.set_background_error(&e);
            }
            let _bg = inner.bg.lock().expect("bg lock");
            inner.bg_cv.notify_all();
        }
    }
}

/// Writes the oldest immutable memtable to a level-0 table and installs it.
fn flush_oldest(inner: &Inner) -> Result<()> {
    let mem = inner.state().imms.last().cloned().expect("caller checked");
    let mut added = Vec::new();
    if let Some(meta) = super::flush::write_level0(
        &inner.dir,
        &inner.options,
        &inner.next_file,
        &mem,
        inner.oldest_snapshot(),
    )? {
        inner
            .counters
            .flush_bytes
            .fetch_add(meta.size, Ordering::Relaxed);
        added.push((0, Arc::new(meta)));
    }
    let mut versions = inner.versions.lock().expect("versions lock");
    // Logs older than the oldest memtable still unflushed are obsolete.
    let log_number = {
        let state = inner.state.read().expect("state lock");
        let remaining = &state.imms[..state.imms.len() - 1];
        remaining.last().unwrap_or(&state.mem).wal_number()
    };
    let edit = VersionEdit {
        log_number: Some(log_number),
        last_sequence: Some(inner.last_seq.load(Ordering::Acquire)),
        added,
        ..VersionEdit::default()
    };
    let version = versions.log_and_apply(edit)?;
    {
        let mut state = inner.state.write().expect("state lock");
        state.imms.pop();
        state.version = version;
    }
    drop(versions);
    remove_logs_below(inner, log_number);
    Ok(())
}

fn remove_logs_below(inner: &Inner, log_number: u64) {
    let Ok(entries) = std::fs::read_dir(&inner.dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if let Some((FileKind::Wal, n)) = name.to_str().and_then(crate::version::parse_file_name)
            && n < log_number
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn picker_config(inner: &Inner) -> PickerConfig {
    PickerConfig {
        l0_trigger: inner.options.l0_compaction_trigger,
        level_base_bytes: inner.options.level_base_bytes,
        level_multiplier: 10,
    }
}

fn compaction_loop(inner: &Inner) {
    loop {
        let manual = {
            let mut bg = inner.bg.lock().expect("bg lock");
            loop {
                if bg.shutdown || bg.error.is_some() {
                    return;
                }
                if bg.manual.is_some() {
                    break bg.manual.clone();
                }
                let version = inner.state().version;
                if pick_compaction(&version, &picker_config(inner)).is_some() {
                    break None;
                }
                bg = inner.bg_cv.wait(bg).expect("bg lock");
            }
        };
        // Picked and installed under the compaction lock, so an ingest
        // never lands between a task's pick (its inputs and bottommost
        // flag) and its install.
        let compacting = inner.compaction.lock().expect("compaction lock");
        let result = match &manual {
            Some((lo, hi)) => run_manual(inner, lo, hi.as_deref()),
            None => {
                let version = inner.state().version;
                match pick_compaction(&version, &picker_config(inner)) {
                    Some(task) => run_task(inner, &task),
                    None => Ok(()),
                }
            }
        };
        drop(compacting);
        let mut bg = inner.bg.lock().expect("bg lock");
        if let Err(e) = result {
            super::record_failure(&mut bg, &inner.failed, &e);
        }
        if manual.is_some() {
            bg.manual = None;
            bg.manual_done += 1;
        }
        inner.bg_cv.notify_all();
    }
}

fn run_manual(inner: &Inner, lo: &[u8], hi: Option<&[u8]>) -> Result<()> {
    for level in 0..inner.options.num_levels - 1 {
        let version = inner.state().version;
        if let Some(task) = pick_manual(&version, level, lo, hi) {
            run_task(inner, &task)?;
        }
    }
    Ok(())
}

fn run_task(inner: &Inner, task: &crate::version::CompactionTask) -> Result<()> {
    let ctx = Context {
        dir: &inner.dir,
        options: &inner.options,
        next_file: &inner.next_file,
        tables: &inner.tables,
    };
    let outcome = compaction::run(&ctx, task, inner.oldest_snapshot())?;
    let mut versions = inner.versions.lock().expect("versions lock");
    let version = versions.log_and_apply(outcome.edit)?;
    inner.state.write().expect("state lock").version = version;
    drop(versions);
    if !task.is_trivial_move() {
        for f in task.inputs.iter().chain(&task.next_inputs) {
            f.mark_obsolete();
            inner.tables.evict(f.number);
        }
    }
    inner
        .counters
        .compaction_bytes_read
        .fetch_add(outcome.bytes_read, Ordering::Relaxed);
    inner
        .counters
        .compaction_bytes
        .fetch_add(outcome.bytes_written, Ordering::Relaxed);
    Ok(())
}

/// Waits until every immutable memtable has been flushed.
pub(crate) fn wait_for_flushes(inner: &Inner) -> Result<()> {
    let mut bg = inner.bg.lock().expect("bg lock");
    loop {
        if let Some(e) = &bg.error {
            return Err(Error::Background(e.clone()));
        }
        if inner.state().imms.is_empty() {
            return Ok(());
        }
        inner.bg_cv.notify_all();
        bg = inner
            .bg_cv
            .wait_timeout(bg, Duration::from_millis(100))
            .expect("bg lock")
            .0;
    }
}

/// Asks the compaction thread to compact `[start, end]` and waits for it.
pub(crate) fn manual_compaction(
    inner: &Inner,
    start: Option<&[u8]>,
    end: Option<&[u8]>,
) -> Result<()> {
    let lo = start.unwrap_or_default().to_vec();
    let hi = end.map(<[u8]>::to_vec);
    let mut bg = inner.bg.lock().expect("bg lock");
    while bg.manual.is_some() {
        bg = inner.bg_cv.wait(bg).expect("bg lock");
    }
    let ticket = bg.manual_done + 1;
    bg.manual = Some((lo, hi));
    inner.bg_cv.notify_all();
    loop {
        if let Some(e) = &bg.error {
            return Err(Error::Background(e.clone()));
        }
        if bg.manual_done >= ticket {
            return Ok(());
        }
        bg = inner.bg_cv.wait(bg).expect("bg lock");
    }
}
