//! The engine merge operator for sibling sets.
//!
//! Merging two stored sibling sets is their join (`Siblings::merge`), which
//! is associative as the engine requires. When either side cannot be
//! decoded, nothing is dropped: the result is a quarantine record holding
//! every raw input, reads of the key fail with `CodecError::Quarantined`,
//! and later merges append to it, so an operator can recover the bytes.

use strata_engine::MergeOperator;

use super::codec::{FORMAT_QUARANTINE, decode, encode};

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
}

/// A quarantine record: the format byte, then each raw part with a u32
/// little-endian length. A quarantined `existing` is extended, not nested.
fn quarantine(existing: &[u8], operand: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(existing.len() + operand.len() + 9);
    match existing.split_first() {
        Some((&FORMAT_QUARANTINE, _)) => out.extend_from_slice(existing),
        _ => {
            out.push(FORMAT_QUARANTINE);
            push_part(&mut out, existing);
        }
    }
    push_part(&mut out, operand);
    out
}

fn push_part(out: &mut Vec<u8>, part: &[u8]) {
    // Values are bounded by the request limits, far below 4 GiB.
    let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(part);
}

/// The raw parts of a quarantine record (after its format byte); a
/// truncated tail is returned as a final part.
pub(crate) fn quarantine_parts(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut parts = Vec::new();
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = (u32::from_le_bytes(*len) as usize).min(tail.len());
        let (part, next) = tail.split_at(len);
        parts.push(part);
        rest = next;
    }
    if !rest.is_empty() {
        parts.push(rest);
    }
    parts
}

#[cfg(test)]
mod tests {
    use strata_cluster::{Dot, NodeId, Siblings, Version, VersionVector};

    use super::*;
    use crate::storage::CodecError;

    fn set(node: &str, value: &str) -> Vec<u8> {
        encode(&Siblings::from_versions([Version {
            dot: Dot {
                node: NodeId::new(node).expect("id"),
                counter: 1,
            },
            context: VersionVector::new(),
            value: Some(value.as_bytes().to_vec()),
            timestamp_micros: 1,
            request_id: 0,
        }]))
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
