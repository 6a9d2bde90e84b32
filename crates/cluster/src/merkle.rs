//! Merkle trees over a token range, for anti-entropy.
//!
//! The range `(start, end]` is split into `2^depth` equal leaves by token.
//! A leaf's hash is the XOR of its keys' hashes (order-free, so a replica
//! can build it in one scan and two replicas agree whatever order they
//! insert in); an inner node hashes its two children. Positions are heap
//! order: the root is 1, the children of `i` are `2i` and `2i + 1`, leaves
//! are `2^depth ..= 2^(depth+1) - 1` — the numbering of
//! `strata.v1.MerkleNodesRequest`.
//!
//! Replicas compare level by level ([`differing_children`]) and descend
//! only where hashes differ; [`MerkleTree::diff`] does the whole walk when
//! both trees are at hand.

use xxhash_rust::xxh3::xxh3_128;

use crate::{Token, TokenRange};

/// Deepest tree accepted: 2^20 leaves (16 MiB of hashes).
pub const MAX_DEPTH: u32 = 20;

/// A node hash.
pub type Hash = u128;

/// A Merkle tree of one token range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    range: TokenRange,
    depth: u32,
    /// Heap-ordered; index 0 unused.
    nodes: Vec<Hash>,
    finished: bool,
}

/// The hash a key contributes to its leaf: of its token, user key and
/// stored versions, so replicas holding different versions differ.
#[must_use]
pub fn key_hash(engine_key: &[u8], value: &[u8]) -> Hash {
    let mut buf = Vec::with_capacity(8 + engine_key.len() + value.len());
    buf.extend_from_slice(&(engine_key.len() as u64).to_be_bytes());
    buf.extend_from_slice(engine_key);
    buf.extend_from_slice(value);
    xxh3_128(&buf)
}

impl MerkleTree {
    /// An empty tree over `range` with `2^depth` leaves (`depth` is capped
    /// at [`MAX_DEPTH`]).
    #[must_use]
    pub fn new(range: TokenRange, depth: u32) -> Self {
        let depth = depth.min(MAX_DEPTH);
        Self {
            range,
            depth,
            nodes: vec![0; 1 << (depth + 1)],
            finished: false,
        }
    }

    /// The tree's depth.
    #[must_use]
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// The leaf (0-based) that `token` falls in, or `None` outside the range.
    #[must_use]
    pub fn leaf_of(&self, token: Token) -> Option<u64> {
        if !self.range.contains(token) {
            return None;
        }
        let offset = u128::from(token.0.wrapping_sub(self.range.start.0));
        // Token == start only on the whole ring, where it is the last offset.
        let offset = if offset == 0 {
            width(self.range)
        } else {
            offset
        };
        let leaf = ((offset - 1) << self.depth) / width(self.range);
        u64::try_from(leaf).ok()
    }

    /// Adds a key's hash to its leaf. Keys outside the range are ignored
    /// and reported as `false`.
    pub fn insert(&mut self, token: Token, hash: Hash) -> bool {
        let Some(leaf) = self.leaf_of(token) else {
            return false;
        };
        let index = (1usize << self.depth) + usize::try_from(leaf).unwrap_or(0);
        self.nodes[index] ^= hash;
        self.finished = false;
        true
    }

    /// Computes the inner nodes. Reads before this see only the leaves.
    pub fn finish(&mut self) {
        for i in (1..(1usize << self.depth)).rev() {
            let mut pair = [0u8; 32];
            pair[..16].copy_from_slice(&self.nodes[2 * i].to_le_bytes());
            pair[16..].copy_from_slice(&self.nodes[2 * i + 1].to_le_bytes());
            self.nodes[i] = xxh3_128(&pair);
        }
        self.finished = true;
    }

    /// The hash at heap `position`, or `None` past the tree.
    #[must_use]
    pub fn hash_at(&self, position: u64) -> Option<Hash> {
        let index = usize::try_from(position).ok()?;
        (index >= 1 && index < self.nodes.len()).then(|| self.nodes[index])
    }

    /// The root hash (after [`MerkleTree::finish`]).
    #[must_use]
    pub fn root(&self) -> Hash {
        debug_assert!(self.finished, "finish() before reading inner nodes");
        self.nodes[1]
    }

    /// The token range of heap `position`.
    #[must_use]
    pub fn range_of(&self, position: u64) -> Option<TokenRange> {
        if position == 0 || position >= (2u64 << self.depth) {
            return None;
        }
        let level = 63 - position.leading_zeros();
        let index = u128::from(position - (1u64 << level));
        let w = width(self.range);
        let bound = |i: u128| {
            let offset = (i * w) >> level;
            // Offsets are below 2^64 + 1; the wrapping add maps 2^64 to start.
            #[expect(clippy::cast_possible_truncation, reason = "modulo 2^64 on purpose")]
            Token(self.range.start.0.wrapping_add(offset as u64))
        };
        Some(TokenRange {
            start: bound(index),
            end: bound(index + 1),
        })
    }

