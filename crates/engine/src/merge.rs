//! The merge-operator hook: write a new operand for a key without reading
//! it; operands are combined with the existing value on reads and during
//! compaction (like RocksDB's associative merge operator).

use std::fmt::Debug;

/// Combines merge operands with the value they apply to.
///
/// Contract, relied on by compaction:
/// - `merge(key, existing, operand)` returns the value after applying
///   `operand` to `existing` (`None`: the key has no value or was deleted).
/// - It is **associative**: operands may be pre-combined before the base
///   value is known, by passing an older operand as `existing`. So
///   `merge(k, Some(&merge(k, a, b)), c) == merge(k, a, &merge(k, Some(b), c))`
///   for `a` a value or an operand.
/// - It must be deterministic and must not panic on any input: stored bytes
///   may come from an older version of the program.
pub trait MergeOperator: Send + Sync + Debug + 'static {
    /// Applies `operand` to `existing`.
    fn merge(&self, key: &[u8], existing: Option<&[u8]>, operand: &[u8]) -> Vec<u8>;

    /// Applies `operands` (oldest first, never empty) to `existing` in one
    /// call. Must return what applying them one at a time with
    /// [`merge`](Self::merge) returns, which is what the default does
    /// ([`merge_each`]). Every read, scan and compaction of a key with
    /// operands calls this once, so an operator whose values cost more to
    /// decode and encode than to combine should override it to decode
    /// each input once and encode the result once.
    fn merge_all(&self, key: &[u8], existing: Option<&[u8]>, operands: &[&[u8]]) -> Vec<u8> {
        merge_each(self, key, existing, operands)
    }
}

/// Applies `operands` (oldest first) to `existing` one at a time with
/// [`MergeOperator::merge`]: the default [`MergeOperator::merge_all`], for
/// overrides to fall back to. With no operands, `existing` (empty if none).
pub fn merge_each<O: MergeOperator + ?Sized>(
    op: &O,
    key: &[u8],
    existing: Option<&[u8]>,
    operands: &[&[u8]],
) -> Vec<u8> {
    let Some((first, rest)) = operands.split_first() else {
        return existing.map(<[u8]>::to_vec).unwrap_or_default();
    };
    let mut acc = op.merge(key, existing, first);
    for operand in rest {
        acc = op.merge(key, Some(&acc), operand);
    }
    acc
}

/// Folds `operands` (oldest first) onto `base` with one
/// [`MergeOperator::merge_all`] call; `base` itself when there are none.
pub(crate) fn fold<'a, T: AsRef<[u8]> + ?Sized + 'a>(
    op: &dyn MergeOperator,
    key: &[u8],
    base: Option<&[u8]>,
    operands: impl IntoIterator<Item = &'a T>,
) -> Option<Vec<u8>> {
    let operands: Vec<&[u8]> = operands.into_iter().map(AsRef::as_ref).collect();
    if operands.is_empty() {
        return base.map(<[u8]>::to_vec);
    }
    Some(op.merge_all(key, base, &operands))
}

/// Test operator: appends operands separated by commas.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Append;

#[cfg(test)]
impl MergeOperator for Append {
    fn merge(&self, _key: &[u8], existing: Option<&[u8]>, operand: &[u8]) -> Vec<u8> {
        let mut out = existing.map(<[u8]>::to_vec).unwrap_or_default();
        if !out.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(operand);
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn fold_applies_operands_oldest_first() {
        assert_eq!(
            fold(&Append, b"k", Some(b"a"), [b"b", b"c"]),
            Some(b"a,b,c".to_vec())
        );
        assert_eq!(fold(&Append, b"k", None, [b"x"]), Some(b"x".to_vec()));
        assert_eq!(fold(&Append, b"k", None, Vec::<&[u8]>::new()), None);
        assert_eq!(
            fold(&Append, b"k", Some(b"a"), Vec::<&[u8]>::new()),
            Some(b"a".to_vec())
        );
    }

    /// Counts the calls of each method; merges like `Append`.
    #[derive(Debug, Default)]
    pub(crate) struct Counting {
        pub(crate) merges: std::sync::atomic::AtomicUsize,
        pub(crate) merge_alls: std::sync::atomic::AtomicUsize,
    }

    impl MergeOperator for Counting {
        fn merge(&self, key: &[u8], existing: Option<&[u8]>, operand: &[u8]) -> Vec<u8> {
            self.merges
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Append.merge(key, existing, operand)
        }

        fn merge_all(&self, key: &[u8], existing: Option<&[u8]>, operands: &[&[u8]]) -> Vec<u8> {
            self.merge_alls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            merge_each(self, key, existing, operands)
        }
    }

    #[test]
    fn fold_hands_every_operand_to_one_merge_all_call() {
        let op = Counting::default();
        assert_eq!(
            fold(&op, b"k", None, [b"a", b"b", b"c", b"d"]),
            Some(b"a,b,c,d".to_vec())
        );
        assert_eq!(op.merge_alls.into_inner(), 1);
        // The default applies the operands one at a time.
        assert_eq!(op.merges.into_inner(), 4);
        assert_eq!(merge_each(&Append, b"k", Some(b"x"), &[]), b"x".to_vec());
        assert_eq!(merge_each(&Append, b"k", None, &[]), Vec::<u8>::new());
    }
}
