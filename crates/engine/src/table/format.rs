//! SSTable file layout: block trailers and the footer.
//!
//! ```text
//! [data block][trailer] ... [bloom block][trailer] [index block][trailer] [footer]
//! trailer = compression (u8: 0 none, 1 lz4) | crc32c(block bytes || compression) (u32 LE)
//! footer  = index offset, index len, bloom offset, bloom len (u64 LE each)
//!         | format version (u32 LE) | crc32c of the preceding 36 bytes (u32 LE)
//!         | magic (u64 LE)
//! ```

use crate::coding::{Reader, put_varint};

pub(crate) const MAGIC: u64 = 0x5354_5241_5441_5354; // "STRATAST"
pub(crate) const FORMAT_VERSION: u32 = 1;
pub(crate) const FOOTER_LEN: usize = 48;
pub(crate) const TRAILER_LEN: usize = 5;

pub(crate) const NO_COMPRESSION: u8 = 0;
pub(crate) const LZ4: u8 = 1;

/// Largest decompressed block accepted (guards allocation on bad input).
/// Above the largest write plus a block's worth of smaller entries.
pub(crate) const MAX_BLOCK_LEN: usize = 128 << 20;

/// Where a block lives in the file (length excludes the trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Handle {
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

impl Handle {
    pub(crate) fn encode(self, out: &mut Vec<u8>) {
        put_varint(out, self.offset);
        put_varint(out, self.len);
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader::new(bytes);
        let handle = Self {
            offset: r.varint()?,
            len: r.varint()?,
        };
        r.is_empty().then_some(handle)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    pub(crate) index: Handle,
    pub(crate) bloom: Handle,
}

/// Why a footer was rejected.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FooterError {
    BadMagic,
    Checksum,
    Version(u32),
}

impl Footer {
    pub(crate) fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut out = [0u8; FOOTER_LEN];
        out[0..8].copy_from_slice(&self.index.offset.to_le_bytes());
        out[8..16].copy_from_slice(&self.index.len.to_le_bytes());
        out[16..24].copy_from_slice(&self.bloom.offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.bloom.len.to_le_bytes());
        out[32..36].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        let crc = crc32c::crc32c(&out[..36]);
        out[36..40].copy_from_slice(&crc.to_le_bytes());
        out[40..48].copy_from_slice(&MAGIC.to_le_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8; FOOTER_LEN]) -> Result<Self, FooterError> {
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        if u64_at(40) != MAGIC {
            return Err(FooterError::BadMagic);
        }
        if !checksum_ok(crc32c::crc32c(&bytes[..36]), u32_at(36)) {
            return Err(FooterError::Checksum);
        }
        let version = u32_at(32);
        if version != FORMAT_VERSION {
            return Err(FooterError::Version(version));
        }
        Ok(Self {
            index: Handle {
                offset: u64_at(0),
                len: u64_at(8),
            },
            bloom: Handle {
                offset: u64_at(16),
                len: u64_at(24),
            },
        })
    }
}

/// Whether a stored checksum matches the computed one. Fuzz builds
/// (`--cfg fuzzing`, which `cargo fuzz` sets; see docs/fuzzing.md) accept
/// any, so the fuzzer's mutations reach the parsing behind the checksum.
pub(crate) fn checksum_ok(computed: u32, stored: u32) -> bool {
    cfg!(fuzzing) || computed == stored
}

pub(crate) fn block_checksum(block: &[u8], compression: u8) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(block), &[compression])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_round_trips_and_detects_damage() {
        let footer = Footer {
            index: Handle {
                offset: 1000,
                len: 200,
            },
            bloom: Handle {
                offset: 900,
                len: 100,
            },
        };
        let encoded = footer.encode();
        assert_eq!(Footer::decode(&encoded), Ok(footer));
        for i in 0..FOOTER_LEN {
            let mut bad = encoded;
            bad[i] ^= 0x10;
            let expected = if i >= 40 {
                FooterError::BadMagic
            } else {
                FooterError::Checksum
            };
            assert_eq!(Footer::decode(&bad), Err(expected), "byte {i}");
        }
    }
}