    /// Leaf positions whose hashes differ between two finished trees of
    /// the same range and depth, found by descending from the root only
    /// into differing subtrees; `None` when the shapes differ.
    #[must_use]
    pub fn diff(&self, other: &Self) -> Option<Vec<u64>> {
        if self.range != other.range || self.depth != other.depth {
            return None;
        }
        let mut level = vec![1u64];
        if self.hash_at(1) == other.hash_at(1) {
            return Some(Vec::new());
        }
        for _ in 0..self.depth {
            let children: Vec<u64> = level.iter().flat_map(|p| [2 * p, 2 * p + 1]).collect();
            let local: Vec<Hash> = children.iter().filter_map(|&p| self.hash_at(p)).collect();
            let remote: Vec<Hash> = children.iter().filter_map(|&p| other.hash_at(p)).collect();
            level = differing_children(&children, &local, &remote);
        }
        Some(level)
    }
}

/// Of `positions` (with this replica's `local` and the other's `remote`
/// hashes, in the same order), those whose hashes differ: the positions to
/// descend into next.
#[must_use]
pub fn differing_children(positions: &[u64], local: &[Hash], remote: &[Hash]) -> Vec<u64> {
    positions
        .iter()
        .zip(local.iter().zip(remote))
        .filter(|(_, (l, r))| l != r)
        .map(|(p, _)| *p)
        .collect()
}

/// Tokens in `range`: `end - start`, or 2^64 for the whole ring.
fn width(range: TokenRange) -> u128 {
    match range.end.0.wrapping_sub(range.start.0) {
        0 => 1u128 << 64,
        w => u128::from(w),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn tree(range: TokenRange, depth: u32, keys: &[(u64, &str)]) -> MerkleTree {
        let mut t = MerkleTree::new(range, depth);
        for (token, value) in keys {
            t.insert(
                Token(*token),
                key_hash(&token.to_be_bytes(), value.as_bytes()),
            );
        }
        t.finish();
        t
    }

    const RING: TokenRange = TokenRange {
        start: Token(0),
        end: Token(0),
    };

    #[test]
    fn leaves_tile_the_range_and_contain_their_tokens() {
        for range in [
            RING,
            TokenRange {
                start: Token(100),
                end: Token(1100),
            },
            TokenRange {
                start: Token(u64::MAX - 10),
                end: Token(20),
            },
        ] {
            let t = MerkleTree::new(range, 3);
            let leaves: Vec<TokenRange> = (8..16).map(|p| t.range_of(p).expect("leaf")).collect();
            assert_eq!(leaves[0].start, range.start);
            assert_eq!(leaves[7].end, range.end);
            for pair in leaves.windows(2) {
                assert_eq!(pair[0].end, pair[1].start, "{range:?}");
            }
            for (i, leaf) in leaves.iter().enumerate() {
                let token = leaf.end;
                assert_eq!(t.leaf_of(token), Some(i as u64), "{range:?} leaf {i}");
            }
            assert_eq!(t.range_of(1), Some(range));
            assert_eq!(t.range_of(16), None);
        }
        let t = MerkleTree::new(
            TokenRange {
                start: Token(100),
                end: Token(1100),
            },
            2,
        );
        assert_eq!(t.leaf_of(Token(100)), None, "start is exclusive");
        assert_eq!(t.leaf_of(Token(101)), Some(0));
        assert_eq!(t.leaf_of(Token(1100)), Some(3));
    }

    #[test]
    fn equal_data_gives_equal_roots_whatever_the_order() {
        let a = tree(RING, 4, &[(1, "x"), (1 << 62, "y"), (u64::MAX, "z")]);
        let b = tree(RING, 4, &[(u64::MAX, "z"), (1, "x"), (1 << 62, "y")]);
        assert_eq!(a.root(), b.root());
        assert_eq!(a.diff(&b), Some(Vec::new()));
    }

    #[test]
    fn diff_finds_exactly_the_leaves_that_differ() {
        let base = [(5u64, "a"), (1 << 61, "b"), (3 << 62, "c")];
        let a = tree(RING, 3, &base);
        let mut changed = base.to_vec();
        changed[1].1 = "B";
        changed.push((u64::MAX - 1, "new"));
        let b = tree(RING, 3, &changed);
        let leaf = |token: u64| 8 + a.leaf_of(Token(token)).expect("in range");
        let mut expected = vec![leaf(1 << 61), leaf(u64::MAX - 1)];
        expected.sort_unstable();
        assert_eq!(a.diff(&b), Some(expected));
        let other_shape = tree(RING, 4, &base);
        assert_eq!(a.diff(&other_shape), None);
    }

    proptest! {
        #[test]
        fn diff_is_empty_iff_leaves_agree(
            keys in proptest::collection::vec((any::<u64>(), 0u8..4), 0..40),
            flip in any::<prop::sample::Index>(),
        ) {
            let as_str: Vec<(u64, String)> =
                keys.iter().map(|(t, v)| (*t, v.to_string())).collect();
            let refs: Vec<(u64, &str)> = as_str.iter().map(|(t, v)| (*t, v.as_str())).collect();
            let a = tree(RING, 5, &refs);
            prop_assert_eq!(a.diff(&a.clone()), Some(Vec::new()));
            if !refs.is_empty() {
                let mut changed = refs.clone();
                let i = flip.index(changed.len());
                changed[i].1 = "changed";
                let b = tree(RING, 5, &changed);
                let diff = a.diff(&b).expect("same shape");
                let leaf = 32 + a.leaf_of(Token(refs[i].0)).expect("in range");
                if refs[i].1 == "changed" {
                    prop_assert!(diff.is_empty());
                } else {
                    prop_assert_eq!(diff, vec![leaf]);
                }
            }
        }
    }
}
