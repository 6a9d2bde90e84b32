//! The write path: group commit in the LevelDB style.
//!
//! Writers queue up; the writer at the front is the leader. It makes room
//! (switching to a new memtable and WAL when full, slowing or stalling when
//! flush and compaction fall behind), takes the batches queued behind it,
//! appends them to the WAL as one write with one fsync, inserts them into
//! the memtable, publishes the new sequence number and wakes the group.
//! Concurrent writers therefore share fsyncs, and a write never reads.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::Inner;
use crate::key::Kind;
use crate::memtable::Memtable;
use crate::record::RecordWriter;
use crate::stall::{StallCause, Stop};
use crate::version::{FileKind, file_path};
use crate::{Durability, Error, Result, WriteBatch};

/// Largest single batch. Its WAL record stays far below 4 GiB, and one
/// entry plus a block's worth of neighbours stays below the largest block
/// the table reader accepts (`table::format::MAX_BLOCK_LEN`).
pub(crate) const MAX_BATCH_BYTES: usize = 64 << 20;
/// A group stops growing at this many bytes (bounds leader latency).
const MAX_GROUP_BYTES: usize = 1 << 20;
/// Groups one leader commits back to back before handing over.
const MAX_LEADER_ROUNDS: usize = 4;

#[derive(Debug)]
pub(crate) struct Slot {
    /// `None` asks the leader to switch the memtable (for a flush).
    batch: Mutex<Option<WriteBatch>>,
    force_switch: bool,
    result: Mutex<Option<Result<()>>>,
    /// Waited on with the queue lock: signalled when this writer's group is
    /// done or it reaches the front. One per writer, so a finished group
    /// wakes only its own members and the next leader, not every writer.
    wake: Condvar,
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    slots: VecDeque<Arc<Slot>>,
    /// A leader is committing. Only the front writer may lead, and only
    /// while no one else does: a leader may keep leading for the writers
    /// behind it, who must not elect themselves meanwhile.
    leading: bool,
}

pub(crate) fn write(inner: &Inner, batch: Option<WriteBatch>) -> Result<()> {
    if let Some(b) = &batch {
        if b.is_empty() {
            return Ok(());
        }
        if b.encoded_len() > MAX_BATCH_BYTES {
            return Err(Error::WriteTooLarge {
                size: b.encoded_len(),
                limit: MAX_BATCH_BYTES,
            });
        }
    }
    let slot = Arc::new(Slot {
        force_switch: batch.is_none(),
        batch: Mutex::new(batch),
        result: Mutex::new(None),
        wake: Condvar::new(),
    });
    let mut queue = inner.writers.lock().expect("writers lock");
    queue.slots.push_back(Arc::clone(&slot));
    loop {
        if let Some(result) = slot.result.lock().expect("slot lock").take() {
            return result;
        }
        if !queue.leading
            && queue
                .slots
                .front()
                .is_some_and(|front| Arc::ptr_eq(front, &slot))
        {
            queue.leading = true;
            break;
        }
        queue = slot.wake.wait(queue).expect("writers lock");
    }
    drop(queue);
    // Leader. Keep leading while writers are queued, for a few rounds:
    // handing over to the next writer would cost a wakeup (tens of
    // microseconds) before its fsync could start.
    let mut front = Arc::clone(&slot);
    for round in 1.. {
        let group = lead_group(inner, &front);
        let mut queue = inner.writers.lock().expect("writers lock");
        let next = queue.slots.front().cloned();
        let keep_leading = round < MAX_LEADER_ROUNDS && next.is_some();
        if !keep_leading {
            queue.leading = false;
        }
        drop(queue);
        if let (false, Some(next)) = (keep_leading, &next) {
            next.wake.notify_one();
        }
        // Outside the queue lock, so that writers keep queueing meanwhile.
        // The leader is not waiting: a notify costs a futex call even with
        // no waiter, once per write for a lone writer.
        for member in group.iter().filter(|m| !Arc::ptr_eq(m, &slot)) {
            member.wake.notify_one();
        }
        match next {
            Some(next) if keep_leading => front = next,
            _ => break,
        }
    }
    let own = slot.result.lock().expect("slot lock").take();
    own.expect("the leader's first group includes its own write")
}

