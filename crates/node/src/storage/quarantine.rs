//! The quarantine record: what the merge operator stores when it meets
//! bytes it cannot decode, so nothing is dropped (see `merge.rs`).
//!
//! Layout: the format byte `0xFF`, then each raw part with a u32
//! little-endian length.

/// Format byte of a quarantine record.
pub(crate) const FORMAT_QUARANTINE: u8 = 0xFF;

/// A quarantine record: the format byte, then each raw part with a u32
/// little-endian length. A quarantined `existing` is extended, not nested.
pub(super) fn quarantine(existing: &[u8], operand: &[u8]) -> Vec<u8> {
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
