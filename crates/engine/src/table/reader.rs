//! Reads one SSTable: verifies the footer, loads the index and bloom filter,
//! and reads data blocks through the block cache.

use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::block::{Block, BlockIter};
use super::bloom::Bloom;
use super::format::{
    FOOTER_LEN, FORMAT_VERSION, Footer, FooterError, Handle, LZ4, MAX_BLOCK_LEN, NO_COMPRESSION,
    TRAILER_LEN, block_checksum, checksum_ok,
};
use crate::cache::BlockCache;
use crate::iter::InternalIterator;
use crate::{Error, Result};

#[derive(Debug)]
pub(crate) struct Table {
    file: std::fs::File,
    path: PathBuf,
    number: u64,
    index: Arc<Block>,
    bloom: Bloom,
    cache: Arc<BlockCache>,
}

impl Table {
    pub(crate) fn open(path: &Path, number: u64, cache: Arc<BlockCache>) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(Error::io(path))?;
        let size = file.metadata().map_err(Error::io(path))?.len();
        let footer_at = size
            .checked_sub(FOOTER_LEN as u64)
            .ok_or_else(|| Error::corruption(path, 0, "file shorter than a footer"))?;
        let mut footer = [0u8; FOOTER_LEN];
        file.read_exact_at(&mut footer, footer_at)
            .map_err(Error::io(path))?;
        let footer = Footer::decode(&footer).map_err(|e| match e {
            FooterError::BadMagic => {
                Error::corruption(path, footer_at, "bad magic number: not a Strata table")
            }
            FooterError::Checksum => Error::corruption(path, footer_at, "footer checksum mismatch"),
            FooterError::Version(found) => Error::UnsupportedFormat {
                path: path.to_owned(),
                found,
                supported: FORMAT_VERSION,
            },
        })?;
        for handle in [footer.index, footer.bloom] {
            if handle.offset.saturating_add(handle.len) > footer_at {
                return Err(Error::corruption(
                    path,
                    footer_at,
                    "footer points past the end",
                ));
            }
        }
        let index = Arc::new(Block::new(
            read_block(&file, path, footer.index)?,
            Arc::new((path.to_owned(), footer.index.offset)),
        )?);
        let bloom = Bloom::decode(read_block(&file, path, footer.bloom)?).ok_or_else(|| {
            Error::corruption(path, footer.bloom.offset, "malformed bloom filter")
        })?;
        Ok(Self {
            file,
            path: path.to_owned(),
            number,
            index,
            bloom,
            cache,
        })
    }

    fn data_block(&self, handle: Handle) -> Result<Arc<Block>> {
        let cache_key = (self.number, handle.offset);
        if let Some(block) = self.cache.get(&cache_key) {
            return Ok(block);
        }
        let origin = Arc::new((self.path.clone(), handle.offset));
        let block = Arc::new(Block::new(
            read_block(&self.file, &self.path, handle)?,
            origin,
        )?);
        self.cache.insert(cache_key, Arc::clone(&block));
        Ok(block)
    }

    /// False when the bloom filter rules the user key out.
    /// False means the table holds no entry for the user key with this
    /// hash ([`super::bloom::hash`], computed once per lookup).
    pub(crate) fn may_contain(&self, user_key_hash: u64) -> bool {
        self.bloom.may_contain(user_key_hash)
    }

    pub(crate) fn iter(self: &Arc<Self>) -> TableIter {
        TableIter {
            table: Arc::clone(self),
            index: BlockIter::new(Arc::clone(&self.index)),
            data: None,
            bulk: None,
        }
    }

    /// An iterator for reading much of the table once (compaction, range
    /// streaming): reads ahead and leaves the block cache as it is.
    pub(crate) fn iter_bulk(self: &Arc<Self>) -> TableIter {
        TableIter {
            bulk: Some(Readahead::default()),
            ..self.iter()
        }
    }

    /// [`iter_bulk`](Self::iter_bulk) when `bulk`, else [`iter`](Self::iter).
    pub(crate) fn iter_for(self: &Arc<Self>, bulk: bool) -> TableIter {
        if bulk { self.iter_bulk() } else { self.iter() }
    }

    /// A data block for a sequential scan: served from the cache when it
    /// is there, else cut from a window read ahead (one read per
    /// `READAHEAD` bytes instead of one per block), and not cached.
    fn bulk_block(&self, handle: Handle, ahead: &mut Readahead) -> Result<Arc<Block>> {
        if let Some(block) = self.cache.get(&(self.number, handle.offset)) {
            return Ok(block);
        }
        let len = stored_len(&self.path, handle)?;
        let window = ahead.offset..ahead.offset + ahead.filled as u64;
        let end = handle.offset + len as u64;
        if !(window.contains(&handle.offset) && end <= window.end) {
            ahead.buf.resize(READAHEAD.max(len), 0);
            ahead.offset = handle.offset;
            ahead.filled = read_up_to(&self.file, &mut ahead.buf, handle.offset)
                .map_err(Error::io(&self.path))?;
            if ahead.filled < len {
                return Err(Error::corruption(
                    &self.path,
                    handle.offset,
                    "block extends past the end of the file",
                ));
            }
        }
        let start = usize::try_from(handle.offset - ahead.offset).expect("within the window");
        let raw = ahead.buf[start..start + len].to_vec();
        let origin = Arc::new((self.path.clone(), handle.offset));
        Ok(Arc::new(Block::new(
            verify_block(raw, &self.path, handle)?,
            origin,
        )?))
    }
}

