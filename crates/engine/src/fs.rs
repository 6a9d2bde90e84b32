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
    /// Whole chunks go to the device through an `O_DIRECT` descriptor
    /// ([`AppendFile::create_direct`]); dropped at the first flush or sync,
    /// which writes the partial chunk through `file`.
    direct: Option<Direct>,
}

#[derive(Debug)]
struct Direct {
    file: std::fs::File,
    chunks: crate::direct::Chunks,
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
            direct: None,
        })
    }

    /// Like [`AppendFile::create`] without preallocation, but written past
    /// the page cache in chunks of `chunk` bytes (rounded up to 4 KiB),
    /// where the file system allows `O_DIRECT`; elsewhere like `create`
    /// with a `chunk`-byte buffer. For files written once, front to back,
    /// and synced once at the end (tables).
    pub(crate) fn create_direct(path: &Path, chunk: usize) -> Result<Self> {
        let mut file = Self::create(path, chunk, 0)?;
        if !holding_unsynced() {
            file.direct = crate::direct::open(path).map(|direct| Direct {
                file: direct,
                chunks: crate::direct::Chunks::new(chunk),
            });
        }
        Ok(file)
    }

    /// Whether whole chunks still go past the page cache.
    #[cfg(test)]
    pub(crate) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        if HOLD_UNSYNCED.load(Ordering::Relaxed) {
            self.held.extend_from_slice(bytes);
            return Ok(());
        }
        if self.direct.is_some() {
            return self.write_direct(bytes);
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

    /// Gathers `bytes` into chunks and writes each whole one at the current
    /// (aligned) offset through the `O_DIRECT` descriptor. Should the
    /// device refuse one (an alignment it wants larger, say), that chunk
    /// and everything after it go through the page cache.
    fn write_direct(&mut self, mut bytes: &[u8]) -> Result<()> {
        while let Some(direct) = &mut self.direct {
            let n = direct.chunks.fill(bytes);
            bytes = &bytes[n..];
            if !direct.chunks.is_full() {
                return Ok(());
            }
            match direct
                .file
                .write_all_at(direct.chunks.filled(), self.offset)
            {
                Ok(()) => {
                    self.offset += direct.chunks.filled().len() as u64;
                    direct.chunks.clear();
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
                    // A short or refused direct write: whatever part of the
                    // chunk reached the file is rewritten, the same bytes at
                    // the same offsets.
                    self.end_direct()?;
                }
                Err(e) => return Err(Error::io(&self.path)(e)),
            }
        }
        self.write_all(bytes)
    }

    /// Leaves direct mode: the partial chunk goes through the page cache.
    fn end_direct(&mut self) -> Result<()> {
        if let Some(direct) = self.direct.take() {
            self.write_at(direct.chunks.filled())?;
        }
        Ok(())
    }

    /// Pushes buffered bytes to the OS without syncing.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.end_direct()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_file_holds_every_byte_written_across_chunks_and_the_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("000001.sst");
        let mut file = AppendFile::create_direct(&path, 8192).expect("create");
        // Where the file system takes O_DIRECT, the file must use it.
        assert_eq!(
            file.is_direct(),
            crate::direct::open(&path).is_some(),
            "direct writes whenever the file system allows them"
        );
        let mut expected = Vec::new();
        for (i, len) in [1usize, 4095, 4096, 10_000, 3, 20_000, 777]
            .into_iter()
            .enumerate()
        {
            let bytes: Vec<u8> = (0..len)
                .map(|j| ((i * 31 + j) % 251).to_le_bytes()[0])
                .collect();
            file.write_all(&bytes).expect("write");
            expected.extend_from_slice(&bytes);
        }
        file.sync(true).expect("sync");
        assert!(
            !file.is_direct(),
            "the sync wrote the tail and left direct mode"
        );
        // After the sync the file is an ordinary one: appends still land.
        file.write_all(b"after").expect("write after sync");
        file.sync(true).expect("sync");
        expected.extend_from_slice(b"after");
        assert_eq!(std::fs::read(&path).expect("read"), expected);
    }
}