/// Leads one group starting at `front`: makes room, commits the batches
/// queued from `front` on, pops them and records every member's result.
/// Returns the members to wake.
fn lead_group(inner: &Inner, front: &Arc<Slot>) -> Vec<Arc<Slot>> {
    // Making room may wait for background work: the queue is not locked,
    // so other writers can line up meanwhile.
    let room = make_room(inner, front.force_switch);
    let queue = inner.writers.lock().expect("writers lock");
    let group: Vec<Arc<Slot>> = if room.is_err() || front.force_switch {
        vec![Arc::clone(front)]
    } else {
        let mut bytes = 0;
        queue
            .slots
            .iter()
            .take_while(|s| {
                let batch = s.batch.lock().expect("slot lock");
                let len = batch.as_ref().map_or(0, WriteBatch::encoded_len);
                let fits = !s.force_switch && (bytes == 0 || bytes + len <= MAX_GROUP_BYTES);
                bytes += len;
                fits
            })
            .cloned()
            .collect()
    };
    drop(queue);

    let result = match room {
        Err(e) => Err(e),
        Ok(()) if front.force_switch => Ok(()),
        Ok(()) => {
            let batches: Vec<WriteBatch> = group
                .iter()
                .map(|s| {
                    s.batch
                        .lock()
                        .expect("slot lock")
                        .take()
                        .expect("unwritten batch")
                })
                .collect();
            commit(inner, &batches)
        }
    };

    // Members after the first get a copy of the error's text (errors do not
    // clone); all results are set under the lock, before anyone wakes.
    let text = result.as_ref().err().map(ToString::to_string);
    let mut first_error = result.err();
    let mut queue = inner.writers.lock().expect("writers lock");
    for member in &group {
        let popped = queue.slots.pop_front().expect("group is at the front");
        debug_assert!(Arc::ptr_eq(&popped, member));
        let outcome = match (first_error.take(), &text) {
            (Some(e), _) => Err(e),
            (None, Some(text)) => Err(Error::Background(text.clone())),
            (None, None) => Ok(()),
        };
        *member.result.lock().expect("slot lock") = Some(outcome);
    }
    drop(queue);
    group
}

/// Appends the group to the WAL (one write, one fsync), then inserts it into
/// the memtable and publishes its sequence numbers.
fn commit(inner: &Inner, batches: &[WriteBatch]) -> Result<()> {
    let first_seq = inner.last_seq.load(Ordering::Acquire) + 1;
    let mut wal = inner.wal.lock().expect("wal lock");
    let wal = &mut *wal;
    wal.scratch.clear();
    let mut seq = first_seq;
    for batch in batches {
        RecordWriter::frame_with(&mut wal.scratch, |out| batch.encode(seq, out));
        seq += batch.len() as u64;
    }
    let written =
        wal.writer
            .write_framed(&wal.scratch)
            .and_then(|()| match inner.options.durability {
                Durability::SyncEachGroup => wal.writer.sync(),
                Durability::Periodic(_) | Durability::None => Ok(()),
            });
    if let Err(e) = written {
        // The log's tail is now unknown: refuse further writes rather than
        // risk acknowledging a write that recovery would not find.
        inner.set_background_error(&e);
        return Err(e);
    }
    // Still under the WAL lock, which only the leader takes on this path:
    // the memtable cannot be switched between the append and the insert.
    let mem = Arc::clone(&inner.state.read().expect("state lock").mem);
    let mut user_bytes = 0;
    let mut offset = 0;
    for batch in batches {
        let start = offset + crate::record::HEADER_LEN;
        offset = start + batch.encoded_len();
        WriteBatch::decode_each(&wal.scratch[start..offset], |(seq, kind, key, value)| {
            // A fold that fails (IO, corruption) stores the operand as
            // written, which is always correct; the error surfaces on the
            // next read of the key.
            let hash = crate::table::bloom::hash(key);
            let folded = match kind {
                Kind::Merge => fold_long_chain(inner, &mem, seq, key, hash, value),
                Kind::Put | Kind::Delete => Ok(None),
            };
            match folded {
                Ok(Some(merged)) => mem.insert(seq, Kind::Put, key, hash, &merged),
                Ok(None) | Err(_) => mem.insert(seq, kind, key, hash, value),
            }
        })
        .expect("own encoding decodes");
        user_bytes += batch.user_bytes() as u64;
    }
    inner.last_seq.store(seq - 1, Ordering::Release);
    inner
        .counters
        .user_bytes
        .fetch_add(user_bytes, Ordering::Relaxed);
    Ok(())
}

