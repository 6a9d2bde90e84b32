//! Writes one SSTable.

use std::path::Path;

use super::block::BlockBuilder;
use super::bloom::{self, Bloom};
use super::format::{Footer, Handle, LZ4, NO_COMPRESSION, block_checksum};
use crate::fs::AppendFile;
use crate::{Result, key};

/// What a finished table holds; recorded in the MANIFEST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableInfo {
    pub(crate) size: u64,
    pub(crate) smallest: Vec<u8>,
    pub(crate) largest: Vec<u8>,
    pub(crate) entries: u64,
}

#[derive(Debug)]
pub(crate) struct TableBuilder {
    file: AppendFile,
    offset: u64,
    data: BlockBuilder,
    index: BlockBuilder,
    key_hashes: Vec<u64>,
    last_user_key: Vec<u8>,
    smallest: Option<Vec<u8>>,
    entries: u64,
    block_bytes: usize,
    compression: bool,
    bloom_bits_per_key: u32,
}

impl TableBuilder {
    /// A builder for a table on `level` (compression applies from level 2),
    /// written past the page cache when `direct` (see
    /// [`Options::direct_io_for_ingest`](crate::Options::direct_io_for_ingest)).
    pub(crate) fn create(
        path: &Path,
        options: &crate::Options,
        level: usize,
        direct: bool,
    ) -> Result<Self> {
        let file = if direct {
            AppendFile::create_direct(path, 1 << 20)?
        } else {
            AppendFile::create(path, 256 << 10, 0)?
        };
        Ok(Self {
            file,
            offset: 0,
            data: BlockBuilder::default(),
            index: BlockBuilder::default(),
            key_hashes: Vec::new(),
            last_user_key: Vec::new(),
            smallest: None,
            entries: 0,
            block_bytes: options.block_bytes,
            compression: options.compression && level >= 2,
            bloom_bits_per_key: options.bloom_bits_per_key,
        })
    }

    /// Adds an entry; keys must arrive in increasing internal order.
    pub(crate) fn add(&mut self, ikey: &[u8], value: &[u8]) -> Result<()> {
        let user_key = key::user_key(ikey);
        if self.entries == 0 || user_key != self.last_user_key.as_slice() {
            self.key_hashes.push(bloom::hash(user_key));
            self.last_user_key.clear();
            self.last_user_key.extend_from_slice(user_key);
        }
        if self.smallest.is_none() {
            self.smallest = Some(ikey.to_vec());
        }
        self.data.add(ikey, value);
        self.entries += 1;
        if self.data.estimated_len() >= self.block_bytes {
            self.flush_data_block()?;
        }
        Ok(())
    }

    pub(crate) fn estimated_size(&self) -> u64 {
        self.offset + self.data.estimated_len() as u64
    }

    fn flush_data_block(&mut self) -> Result<()> {
        if self.data.is_empty() {
            return Ok(());
        }
        let last_key = self.data.last_key().to_vec();
        let block = self.data.finish();
        let handle = self.write_block(&block, self.compression)?;
        let mut value = Vec::with_capacity(16);
        handle.encode(&mut value);
        self.index.add(&last_key, &value);
        Ok(())
    }

    fn write_block(&mut self, raw: &[u8], compress: bool) -> Result<Handle> {
        let compressed = compress.then(|| lz4_flex::block::compress_prepend_size(raw));
        // Keep compression only when it saves at least an eighth.
        let (bytes, kind) = match &compressed {
            Some(c) if c.len() < raw.len() - raw.len() / 8 => (c.as_slice(), LZ4),
            _ => (raw, NO_COMPRESSION),
        };
        let handle = Handle {
            offset: self.offset,
            len: bytes.len() as u64,
        };
        self.file.write_all(bytes)?;
        let mut trailer = [kind, 0, 0, 0, 0];
        trailer[1..].copy_from_slice(&block_checksum(bytes, kind).to_le_bytes());
        self.file.write_all(&trailer)?;
        self.offset += bytes.len() as u64 + trailer.len() as u64;
        Ok(handle)
    }

    /// Writes the bloom filter, index and footer, and fsyncs the file.
    pub(crate) fn finish(mut self) -> Result<TableInfo> {
        let largest = self.data.last_key().to_vec();
        let largest = if largest.is_empty() {
            self.index.last_key().to_vec()
        } else {
            largest
        };
        self.flush_data_block()?;
        let filter = Bloom::build(&self.key_hashes, self.bloom_bits_per_key);
        let bloom = self.write_block(&filter, false)?;
        let index_block = self.index.finish();
        let index = self.write_block(&index_block, false)?;
        let footer = Footer { index, bloom }.encode();
        self.file.write_all(&footer)?;
        self.offset += footer.len() as u64;
        self.file.sync(true)?;
        Ok(TableInfo {
            size: self.offset,
            smallest: self.smallest.unwrap_or_default(),
            largest,
            entries: self.entries,
        })
    }
}
