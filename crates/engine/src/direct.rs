//! Writes that bypass the page cache (`O_DIRECT`), for tables the engine
//! writes in bulk and nobody reads soon: the device takes the bytes straight
//! from our buffer, so the kernel neither copies them into page-cache pages
//! (which, on a fresh page, costs as much as the write itself) nor evicts
//! the pages foreground reads use.
//!
//! `O_DIRECT` wants the buffer's address, the length and the file offset
//! aligned to the device's logical block size; [`ALIGN`] (4 KiB) covers
//! every common device. [`Chunks`] gathers bytes into an aligned buffer and
//! hands out whole chunks; the caller writes each at an aligned offset and
//! writes the last, partial one through an ordinary descriptor.

use std::fs::File;
use std::path::Path;

/// Alignment of buffers, lengths and offsets for `O_DIRECT`.
pub(crate) const ALIGN: usize = 4096;

/// Opens `path` (which exists) for writing with `O_DIRECT`; `None` where
/// the file system or platform does not support it (tmpfs, say), and the
/// caller writes through the page cache instead.
pub(crate) fn open(path: &Path) -> Option<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// An aligned buffer of `chunk` bytes, filled front to back.
#[derive(Debug)]
pub(crate) struct Chunks {
    /// `chunk + ALIGN` bytes: the aligned window starts at `start`.
    buf: Vec<u8>,
    start: usize,
    chunk: usize,
    len: usize,
}

impl Chunks {
    /// A buffer for chunks of `chunk` bytes, rounded up to [`ALIGN`].
    pub(crate) fn new(chunk: usize) -> Self {
        let chunk = chunk.max(1).div_ceil(ALIGN) * ALIGN;
        let buf = vec![0; chunk + ALIGN];
        // The window moves with the allocation, never past its end: the
        // offset to the next aligned address is below ALIGN.
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        Self {
            buf,
            start,
            chunk,
            len: 0,
        }
    }

    /// Copies as much of `bytes` as fits; returns how much that was.
    pub(crate) fn fill(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.chunk - self.len);
        let at = self.start + self.len;
        self.buf[at..at + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        n
    }

    /// Whether a whole chunk is gathered.
    pub(crate) fn is_full(&self) -> bool {
        self.len == self.chunk
    }

    /// The bytes gathered, starting at an aligned address.
    pub(crate) fn filled(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }

    /// Empties the buffer.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_aligned_whole_and_keep_every_byte_in_order() {
        let mut chunks = Chunks::new(5000);
        assert_eq!(chunks.chunk, 2 * ALIGN, "rounded up to the alignment");
        let input: Vec<u8> = (0..20_000u32).map(|i| (i % 251).to_le_bytes()[0]).collect();
        let mut out = Vec::new();
        let mut rest = input.as_slice();
        while !rest.is_empty() {
            let n = chunks.fill(&rest[..rest.len().min(777)]);
            rest = &rest[n..];
            if chunks.is_full() {
                let chunk = chunks.filled();
                assert_eq!(chunk.as_ptr() as usize % ALIGN, 0, "aligned address");
                assert_eq!(chunk.len(), 2 * ALIGN);
                out.extend_from_slice(chunk);
                chunks.clear();
            }
        }
        out.extend_from_slice(chunks.filled());
        assert_eq!(out, input);
    }
}
