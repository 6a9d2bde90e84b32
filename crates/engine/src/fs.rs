//! Append-only files, with a fault-injection mode for power-loss tests.
//!
//! Every file the engine writes (WAL, MANIFEST, tables) is append-only and
//! becomes durable only at an explicit sync. [`AppendFile`] is that shape.
//! With [`simulate_power_loss`] enabled, bytes are held in process memory
//! until the sync and only then written and fsynced, so killing the process
//! loses exactly the unsynced bytes a power cut would lose.

use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Error, Result};

static HOLD_UNSYNCED: AtomicBool = AtomicBool::new(false);

/// Testing aid: from now on, this process keeps every write in memory until
/// it is fsynced. Killing the process then behaves like a power cut for the
/// engine's files. Costs memory and speed; never enable it in production.
pub fn simulate_power_loss(enabled: bool) {
    HOLD_UNSYNCED.store(enabled, Ordering::SeqCst);
}

/// Whether [`simulate_power_loss`] is on.
pub(crate) fn holding_unsynced() -> bool {
    HOLD_UNSYNCED.load(Ordering::Relaxed)
}

/// A file written front to back with positional writes, optionally
/// preallocated: when the size does not change, `fdatasync` need not write
/// file metadata, which roughly halves the cost of a WAL sync.
#[derive(Debug)]
pub(crate) struct AppendFile {
    file: std::fs::File,
    path: PathBuf,
    /// Next write offset.
    offset: u64,
    buf: Vec<u8>,
    capacity: usize,
    held: Vec<u8>,
}

impl AppendFile {
    /// Creates `path`, which must not exist, buffering up to `capacity`
    /// bytes (0: every write goes to the OS) and reserving `preallocate`
    /// bytes (0: none). Readers treat a zero-filled tail as the end.
    pub(crate) fn create(path: &Path, capacity: usize, preallocate: u64) -> Result<Self> {
        let io = Error::io(path);
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(path)
            .map_err(Error::io(path))?;
        if preallocate > 0 {
            file.set_len(preallocate)
                .and_then(|()| file.sync_all())
                .map_err(io)?;
        }
        Ok(Self {
            file,
            path: path.to_owned(),
            offset: 0,
            buf: Vec::with_capacity(capacity),
            capacity,
            held: Vec::new(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        if HOLD_UNSYNCED.load(Ordering::Relaxed) {
            self.held.extend_from_slice(bytes);
            return Ok(());
        }
        if self.capacity == 0 {
            return self.write_at(bytes);
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= self.capacity {
            self.flush()?;
        }
        Ok(())
    }

    fn write_at(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all_at(bytes, self.offset)
            .map_err(Error::io(&self.path))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Pushes buffered bytes to the OS without syncing.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let written = self.write_at(&buf);
        self.buf = buf;
        self.buf.clear();
        written
    }

    /// Makes every byte written so far durable (data only, or data and
    /// metadata).
    pub(crate) fn sync(&mut self, metadata: bool) -> Result<()> {
        if !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            self.flush()?;
            self.write_at(&held)?;
        }
        self.flush()?;
        let io = Error::io(&self.path);
        if metadata {
            self.file.sync_all()
        } else {
            self.file.sync_data()
        }
        .map_err(io)
    }

    /// A second handle on the file, for syncing from another thread.
    pub(crate) fn try_clone_file(&self) -> Result<std::fs::File> {
        self.file.try_clone().map_err(Error::io(&self.path))
    }
}
