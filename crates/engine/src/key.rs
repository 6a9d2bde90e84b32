//! Internal keys: a user key plus a sequence number and an entry kind.
//!
//! Encoded as `user key || trailer`, where the trailer is 8 bytes big-endian
//! `(seq << 8) | kind`. Internal keys order by user key ascending, then by
//! trailer descending, so the newest version of a key comes first and a seek
//! to `(key, snapshot)` lands on the newest entry visible to that snapshot.

use std::cmp::Ordering;

/// Monotonic sequence number of a write; the newest write has the largest.
pub type SeqNo = u64;

/// Largest usable sequence number (56 bits: the trailer keeps 8 for the kind).
pub const MAX_SEQ: SeqNo = (1 << 56) - 1;

pub(crate) const TRAILER_LEN: usize = 8;

/// What an entry does to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Delete = 0,
    Put = 1,
    Merge = 2,
}

impl Kind {
    pub(crate) fn from_u8(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Self::Delete),
            1 => Some(Self::Put),
            2 => Some(Self::Merge),
            _ => None,
        }
    }
}

/// Kind used in seek keys: the largest, so the seek key sorts before every
/// entry of the same user key and sequence number.
const SEEK_KIND: u64 = 0xff;

pub(crate) fn encode(user_key: &[u8], seq: SeqNo, kind: Kind) -> Vec<u8> {
    let mut out = Vec::with_capacity(user_key.len() + TRAILER_LEN);
    out.extend_from_slice(user_key);
    out.extend_from_slice(&((seq << 8) | kind as u64).to_be_bytes());
    out
}

/// The smallest internal key for `user_key` visible at `seq`.
pub(crate) fn seek_key(user_key: &[u8], seq: SeqNo) -> Vec<u8> {
    let mut out = Vec::with_capacity(user_key.len() + TRAILER_LEN);
    out.extend_from_slice(user_key);
    out.extend_from_slice(&((seq << 8) | SEEK_KIND).to_be_bytes());
    out
}

/// A decoded view of an internal key. Callers must only pass keys that were
/// validated with [`is_valid`] (the block and memtable readers do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parsed<'a> {
    pub(crate) user_key: &'a [u8],
    pub(crate) seq: SeqNo,
    pub(crate) kind: Kind,
}

pub(crate) fn is_valid(ikey: &[u8]) -> bool {
    ikey.len() >= TRAILER_LEN && Kind::from_u8(ikey[ikey.len() - 1]).is_some()
}

pub(crate) fn parse(ikey: &[u8]) -> Option<Parsed<'_>> {
    let split = ikey.len().checked_sub(TRAILER_LEN)?;
    let (user_key, trailer) = ikey.split_at(split);
    let trailer = u64::from_be_bytes(trailer.try_into().ok()?);
    Some(Parsed {
        user_key,
        seq: trailer >> 8,
        kind: Kind::from_u8((trailer & 0xff) as u8)?,
    })
}

pub(crate) fn user_key(ikey: &[u8]) -> &[u8] {
    &ikey[..ikey.len().saturating_sub(TRAILER_LEN)]
}

fn trailer(ikey: &[u8]) -> u64 {
    let split = ikey.len().saturating_sub(TRAILER_LEN);
    let mut bytes = [0u8; 8];
    let tail = &ikey[split..];
    bytes[8 - tail.len()..].copy_from_slice(tail);
    u64::from_be_bytes(bytes)
}

/// The internal key order: user key ascending, then trailer descending.
pub(crate) fn compare(a: &[u8], b: &[u8]) -> Ordering {
    user_key(a)
        .cmp(user_key(b))
        .then_with(|| trailer(b).cmp(&trailer(a)))
}

/// An owned internal key ordered by [`compare`], for the memtable skiplist.
///
/// The first 16 user-key bytes (zero-padded, big-endian), the user-key
/// length and the trailer are cached inline, so a comparison in the
/// skiplist rarely dereferences `bytes`: skiplist search is bound by cache
/// misses, and a second pointer per node doubles them. Zero padding keeps
/// the order lexicographic: heads that differ order the keys the same way,
/// and equal heads of two keys of at most 16 bytes mean the shorter key is
/// a prefix of the longer one.
///
/// The entry's value shares the key's allocation (`ikey || value`): one
/// allocation per entry instead of two, which matters when a flushed
/// memtable of millions of entries is freed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InternalKey {
    head: u128,
    user_len: usize,
    trailer: u64,
    key_len: usize,
    bytes: Box<[u8]>,
}

const HEAD_LEN: usize = 16;

impl InternalKey {
    /// A key carrying `value`.
    pub(crate) fn with_value(user_key: &[u8], seq: SeqNo, kind: Kind, value: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(user_key.len() + TRAILER_LEN + value.len());
        bytes.extend_from_slice(user_key);
        bytes.extend_from_slice(&((seq << 8) | kind as u64).to_be_bytes());
        bytes.extend_from_slice(value);
        Self::from_parts(bytes.into_boxed_slice(), user_key.len() + TRAILER_LEN)
    }

