//! Tokens, token ranges and the engine key layout.
//!
//! A key's token is a 64-bit hash of the user key. On disk a key is stored as
//! `token (u64, big-endian) || user key`, so every token range is one
//! contiguous key range in the engine: streaming a range, building its Merkle
//! tree and decommissioning a node are each a single range scan.

use crate::Error;

/// Bytes of the token prefix in an engine key.
pub const ENGINE_KEY_PREFIX_LEN: usize = 8;

/// A position on the 64-bit hash ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Token(pub u64);

impl Token {
    /// The token of a user key: XXH3-64 of its bytes, seed 0.
    ///
    /// The hash is part of the on-disk format and of placement: changing it
    /// moves every key.
    #[must_use]
    pub fn of(key: &[u8]) -> Self {
        Self(xxhash_rust::xxh3::xxh3_64(key))
    }
}

/// Builds the engine key `token (big-endian) || user key`.
#[must_use]
pub fn encode_engine_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENGINE_KEY_PREFIX_LEN + key.len());
    out.extend_from_slice(&Token::of(key).0.to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Splits an engine key into its token and user key.
///
/// # Errors
/// [`Error::EngineKeyTooShort`] when the key has no full token prefix.
pub fn decode_engine_key(engine_key: &[u8]) -> Result<(Token, &[u8]), Error> {
    match engine_key.split_first_chunk::<ENGINE_KEY_PREFIX_LEN>() {
        Some((prefix, key)) => Ok((Token(u64::from_be_bytes(*prefix)), key)),
        None => Err(Error::EngineKeyTooShort {
            len: engine_key.len(),
        }),
    }
}

/// A half-open range `(start, end]` of tokens, as in Cassandra.
///
/// `start == end` is the whole ring; `start > end` wraps past `u64::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenRange {
    /// Exclusive lower bound.
    pub start: Token,
    /// Inclusive upper bound.
    pub end: Token,
}

impl TokenRange {
    /// Whether `token` falls in `(start, end]`.
    #[must_use]
    pub fn contains(&self, token: Token) -> bool {
        let (s, e, t) = (self.start.0, self.end.0, token.0);
        match s.cmp(&e) {
            std::cmp::Ordering::Equal => true,
            std::cmp::Ordering::Less => s < t && t <= e,
            std::cmp::Ordering::Greater => t > s || t <= e,
        }
    }

    /// The range as at most two non-wrapping inclusive token intervals
    /// `[lo, hi]`, ready to become engine key range scans.
    #[must_use]
    pub fn intervals(&self) -> Vec<(Token, Token)> {
        let (s, e) = (self.start.0, self.end.0);
        if s < e {
            vec![(Token(s + 1), Token(e))]
        } else {
            // Wraps, or the whole ring: (s, MAX] then [0, e].
            let mut out = Vec::with_capacity(2);
            if s < u64::MAX {
                out.push((Token(s + 1), Token(u64::MAX)));
            }
            out.push((Token(0), Token(e)));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn engine_key_is_token_prefix_then_user_key() {
        let encoded = encode_engine_key(b"user:1");
        assert_eq!(&encoded[8..], b"user:1");
        let (token, key) = decode_engine_key(&encoded).expect("decodes");
        assert_eq!(token, Token::of(b"user:1"));
        assert_eq!(key, b"user:1");
        assert_eq!(
            decode_engine_key(b"short"),
            Err(Error::EngineKeyTooShort { len: 5 })
        );
    }

    #[test]
    fn token_hash_is_stable() {
        // Part of the on-disk format: this value must never change.
        assert_eq!(Token::of(b"strata"), Token(5_431_800_237_448_241_503));
        assert_ne!(Token::of(b"a"), Token::of(b"b"));
    }

    #[test]
    fn range_contains_respects_half_open_bounds_and_wrap() {
        let r = TokenRange {
            start: Token(10),
            end: Token(20),
        };
        assert!(!r.contains(Token(10)));
        assert!(r.contains(Token(11)));
        assert!(r.contains(Token(20)));
        assert!(!r.contains(Token(21)));

        let wrap = TokenRange {
            start: Token(u64::MAX - 5),
            end: Token(5),
        };
        assert!(wrap.contains(Token(u64::MAX)));
        assert!(wrap.contains(Token(0)));
        assert!(wrap.contains(Token(5)));
        assert!(!wrap.contains(Token(6)));
        assert!(!wrap.contains(Token(u64::MAX - 5)));

        let whole = TokenRange {
            start: Token(7),
            end: Token(7),
        };
        assert!(whole.contains(Token(7)) && whole.contains(Token(0)));
    }

    proptest! {
        #[test]
        fn intervals_cover_exactly_the_range(s: u64, e: u64, t: u64) {
            let range = TokenRange { start: Token(s), end: Token(e) };
            let in_intervals = range
                .intervals()
                .iter()
                .any(|(lo, hi)| lo.0 <= t && t <= hi.0);
            prop_assert_eq!(in_intervals, range.contains(Token(t)));
        }
    }
}
