//! The stored form of a sibling set, and conversions to the wire messages.
//!
//! Stored value: one format byte, then the protobuf `strata.v1.KeyVersions`
//! (key left empty: the engine key holds it). Format `0x01` is a sibling
//! set; format `0xFF` is a quarantine record written by the merge operator
//! when it met bytes it could not decode (see `merge.rs`).

use prost::Message as _;
use strata_cluster::{Dot, NodeId, Siblings, Version, VersionVector};
use strata_proto::v1;

pub(crate) const FORMAT_SIBLINGS: u8 = 0x01;
use super::quarantine::FORMAT_QUARANTINE;

/// Why stored or received versions could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// An empty value, or an unknown format byte.
    #[error("unknown stored format {0:?}")]
    UnknownFormat(Option<u8>),
    /// The protobuf did not parse.
    #[error("malformed versions: {0}")]
    Malformed(String),
    /// A node id in a clock is not a valid id.
    #[error("invalid node id in a clock: {0}")]
    InvalidNodeId(String),
    /// A version without its dot.
    #[error("version without a dot")]
    MissingDot,
    /// More versions in one sibling set, or entries in one clock, than any
    /// cluster makes ([`MAX_VERSIONS`], [`MAX_CLOCK_ENTRIES`]): refused
    /// before the work to join them, which grows with their square.
    #[error("{count} {what}; at most {limit} are accepted")]
    TooMany {
        /// What there are too many of.
        what: &'static str,
        /// How many there were.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The merge operator met undecodable bytes and kept them, unmerged,
    /// for manual recovery. `parts` is how many raw values are held.
    #[error("value quarantined after a failed merge ({parts} raw parts kept)")]
    Quarantined {
        /// Raw values held in the quarantine record.
        parts: usize,
    },
}

/// Most versions one sibling set may hold, from a peer or from disk. A
/// coordinator refuses blind writes past 100 siblings
/// (`coordinator::MAX_SIBLINGS`), so only sets joined across many
/// partitions come near; joining n versions costs O(n²) (10,000: ~0.25 s).
pub const MAX_VERSIONS: usize = 10_000;

/// Most entries one clock (a version's context, a client's context) may
/// hold: one per node that coordinated a write to the key, pruned past 64
/// (`strata_cluster::PrunePolicy`).
pub const MAX_CLOCK_ENTRIES: usize = 4096;

fn too_many(what: &'static str, count: usize, limit: usize) -> Result<(), CodecError> {
    if count > limit {
        Err(CodecError::TooMany { what, count, limit })
    } else {
        Ok(())
    }
}

fn node_id(id: String) -> Result<NodeId, CodecError> {
    NodeId::new(id).map_err(|e| CodecError::InvalidNodeId(e.to_string()))
}

/// Checks a clock's entry count against [`MAX_CLOCK_ENTRIES`].
///
/// # Errors
/// [`CodecError::TooMany`].
pub fn check_clock_entries(entries: usize) -> Result<(), CodecError> {
    too_many("clock entries", entries, MAX_CLOCK_ENTRIES)
}

/// A version vector as the wire carries it.
#[must_use]
pub fn clock_to_proto(clock: &VersionVector) -> v1::VectorClock {
    v1::VectorClock {
        entries: clock
            .entries()
            .map(|(node, counter, updated)| v1::ClockEntry {
                node_id: node.to_string(),
                counter,
                updated_at_micros: updated,
            })
            .collect(),
    }
}

/// A version vector from the wire, validated.
///
/// # Errors
/// [`CodecError::InvalidNodeId`], [`CodecError::TooMany`].
pub fn clock_from_proto(clock: v1::VectorClock) -> Result<VersionVector, CodecError> {
    check_clock_entries(clock.entries.len())?;
    let entries = clock
        .entries
        .into_iter()
        .map(|e| Ok((node_id(e.node_id)?, e.counter, e.updated_at_micros)))
        .collect::<Result<Vec<_>, CodecError>>()?;
    Ok(VersionVector::from_entries(entries))
}

/// A version as the wire carries it.
#[must_use]
pub fn version_to_proto(v: &Version) -> v1::Version {
    v1::Version {
        clock: Some(clock_to_proto(&v.context)),
        tombstone: v.value.is_none(),
        value: v.value.clone().unwrap_or_default(),
        timestamp_micros: v.timestamp_micros,
        dot: Some(v1::ClockEntry {
            node_id: v.dot.node.to_string(),
            counter: v.dot.counter,
            updated_at_micros: 0,
        }),
        request_id: v.request_id,
    }
}