    /// A search key without a value.
    pub(crate) fn probe(ikey: &[u8]) -> Self {
        Self::from_parts(ikey.into(), ikey.len())
    }

    fn from_parts(bytes: Box<[u8]>, key_len: usize) -> Self {
        let user = user_key(&bytes[..key_len]);
        let mut head = [0u8; HEAD_LEN];
        let n = user.len().min(HEAD_LEN);
        head[..n].copy_from_slice(&user[..n]);
        Self {
            head: u128::from_be_bytes(head),
            user_len: user.len(),
            trailer: trailer(&bytes[..key_len]),
            key_len,
            bytes,
        }
    }

    /// The encoded internal key.
    pub(crate) fn ikey(&self) -> &[u8] {
        &self.bytes[..self.key_len]
    }

    /// The value stored with the key.
    pub(crate) fn value(&self) -> &[u8] {
        &self.bytes[self.key_len..]
    }

    /// Bytes of key and value.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether `other` is a version of the same user key (mostly decided
    /// by the cached head, without touching the key bytes).
    pub(crate) fn same_user_key(&self, other: &Self) -> bool {
        self.head == other.head
            && self.user_len == other.user_len
            && (self.user_len <= HEAD_LEN || user_key(self.ikey()) == user_key(other.ikey()))
    }
}

impl Ord for InternalKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.head.cmp(&other.head).then_with(|| {
            if self.user_len <= HEAD_LEN && other.user_len <= HEAD_LEN {
                self.user_len
                    .cmp(&other.user_len)
                    .then_with(|| other.trailer.cmp(&self.trailer))
            } else {
                compare(self.ikey(), other.ikey())
            }
        })
    }
}

impl PartialOrd for InternalKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_version_sorts_first_and_prefixes_sort_by_user_key() {
        let a9 = encode(b"a", 9, Kind::Put);
        let a3 = encode(b"a", 3, Kind::Delete);
        let ab1 = encode(b"ab", 1, Kind::Put);
        assert_eq!(compare(&a9, &a3), Ordering::Less);
        assert_eq!(compare(&a3, &ab1), Ordering::Less);
        // A seek at snapshot 5 lands between the two versions of "a".
        let seek = seek_key(b"a", 5);
        assert_eq!(compare(&a9, &seek), Ordering::Less);
        assert_eq!(compare(&seek, &a3), Ordering::Less);
        // Seeking at the entry's own sequence number still finds it.
        assert_eq!(compare(&seek_key(b"a", 9), &a9), Ordering::Less);
    }

    #[test]
    fn same_user_key_compares_long_keys_past_the_head() {
        let k = |user: &[u8], seq| InternalKey::with_value(user, seq, Kind::Put, b"v");
        let long_a = b"0123456789abcdef-tail-a";
        let long_b = b"0123456789abcdef-tail-b";
        assert!(k(b"a", 1).same_user_key(&k(b"a", 9)));
        assert!(!k(b"a", 1).same_user_key(&k(b"a\0", 1)));
        assert!(k(long_a, 1).same_user_key(&k(long_a, 2)));
        assert!(
            !k(long_a, 1).same_user_key(&k(long_b, 1)),
            "same head, other tail"
        );
        assert!(!k(b"0123456789abcdef", 1).same_user_key(&k(long_a, 1)));
    }

    #[test]
    fn cached_heads_agree_with_the_byte_order() {
        let keys: [&[u8]; 11] = [
            b"",
            b"\0",
            b"a",
            b"a\0",
            b"a\0\0\0\0\0\0\0\0",
            b"ab",
            b"abcdefgh",
            b"abcdefghijklmnop",
            b"abcdefghijklmnop\0",
            b"abcdefghijklmnopq",
            b"abcdefghijklmnoq",
        ];
        for a in keys {
            for b in keys {
                for (sa, sb) in [(1, 1), (1, 2), (2, 1)] {
                    let (ka, kb) = (encode(a, sa, Kind::Put), encode(b, sb, Kind::Put));
                    let expected = compare(&ka, &kb);
                    let (pa, pb) = (
                        InternalKey::probe(&ka),
                        InternalKey::with_value(b, sb, Kind::Put, b"v"),
                    );
                    assert_eq!(pa.cmp(&pb), expected, "{a:?} {b:?}");
                }
            }
        }
    }

    #[test]
    fn parse_round_trips_and_rejects_garbage() {
        let k = encode(b"key", MAX_SEQ, Kind::Merge);
        let p = parse(&k).expect("valid");
        assert_eq!(
            (p.user_key, p.seq, p.kind),
            (&b"key"[..], MAX_SEQ, Kind::Merge)
        );
        assert!(parse(b"short").is_none());
        assert!(!is_valid(&[0, 0, 0, 0, 0, 0, 0, 7]));
    }
}