/// Reads, verifies and decompresses the block at `handle`.
fn read_block(file: &std::fs::File, path: &Path, handle: Handle) -> Result<Vec<u8>> {
    let len = stored_len(path, handle)?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, handle.offset)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Error::corruption(
                path,
                handle.offset,
                "block extends past the end of the file",
            ),
            _ => Error::io(path)(e),
        })?;
    verify_block(buf, path, handle)
}

/// Bytes the block at `handle` takes in the file, trailer included.
fn stored_len(path: &Path, handle: Handle) -> Result<usize> {
    usize::try_from(handle.len)
        .ok()
        .filter(|&len| len <= MAX_BLOCK_LEN)
        .map(|len| len + TRAILER_LEN)
        .ok_or_else(|| Error::corruption(path, handle.offset, "block length out of range"))
}

/// Checks a block as stored (contents and trailer) and decompresses it.
fn verify_block(mut buf: Vec<u8>, path: &Path, handle: Handle) -> Result<Vec<u8>> {
    let corrupt = |reason: &str| Error::corruption(path, handle.offset, reason);
    let len = buf.len() - TRAILER_LEN;
    let kind = buf[len];
    let stored = u32::from_le_bytes(buf[len + 1..].try_into().expect("4 bytes"));
    buf.truncate(len);
    if !checksum_ok(block_checksum(&buf, kind), stored) {
        return Err(corrupt("block checksum mismatch"));
    }
    match kind {
        NO_COMPRESSION => Ok(buf),
        LZ4 => {
            let declared = buf
                .get(..4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize);
            if declared.is_none_or(|d| d > MAX_BLOCK_LEN) {
                return Err(corrupt("compressed block declares an impossible size"));
            }
            lz4_flex::block::decompress_size_prepended(&buf)
                .map_err(|e| corrupt(&format!("lz4: {e}")))
        }
        other => Err(corrupt(&format!("unknown compression type {other}"))),
    }
}

/// Bytes a bulk iterator reads at once.
const READAHEAD: usize = 256 << 10;

/// A bulk iterator's window of the file: `buf[..filled]` holds the bytes
/// from `offset`.
#[derive(Debug, Default)]
struct Readahead {
    offset: u64,
    buf: Vec<u8>,
    filled: usize,
}

/// Reads from `offset` until `buf` is full or the file ends; returns how
/// many bytes were read.
fn read_up_to(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Two-level iterator: the index picks a data block, the block iterator
/// walks it.
#[derive(Debug)]
pub(crate) struct TableIter {
    table: Arc<Table>,
    index: BlockIter,
    data: Option<BlockIter>,
    /// Set for bulk iterators.
    bulk: Option<Readahead>,
}

impl TableIter {
    fn load_block(&mut self) -> Result<()> {
        self.data = None;
        if !self.index.valid() {
            return Ok(());
        }
        let handle = Handle::decode(self.index.value()).ok_or_else(|| {
            Error::corruption(&self.table.path, 0, "malformed block handle in index")
        })?;
        let block = match &mut self.bulk {
            Some(ahead) => self.table.bulk_block(handle, ahead)?,
            None => self.table.data_block(handle)?,
        };
        self.data = Some(BlockIter::new(block));
        Ok(())
    }

    /// Moves to following blocks while the current one is exhausted.
    fn skip_empty_blocks(&mut self) -> Result<()> {
        while self.data.as_ref().is_some_and(|d| !d.valid()) {
            self.index.next()?;
            self.load_block()?;
            if let Some(d) = &mut self.data {
                d.seek_to_first()?;
            }
        }
        Ok(())
    }
}

impl InternalIterator for TableIter {
    fn valid(&self) -> bool {
        self.data.as_ref().is_some_and(BlockIter::valid)
    }

    fn key(&self) -> &[u8] {
        self.data.as_ref().expect("valid iterator").key()
    }

    fn value(&self) -> &[u8] {
        self.data.as_ref().expect("valid iterator").value()
    }

    fn next(&mut self) -> Result<()> {
        if let Some(d) = &mut self.data {
            d.next()?;
        }
        self.skip_empty_blocks()
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        self.index.seek(target)?;
        self.load_block()?;
        if let Some(d) = &mut self.data {
            d.seek(target)?;
        }
        self.skip_empty_blocks()
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.index.seek_to_first()?;
        self.load_block()?;
        if let Some(d) = &mut self.data {
            d.seek_to_first()?;
        }
        self.skip_empty_blocks()
    }
}
