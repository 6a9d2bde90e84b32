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
}

/// Folds `operands` (oldest first) onto `base`.
pub(crate) fn fold(
    op: &dyn MergeOperator,
    key: &[u8],
    base: Option<&[u8]>,
    operands: impl IntoIterator<Item = impl AsRef<[u8]>>,
) -> Option<Vec<u8>> {
    let mut acc: Option<Vec<u8>> = base.map(<[u8]>::to_vec);
    for operand in operands {
        acc = Some(op.merge(key, acc.as_deref(), operand.as_ref()));
    }
    acc
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
mod tests {
    use super::*;

    #[test]
    fn fold_applies_operands_oldest_first() {
        assert_eq!(
            fold(&Append, b"k", Some(b"a"), [b"b", b"c"]),
            Some(b"a,b,c".to_vec())
        );
        assert_eq!(fold(&Append, b"k", None, [b"x"]), Some(b"x".to_vec()));
        assert_eq!(fold(&Append, b"k", None, Vec::<&[u8]>::new()), None);
    }
}