/// A version from the wire, validated.
///
/// # Errors
/// [`CodecError::MissingDot`] or [`CodecError::InvalidNodeId`].
pub fn version_from_proto(v: v1::Version) -> Result<Version, CodecError> {
    let dot = v.dot.ok_or(CodecError::MissingDot)?;
    let context = clock_from_proto(v.clock.unwrap_or_default())?;
    Ok(Version {
        dot: Dot {
            node: node_id(dot.node_id)?,
            counter: dot.counter,
        },
        context,
        value: (!v.tombstone).then_some(v.value),
        timestamp_micros: v.timestamp_micros,
        request_id: v.request_id,
    })
}

/// The stored form of `siblings`.
#[must_use]
pub fn encode(siblings: &Siblings) -> Vec<u8> {
    let message = v1::KeyVersions {
        key: Default::default(),
        versions: siblings.versions().iter().map(version_to_proto).collect(),
    };
    let mut out = Vec::with_capacity(1 + message.encoded_len());
    out.push(FORMAT_SIBLINGS);
    message.encode(&mut out).expect("a Vec grows as needed");
    out
}

/// Whether a stored value claims to be a sibling set (its format byte),
/// without decoding it: a quarantine record or an empty value is not.
#[must_use]
pub(super) fn is_sibling_set(stored: &[u8]) -> bool {
    stored.first() == Some(&FORMAT_SIBLINGS)
}

/// Decodes a stored value.
///
/// # Errors
/// See [`CodecError`]; never panics on any input.
pub fn decode(bytes: &[u8]) -> Result<Siblings, CodecError> {
    match bytes.split_first() {
        Some((&FORMAT_SIBLINGS, rest)) => siblings_of(rest),
        Some((&FORMAT_QUARANTINE, rest)) => Err(CodecError::Quarantined {
            parts: super::quarantine::quarantine_parts(rest).len(),
        }),
        other => Err(CodecError::UnknownFormat(other.map(|(b, _)| *b))),
    }
}

/// [`decode`] of a value the caller owns: the versions' values are slices
/// of `bytes`, not copies (a 1 MB value is not copied twice per read).
///
/// # Errors
/// See [`CodecError`]; never panics on any input.
pub fn decode_owned(bytes: Vec<u8>) -> Result<Siblings, CodecError> {
    if is_sibling_set(&bytes) {
        siblings_of(bytes::Bytes::from(bytes).slice(1..))
    } else {
        decode(&bytes)
    }
}

/// The sibling set in `message`, a `KeyVersions` without its format byte.
/// Decoded from [`bytes::Bytes`], values share its buffer.
fn siblings_of(message: impl bytes::Buf) -> Result<Siblings, CodecError> {
    let message =
        v1::KeyVersions::decode(message).map_err(|e| CodecError::Malformed(e.to_string()))?;
    siblings_from_proto(message.versions)
}

/// The sibling set of versions from the wire (a peer's write, read answer,
/// hint, stream or repair), validated.
///
/// # Errors
/// See [`CodecError`].
pub fn siblings_from_proto(versions: Vec<v1::Version>) -> Result<Siblings, CodecError> {
    too_many("versions in a sibling set", versions.len(), MAX_VERSIONS)?;
    let versions = versions
        .into_iter()
        .map(version_from_proto)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Siblings::from_versions(versions))
}

