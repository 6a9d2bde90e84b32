//! Reads one SSTable: verifies the footer, loads the index and bloom filter,
//! and reads data blocks through the block cache.

use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::block::{Block, BlockIter};
use super::bloom::{self, Bloom};
use super::format::{
    FOOTER_LEN, FORMAT_VERSION, Footer, FooterError, Handle, LZ4, MAX_BLOCK_LEN, NO_COMPRESSION,
    TRAILER_LEN, block_checksum,
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
    pub(crate) fn may_contain(&self, user_key: &[u8]) -> bool {
        self.bloom.may_contain(bloom::hash(user_key))
    }

    pub(crate) fn iter(self: &Arc<Self>) -> TableIter {
        TableIter {
            table: Arc::clone(self),
            index: BlockIter::new(Arc::clone(&self.index)),
            data: None,
        }
    }
}

/// Reads, verifies and decompresses the block at `handle`.
fn read_block(file: &std::fs::File, path: &Path, handle: Handle) -> Result<Vec<u8>> {
    let corrupt = |reason: &str| Error::corruption(path, handle.offset, reason);
    let len = usize::try_from(handle.len)
        .ok()
        .filter(|&len| len <= MAX_BLOCK_LEN)
        .ok_or_else(|| corrupt("block length out of range"))?;
    let mut buf = vec![0u8; len + TRAILER_LEN];
    file.read_exact_at(&mut buf, handle.offset)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => corrupt("block extends past the end of the file"),
            _ => Error::io(path)(e),
        })?;
    let kind = buf[len];
    let stored = u32::from_le_bytes(buf[len + 1..].try_into().expect("4 bytes"));
    buf.truncate(len);
    if block_checksum(&buf, kind) != stored {
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

/// Two-level iterator: the index picks a data block, the block iterator
/// walks it.
#[derive(Debug)]
pub(crate) struct TableIter {
    table: Arc<Table>,
    index: BlockIter,
    data: Option<BlockIter>,
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
        self.data = Some(BlockIter::new(self.table.data_block(handle)?));
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
