//! Append-only files, with a fault-injection mode for power-loss tests.
//!
//! Every file the engine writes (WAL, MANIFEST, tables) is append-only and
//! becomes durable only at an explicit sync. [`AppendFile`] is that shape.
//! With [`simulate_power_loss`] enabled, bytes are held in process memory
//! until the sync and only then written and fsynced, so killing the process
//! loses exactly the unsynced bytes a power cut would lose.

use std::io::Write as _;
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

#[derive(Debug)]
pub(crate) struct AppendFile {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    held: Vec<u8>,
}

impl AppendFile {
    /// Creates `path`, which must not exist.
    pub(crate) fn create(path: &Path, buffer: usize) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(path)
            .map_err(Error::io(path))?;
        Ok(Self {
            file: std::io::BufWriter::with_capacity(buffer, file),
            path: path.to_owned(),
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
        self.file.write_all(bytes).map_err(Error::io(&self.path))
    }

    /// Pushes buffered bytes to the OS without syncing.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if HOLD_UNSYNCED.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.file.flush().map_err(Error::io(&self.path))
    }

    /// Makes every byte written so far durable (data, not metadata, unless
    /// `metadata`).
    pub(crate) fn sync(&mut self, metadata: bool) -> Result<()> {
        let io = Error::io(&self.path);
        if !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            self.file.write_all(&held).map_err(Error::io(&self.path))?;
        }
        self.file.flush().map_err(Error::io(&self.path))?;
        let file = self.file.get_ref();
        if metadata {
            file.sync_all()
        } else {
            file.sync_data()
        }
        .map_err(io)
    }

    /// A second handle on the file, for syncing from another thread.
    pub(crate) fn try_clone_file(&self) -> Result<std::fs::File> {
        self.file
            .get_ref()
            .try_clone()
            .map_err(Error::io(&self.path))
    }
}
