//! Data and index blocks: prefix-compressed keys with restart points.
//!
//! Entry: `shared (varint) | unshared (varint) | value len (varint) |
//! key suffix | value`. Every `RESTART_INTERVAL` entries the key is stored
//! whole (shared = 0) and its offset recorded; the block ends with the
//! restart offsets (u32 LE each) and their count (u32 LE). A seek binary
//! searches the restart points, then scans at most one interval.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::coding::{Reader, put_varint};
use crate::iter::InternalIterator;
use crate::key;
use crate::{Error, Result};

const RESTART_INTERVAL: usize = 16;

#[derive(Debug, Default)]
pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    counter: usize,
    last_key: Vec<u8>,
}

impl BlockBuilder {
    /// Adds an entry; keys must arrive in increasing internal order.
    pub(crate) fn add(&mut self, ikey: &[u8], value: &[u8]) {
        let shared = if self.counter.is_multiple_of(RESTART_INTERVAL) {
            self.restarts
                .push(u32::try_from(self.buf.len()).expect("blocks are far below 4 GiB"));
            0
        } else {
            self.last_key
                .iter()
                .zip(ikey)
                .take_while(|(a, b)| a == b)
                .count()
        };
        put_varint(&mut self.buf, shared as u64);
        put_varint(&mut self.buf, (ikey.len() - shared) as u64);
        put_varint(&mut self.buf, value.len() as u64);
        self.buf.extend_from_slice(&ikey[shared..]);
        self.buf.extend_from_slice(value);
        self.last_key.clear();
        self.last_key.extend_from_slice(ikey);
        self.counter += 1;
    }

    pub(crate) fn estimated_len(&self) -> usize {
        self.buf.len() + 4 * self.restarts.len() + 4
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.counter == 0
    }

    pub(crate) fn last_key(&self) -> &[u8] {
        &self.last_key
    }

    /// The encoded block; the builder is reset for the next block.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        for r in &self.restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        let count = u32::try_from(self.restarts.len()).expect("restart count fits u32");
        out.extend_from_slice(&count.to_le_bytes());
        self.restarts.clear();
        self.counter = 0;
        self.last_key.clear();
        out
    }
}

/// A decoded (decompressed, checksum-verified) block.
#[derive(Debug)]
pub(crate) struct Block {
    data: Vec<u8>,
    restarts_at: usize,
    num_restarts: usize,
    /// For error messages: the table file and the block's offset in it.
    origin: Arc<(std::path::PathBuf, u64)>,
}

impl Block {
    pub(crate) fn new(data: Vec<u8>, origin: Arc<(std::path::PathBuf, u64)>) -> Result<Self> {
        let corrupt = |reason: &str| Error::corruption(&origin.0, origin.1, reason);
        let n = data.len();
        let count_at = n
            .checked_sub(4)
            .ok_or_else(|| corrupt("block shorter than its trailer"))?;
        let num_restarts =
            u32::from_le_bytes(data[count_at..].try_into().expect("4 bytes")) as usize;
        let restarts_at = num_restarts
            .checked_mul(4)
            .and_then(|len| count_at.checked_sub(len))
            .ok_or_else(|| corrupt("restart array larger than the block"))?;
        Ok(Self {
            data,
            restarts_at,
            num_restarts,
            origin,
        })
    }

    pub(crate) fn size(&self) -> usize {
        self.data.len()
    }

    fn restart(&self, i: usize) -> usize {
        let at = self.restarts_at + 4 * i;
        u32::from_le_bytes(self.data[at..at + 4].try_into().expect("4 bytes")) as usize
    }

    fn corrupt(&self, reason: &str) -> Error {
        Error::corruption(&self.origin.0, self.origin.1, reason)
    }
}

/// Cursor over one block.
#[derive(Debug)]
pub(crate) struct BlockIter {
    block: Arc<Block>,
    /// Offset of the next entry to decode.
    next_offset: usize,
    key: Vec<u8>,
    value: (usize, usize),
    valid: bool,
}

impl BlockIter {
    pub(crate) fn new(block: Arc<Block>) -> Self {
        Self {
            block,
            next_offset: 0,
            key: Vec::new(),
            value: (0, 0),
            valid: false,
        }
    }