/// Checks that a stored value (from a peer) decodes, as [`decode`] would,
/// without building the sibling set: values stay where they are in
/// `stored` (no copy), only clocks' node ids are read.
///
/// # Errors
/// Exactly when [`decode`] fails, with the same error.
pub fn validate(stored: &prost::bytes::Bytes) -> Result<(), CodecError> {
    if stored.first() != Some(&FORMAT_SIBLINGS) {
        return decode(stored).map(drop);
    }
    let message = v1::KeyVersions::decode(stored.slice(1..))
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    too_many(
        "versions in a sibling set",
        message.versions.len(),
        MAX_VERSIONS,
    )?;
    for version in message.versions {
        let dot = version.dot.ok_or(CodecError::MissingDot)?;
        let clock = version.clock.unwrap_or_default();
        too_many("clock entries", clock.entries.len(), MAX_CLOCK_ENTRIES)?;
        for entry in clock.entries {
            node_id(entry.node_id)?;
        }
        node_id(dot.node_id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `validate` and `decode` agree on `bytes`.
    fn agree(bytes: &[u8]) {
        let shared = prost::bytes::Bytes::copy_from_slice(bytes);
        assert_eq!(validate(&shared), decode(bytes).map(drop), "{bytes:?}");
    }

    #[test]
    fn sibling_sets_round_trip_with_tombstones_and_contexts() {
        let n = |s: &str| NodeId::new(s).expect("id");
        let context = VersionVector::from_entries([(n("a"), 3, 10), (n("b"), 1, 11)]);
        let siblings = Siblings::from_versions([
            Version {
                dot: Dot {
                    node: n("c"),
                    counter: 9,
                },
                context: context.clone(),
                value: Some(bytes::Bytes::from_static(b"value")),
                timestamp_micros: 12,
                request_id: 77,
            },
            Version {
                dot: Dot {
                    node: n("d"),
                    counter: 1,
                },
                context,
                value: None,
                timestamp_micros: 13,
                request_id: 0,
            },
        ]);
        assert_eq!(decode(&encode(&siblings)), Ok(siblings.clone()));
        assert_eq!(decode_owned(encode(&siblings)), Ok(siblings));
        assert_eq!(
            decode_owned(vec![7, 1, 2]),
            Err(CodecError::UnknownFormat(Some(7)))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(decode(&[]), Err(CodecError::UnknownFormat(None)));
        assert_eq!(decode(&[7, 1, 2]), Err(CodecError::UnknownFormat(Some(7))));
        assert!(matches!(
            decode(&[FORMAT_SIBLINGS, 0xff, 0xff]),
            Err(CodecError::Malformed(_))
        ));
        let no_dot = v1::KeyVersions {
            key: Default::default(),
            versions: vec![v1::Version::default()],
        };
        let mut bytes = vec![FORMAT_SIBLINGS];
        bytes.extend(no_dot.encode_to_vec());
        assert_eq!(decode(&bytes), Err(CodecError::MissingDot));
    }

    /// Found with `fuzz/src/bin` probes: a 1.7 MB set of 160,000 versions
    /// took 99 s to decode, a 2.2 MB client context of 160,000 entries in
    /// reverse order 18 s, on a thread that serves requests.
    #[test]
    fn too_many_versions_or_clock_entries_are_refused_before_the_work() {
        let entry = |i: usize| v1::ClockEntry {
            node_id: format!("n{i}"),
            counter: 1,
            updated_at_micros: 0,
        };
        let version = |i: usize| v1::Version {
            dot: Some(entry(i)),
            ..v1::Version::default()
        };
        let stored = |versions: Vec<v1::Version>| {
            let message = v1::KeyVersions {
                key: Default::default(),
                versions,
            };
            [vec![FORMAT_SIBLINGS], message.encode_to_vec()].concat()
        };
        let many = stored((0..=MAX_VERSIONS).map(version).collect());
        let refused = Err(CodecError::TooMany {
            what: "versions in a sibling set",
            count: MAX_VERSIONS + 1,
            limit: MAX_VERSIONS,
        });
        assert_eq!(decode(&many).map(drop), refused);
        agree(&many);

        // A clock at the limit, in reverse order, reads; one more does not.
        let clock = |n: usize| v1::VectorClock {
            entries: (0..n).rev().map(entry).collect(),
        };
        let at_limit = clock_from_proto(clock(MAX_CLOCK_ENTRIES)).expect("at the limit");
        assert_eq!(at_limit.len(), MAX_CLOCK_ENTRIES);
        assert!(at_limit.entries().is_sorted_by(|a, b| a.0 < b.0));
        assert_eq!(
            clock_from_proto(clock(MAX_CLOCK_ENTRIES + 1)),
            Err(CodecError::TooMany {
                what: "clock entries",
                count: MAX_CLOCK_ENTRIES + 1,
                limit: MAX_CLOCK_ENTRIES,
            })
        );
        let mut deep = version(0);
        deep.clock = Some(clock(MAX_CLOCK_ENTRIES + 1));
        let deep = stored(vec![deep]);
        assert!(matches!(decode(&deep), Err(CodecError::TooMany { .. })));
        agree(&deep);
    }

    #[test]
    fn validate_agrees_with_decode_on_good_bad_and_random_input() {
        let n = |s: &str| NodeId::new(s).expect("id");
        let good = encode(&Siblings::from_versions([Version {
            dot: Dot {
                node: n("a"),
                counter: 1,
            },
            context: VersionVector::from_entries([(n("b"), 2, 3)]),
            value: Some(bytes::Bytes::from_static(b"v")),
            timestamp_micros: 1,
            request_id: 0,
        }]));
        agree(&good);
        assert!(decode(&good).is_ok());
        let bad_id = v1::KeyVersions {
            key: Default::default(),
            versions: vec![v1::Version {
                dot: Some(v1::ClockEntry {
                    node_id: "not a valid id!".into(),
                    counter: 1,
                    updated_at_micros: 0,
                }),
                ..v1::Version::default()
            }],
        };
        let mut bytes = vec![FORMAT_SIBLINGS];
        bytes.extend(bad_id.encode_to_vec());
        agree(&bytes);
        assert!(decode(&bytes).is_err());
        for input in [
            &[][..],
            &[7, 1, 2],
            &[FORMAT_SIBLINGS, 0xff, 0xff],
            &[0xff, 1, 2],
        ] {
            agree(input);
        }
        // Every prefix and every one-byte change of a good value.
        for cut in 0..good.len() {
            agree(&good[..cut]);
            let mut flipped = good.clone();
            flipped[cut] ^= 0x41;
            agree(&flipped);
        }
    }
}
