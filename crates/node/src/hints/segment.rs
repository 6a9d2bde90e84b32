//! The on-disk form of hints: append-only segment files.
//!
//! A segment starts with the 8-byte magic `STRHINT1`, then records:
//! `len: u32 LE | crc32c(payload): u32 LE | payload`, where the payload is
//! `stored_at_micros: u64 LE` followed by a protobuf `strata.v1.KeyVersions`
//! (the key and the sibling set the coordinator replicated). Parsing is a
//! pure function: it returns every record before the first damaged one
//! and says where and why it stopped.

use prost::Message as _;
use strata_proto::v1::KeyVersions;

/// First bytes of every segment.
pub(super) const MAGIC: &[u8; 8] = b"STRHINT1";
const HEADER: usize = 8;
/// A record larger than this is damage, not data (values are at most a
/// few MiB; a key's sibling set is bounded by the sibling limit).
const MAX_RECORD: usize = 512 << 20;

/// One stored hint.
#[derive(Debug, Clone, PartialEq)]
pub struct HintRecord {
    /// Wall-clock microseconds when the hint was stored.
    pub stored_at_micros: u64,
    /// The key and the versions to merge into the target.
    pub entry: KeyVersions,
}

/// Where and why parsing stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the first unreadable record.
    pub offset: usize,
    /// What was wrong.
    pub reason: String,
}

/// The bytes of one record.
#[must_use]
pub(super) fn encode(record: &HintRecord) -> Vec<u8> {
    let mut payload = Vec::with_capacity(8 + record.entry.encoded_len());
    payload.extend_from_slice(&record.stored_at_micros.to_le_bytes());
    record
        .entry
        .encode(&mut payload)
        .expect("a Vec grows as needed");
    let len = u32::try_from(payload.len()).expect("hint records are far below 4 GiB");
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Every record of a segment up to the first damaged one.
#[must_use]
pub fn parse(bytes: &[u8]) -> (Vec<HintRecord>, Option<Damage>) {
    let mut records = Vec::new();
    let damage = |offset, reason: &str| {
        Some(Damage {
            offset,
            reason: reason.to_owned(),
        })
    };
    if bytes.get(..MAGIC.len()) != Some(MAGIC.as_slice()) {
        return (records, damage(0, "not a hint segment (bad magic)"));
    }
    let mut at = MAGIC.len();
    while at < bytes.len() {
        let Some(header) = bytes.get(at..at + HEADER) else {
            return (records, damage(at, "truncated record header"));
        };
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if !(8..=MAX_RECORD).contains(&len) {
            return (records, damage(at, "implausible record length"));
        }
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            return (records, damage(at, "truncated record"));
        };
        if crc32c::crc32c(payload) != crc {
            return (records, damage(at, "checksum mismatch"));
        }
        let stored_at_micros = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
        let Ok(entry) = KeyVersions::decode(&payload[8..]) else {
            return (records, damage(at, "undecodable entry"));
        };
        records.push(HintRecord {
            stored_at_micros,
            entry,
        });
        at += HEADER + len;
    }
    (records, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> HintRecord {
        HintRecord {
            stored_at_micros: 1_000 + i,
            entry: KeyVersions {
                key: format!("key-{i}").into_bytes().into(),
                versions: Vec::new(),
            },
        }
    }

    fn segment(n: u64) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        for i in 0..n {
            bytes.extend(encode(&record(i)));
        }
        bytes
    }

    #[test]
    fn records_round_trip() {
        let (records, damage) = parse(&segment(3));
        assert_eq!(damage, None);
        assert_eq!(records, (0..3).map(record).collect::<Vec<_>>());
        assert_eq!(parse(MAGIC), (Vec::new(), None));
    }

    #[test]
    fn damage_stops_parsing_and_keeps_what_came_before() {
        let good = segment(3);
        let second = MAGIC.len() + encode(&record(0)).len();

        let mut flipped = good.clone();
        flipped[second + HEADER + 3] ^= 0x40;
        let (records, damage) = parse(&flipped);
        assert_eq!(records, [record(0)]);
        assert_eq!(
            damage,
            Some(Damage {
                offset: second,
                reason: "checksum mismatch".into()
            })
        );

        let (records, damage) = parse(&good[..good.len() - 2]);
        assert_eq!(records.len(), 2);
        assert_eq!(damage.expect("torn tail").reason, "truncated record");

        let (records, damage) = parse(b"garbage!and more");
        assert!(records.is_empty());
        assert_eq!(damage.expect("bad magic").offset, 0);

        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 4]);
        assert_eq!(
            parse(&huge).1.expect("length").reason,
            "implausible record length"
        );
    }
}