    /// Decodes the entry at `next_offset`; invalid at the end of the entries.
    fn decode_next(&mut self) -> Result<()> {
        if self.next_offset >= self.block.restarts_at {
            self.valid = false;
            return Ok(());
        }
        let data = &self.block.data[..self.block.restarts_at];
        let mut r = Reader::new(&data[self.next_offset..]);
        let parsed = (|| {
            let shared = r.varint_usize()?;
            let unshared = r.varint_usize()?;
            let value_len = r.varint_usize()?;
            let suffix = r.bytes(unshared)?;
            let value = r.bytes(value_len)?;
            Some((shared, suffix, value))
        })();
        let Some((shared, suffix, value)) = parsed else {
            return Err(self.block.corrupt("truncated block entry"));
        };
        if shared > self.key.len() {
            return Err(self
                .block
                .corrupt("entry shares more bytes than the previous key has"));
        }
        self.key.truncate(shared);
        self.key.extend_from_slice(suffix);
        if !key::is_valid(&self.key) {
            return Err(self.block.corrupt("malformed internal key"));
        }
        let value_start = value.as_ptr() as usize - data.as_ptr() as usize;
        self.value = (value_start, value_start + value.len());
        self.next_offset = self.value.1;
        self.valid = true;
        Ok(())
    }

    fn seek_to_restart(&mut self, i: usize) -> Result<()> {
        let offset = self.block.restart(i);
        if offset > self.block.restarts_at {
            return Err(self.block.corrupt("restart point beyond the entries"));
        }
        self.key.clear();
        self.next_offset = offset;
        self.decode_next()
    }
}

impl InternalIterator for BlockIter {
    fn valid(&self) -> bool {
        self.valid
    }

    fn key(&self) -> &[u8] {
        &self.key
    }

    fn value(&self) -> &[u8] {
        &self.block.data[self.value.0..self.value.1]
    }

    fn next(&mut self) -> Result<()> {
        self.decode_next()
    }

    fn seek(&mut self, target: &[u8]) -> Result<()> {
        if self.block.num_restarts == 0 {
            self.valid = false;
            return Ok(());
        }
        // Last restart point whose key is < target.
        let (mut lo, mut hi) = (0, self.block.num_restarts - 1);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            self.seek_to_restart(mid)?;
            if self.valid && key::compare(&self.key, target) == Ordering::Less {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        self.seek_to_restart(lo)?;
        while self.valid && key::compare(&self.key, target) == Ordering::Less {
            self.decode_next()?;
        }
        Ok(())
    }

    fn seek_to_first(&mut self) -> Result<()> {
        if self.block.num_restarts == 0 {
            self.valid = false;
            return Ok(());
        }
        self.seek_to_restart(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Kind;

    fn build(n: u64) -> Arc<Block> {
        let mut b = BlockBuilder::default();
        for i in 0..n {
            b.add(
                &key::encode(format!("key{i:05}").as_bytes(), 1, Kind::Put),
                &i.to_le_bytes(),
            );
        }
        let origin = Arc::new((std::path::PathBuf::from("test.sst"), 0));
        Arc::new(Block::new(b.finish(), origin).expect("valid block"))
    }

    #[test]
    fn seeks_land_on_the_first_key_at_or_after_the_target() {
        let block = build(100);
        let mut it = BlockIter::new(block);
        for i in [0u64, 1, 15, 16, 17, 50, 99] {
            it.seek(&key::seek_key(format!("key{i:05}").as_bytes(), 5))
                .expect("seek");
            assert!(it.valid());
            assert_eq!(it.value(), &i.to_le_bytes());
        }
        it.seek(&key::seek_key(b"key00042x", 5)).expect("seek");
        assert_eq!(it.value(), &43u64.to_le_bytes());
        it.seek(&key::seek_key(b"zzz", 5)).expect("seek");
        assert!(!it.valid());
        it.seek_to_first().expect("first");
        let mut count = 0;
        while it.valid() {
            count += 1;
            it.next().expect("next");
        }
        assert_eq!(count, 100);
    }

    #[test]
    fn prefix_compression_shrinks_similar_keys() {
        let block = build(64);
        // Without sharing: 3 header bytes + 16-byte internal key + 8-byte value.
        let unshared: usize = 64 * (3 + 16 + 8);
        assert!(
            block.size() < unshared * 17 / 20,
            "{} vs {unshared}",
            block.size()
        );
    }

    #[test]
    fn garbage_blocks_are_errors_not_panics() {
        let origin = Arc::new((std::path::PathBuf::from("x.sst"), 7));
        assert!(Block::new(vec![1, 2], origin.clone()).is_err());
        assert!(Block::new(vec![0xff, 0xff, 0xff, 0x0f], origin.clone()).is_err());
        // One restart at offset 0 pointing to a garbage entry.
        let block = Arc::new(
            Block::new(vec![0x05, 0xff, 0xff, 0, 0, 0, 0, 1, 0, 0, 0], origin).expect("parses"),
        );
        let mut it = BlockIter::new(block);
        assert!(matches!(it.seek_to_first(), Err(Error::Corruption { .. })));
    }
}
