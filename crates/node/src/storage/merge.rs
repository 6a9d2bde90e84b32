//! The engine merge operator for sibling sets.
//!
//! Merging two stored sibling sets is their join (`Siblings::merge`), which
//! is associative as the engine requires. When either side cannot be
//! decoded, nothing is dropped: the result is a quarantine record holding
//! every raw input, reads of the key fail with `CodecError::Quarantined`,
//! and later merges append to it, so an operator can recover the bytes.

use strata_cluster::Siblings;
use strata_engine::{MergeOperator, merge_each};

use super::codec::{decode, encode};
use super::quarantine::quarantine;

/// Joins sibling sets; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct SiblingsMerge;

impl MergeOperator for SiblingsMerge {
    fn merge(&self, _key: &[u8], existing: Option<&[u8]>, operand: &[u8]) -> Vec<u8> {
        let Some(existing) = existing else {
            return operand.to_vec();
        };
        match (decode(existing), decode(operand)) {
            (Ok(mut left), Ok(right)) => {
                left.merge(&right);
                encode(&left)
            }
            _ => quarantine(existing, operand),
        }
    }

    /// Decodes every input once and encodes the join once (a read of a key
    /// with a chain of operands would otherwise decode and re-encode the
    /// growing set at each step). Falls back to one merge at a time, which
    /// builds the quarantine record, when any input does not decode.
    fn merge_all(&self, key: &[u8], existing: Option<&[u8]>, operands: &[&[u8]]) -> Vec<u8> {
        if let (None, [only]) = (existing, operands) {
            return only.to_vec();
        }
        let mut joined = match existing.map(decode) {
            None => Siblings::new(),
            Some(Ok(set)) => set,
            Some(Err(_)) => return merge_each(self, key, existing, operands),
        };
        for operand in operands {
            match decode(operand) {
                Ok(set) => joined.merge(&set),
                Err(_) => return merge_each(self, key, existing, operands),
            }
        }
        encode(&joined)
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::storage::CodecError;
    use crate::storage::quarantine::quarantine_parts;
    use crate::testing::one_version;

    fn set(node: &str, value: &str) -> Vec<u8> {
        encode(&one_version(node, value))
    }

    #[test]
    fn merging_joins_sibling_sets() {
        let merged = SiblingsMerge.merge(b"k", Some(&set("a", "1")), &set("b", "2"));
        let siblings = decode(&merged).expect("decodes");
        assert_eq!(siblings.versions().len(), 2);
        assert_eq!(
            SiblingsMerge.merge(b"k", None, &set("a", "1")),
            set("a", "1")
        );
    }

    #[test]
    fn merging_all_at_once_equals_merging_one_at_a_time() {
        let good: Vec<Vec<u8>> = ["a", "b", "a", "c"]
            .iter()
            .enumerate()
            .map(|(i, node)| set(node, &i.to_string()))
            .collect();
        let garbage = b"\x07garbage".to_vec();
        type Case<'a> = (Option<&'a [u8]>, Vec<&'a [u8]>);
        let cases: Vec<Case<'_>> = vec![
            (None, vec![&good[0]]),
            (None, vec![&good[0], &good[1], &good[2], &good[3]]),
            (Some(&good[3]), vec![&good[0], &good[1]]),
            (Some(&good[0]), vec![&good[0]]),
            (None, vec![&garbage, &good[1]]),
            (Some(&good[0]), vec![&good[1], &garbage, &good[2]]),
            (Some(&garbage), vec![&good[1]]),
            (None, vec![&garbage]),
        ];
        for (existing, operands) in cases {
            let all = SiblingsMerge.merge_all(b"k", existing, &operands);
            let each = merge_each(&SiblingsMerge, b"k", existing, &operands);
            assert_eq!(all, each, "existing {existing:?}, operands {operands:?}");
        }
        let all = SiblingsMerge.merge_all(b"k", None, &[&good[0], &good[1], &good[3]]);
        assert_eq!(decode(&all).expect("decodes").versions().len(), 3);
    }

    #[test]
    fn undecodable_input_is_quarantined_with_every_byte_kept() {
        let good = set("a", "1");
        let once = SiblingsMerge.merge(b"k", Some(&good), b"\x07garbage");
        assert_eq!(decode(&once), Err(CodecError::Quarantined { parts: 2 }));
        let twice = SiblingsMerge.merge(b"k", Some(&once), &set("b", "2"));
        assert_eq!(decode(&twice), Err(CodecError::Quarantined { parts: 3 }));
        let parts = quarantine_parts(&twice[1..]);
        assert_eq!(parts[0], good.as_slice());
        assert_eq!(parts[1], b"\x07garbage");
        assert_eq!(parts[2], set("b", "2").as_slice());
    }
}