/// For a merge operand that would extend a long chain of operands for its
/// key, the folded value to store as a put instead (see
/// `Options::max_successive_merges`). Runs on the group-commit leader,
/// which is the only writer, so the memtable cannot change meanwhile; the
/// WAL keeps the operand, and replaying it gives the same value. Kept out
/// of line: puts and deletes, the common case, never come here.
#[inline(never)]
fn fold_long_chain(
    inner: &Inner,
    mem: &Memtable,
    seq: crate::key::SeqNo,
    key: &[u8],
    key_hash: u64,
    operand: &[u8],
) -> Result<Option<Vec<u8>>> {
    let limit = inner.options.max_successive_merges;
    if limit == 0
        || inner.options.merge_operator.is_none()
        || mem.merge_chain(key, key_hash, limit) < limit
    {
        return Ok(None);
    }
    super::read::get_and_merge(inner, key, seq - 1, operand).map(Some)
}

/// Ensures the memtable can take a write: delays writes once when level 0 is
/// large, switches to a fresh memtable when the current one is full (or
/// `force`), and waits while too many memtables or level-0 files are
/// pending. Waiting bounds memory instead of failing writes.
fn make_room(inner: &Inner, force: bool) -> Result<()> {
    let options = &inner.options;
    let mut allow_delay = !force;
    // Recorded when the cause changes and when this returns.
    let mut stop = Stop::new(&inner.counters.stalls);
    loop {
        if let Some(e) = inner.background_error() {
            return Err(e);
        }
        let (l0, mem_bytes, mem_empty, imms) = {
            let s = inner.state.read().expect("state lock");
            (
                s.version.levels[0].len(),
                s.mem.approximate_bytes(),
                s.mem.is_empty(),
                s.imms.len(),
            )
        };
        if allow_delay && l0 >= options.l0_slowdown_trigger {
            let started = Instant::now();
            std::thread::sleep(Duration::from_millis(1));
            inner
                .counters
                .stalls
                .record(StallCause::Level0Slowdown, started);
            allow_delay = false;
            continue;
        }
        if force && mem_empty {
            return Ok(());
        }
        if !force && mem_bytes < options.memtable_bytes {
            return Ok(());
        }
        if imms >= options.max_immutable_memtables || l0 >= options.l0_stop_trigger {
            stop.waiting(if imms >= options.max_immutable_memtables {
                StallCause::TooManyMemtables
            } else {
                StallCause::TooManyLevel0Files
            });
            let bg = inner.bg.lock().expect("bg lock");
            if bg.error.is_none() && !bg.shutdown {
                let _ = inner.bg_cv.wait_timeout(bg, Duration::from_millis(50));
            } else if bg.shutdown {
                return Err(Error::Background("database is closing".into()));
            }
            continue;
        }
        return switch_memtable(inner);
    }
}

/// Creates a WAL. A log that is synced is preallocated (and the
/// preallocation synced) for about one memtable's worth of writes, so each
/// `fdatasync` writes data only, no file-size metadata. With durability
/// `None` nothing is ever synced: the log is buffered in the process and
/// grows as it is written, and creating it costs no device flush on the
/// write path.
pub(crate) fn create_wal(path: &std::path::Path, options: &crate::Options) -> Result<RecordWriter> {
    match options.durability {
        Durability::None => RecordWriter::create(path, 64 << 10, 0),
        Durability::SyncEachGroup | Durability::Periodic(_) => {
            RecordWriter::create(path, 0, options.memtable_bytes as u64 + (1 << 20))
        }
    }
}

fn switch_memtable(inner: &Inner) -> Result<()> {
    let number = inner.next_file.fetch_add(1, Ordering::SeqCst);
    let path = file_path(&inner.dir, FileKind::Wal, number);
    let fresh = create_wal(&path, &inner.options)?;
    // Writes acknowledged from this log on must survive a power cut, so
    // its directory entry must be durable before the first of them. With
    // durability `None` no write promises that, and a directory sync
    // waits for every write the device holds (over 100 ms behind a
    // compaction's output, measured in dbbench's sustained run).
    if inner.options.durability != Durability::None {
        crate::version::sync_dir(&inner.dir)?;
    }
    {
        let mut wal = inner.wal.lock().expect("wal lock");
        match inner.options.durability {
            Durability::None => wal.writer.flush()?,
            Durability::SyncEachGroup | Durability::Periodic(_) => wal.writer.sync()?,
        }
        wal.writer = fresh;
    }
    {
        let mut state = inner.state.write().expect("state lock");
        let old = std::mem::replace(
            &mut state.mem,
            Arc::new(Memtable::new(number, inner.options.memtable_bytes)),
        );
        state.imms.insert(0, old);
    }
    let _bg = inner.bg.lock().expect("bg lock");
    inner.bg_cv.notify_all();
    Ok(())
}
