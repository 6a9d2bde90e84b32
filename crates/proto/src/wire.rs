//! Counting a repeated field on the wire, before a message is decoded.
//!
//! Decoding allocates per element: an empty `WriteOp` is 2 bytes on the
//! wire and over a hundred in memory, so a 64 MB request of them would
//! become gigabytes before any check on the decoded message could refuse
//! it. [`count`] walks the encoded bytes without allocating and says how
//! many elements a field holds, so a limit is checked against the wire.
//!
//! The walk accepts exactly the framing prost's decoder accepts (varints
//! of at most 10 bytes, field numbers `1..2^29`, wire types 0-5, groups
//! closed by their own number, lengths within the buffer), so a message
//! it refuses is one the decoder would refuse too.

/// Why the bytes are not a protobuf message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A varint longer than 10 bytes or past `u64::MAX`, or cut short.
    #[error("invalid varint")]
    Varint,
    /// A field number of 0 or past `2^29 - 1`, or an unknown wire type.
    #[error("invalid field key {0}")]
    Key(u64),
    /// A length or fixed-size field past the end of its message.
    #[error("a field runs past the end of its message")]
    Truncated,
    /// A group's end without its start, or a group left open.
    #[error("unbalanced group")]
    Group,
    /// Groups nested deeper than prost's recursion limit.
    #[error("groups nested too deep")]
    TooDeep,
}

/// Most groups nested in one another (prost's own recursion limit).
const MAX_GROUP_DEPTH: usize = 100;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const DELIMITED: u8 = 2;
const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const FIXED32: u8 = 5;

/// How many times the field at `path` occurs in the message `buf`: `[f]`
/// counts field `f` of the message itself, `[f, g]` counts field `g` in
/// every occurrence of sub-message field `f` (the decoder merges or
/// appends all of them, so all are counted). An empty path counts nothing.
///
/// # Errors
/// [`WireError`] when the framing of any part walked is malformed.
pub fn count(buf: &[u8], path: &[u32]) -> Result<usize, WireError> {
    let Some((&number, rest)) = path.split_first() else {
        return Ok(0);
    };
    let mut found = 0usize;
    let mut fields = Fields { buf };
    while let Some(field) = fields.next_field()? {
        if field.number != number {
            continue;
        }
        match (rest.is_empty(), field.payload) {
            (true, _) => found += 1,
            (false, Some(inner)) => found = found.saturating_add(count(inner, rest)?),
            // Not a sub-message: the decoder refuses the wire type.
            (false, None) => {}
        }
    }
    Ok(found)
}

/// One field: its number and, when length-delimited, its bytes.
struct Field<'a> {
    number: u32,
    payload: Option<&'a [u8]>,
}

/// The fields of one message, in order.
struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    fn next_field(&mut self) -> Result<Option<Field<'a>>, WireError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let (number, wire_type) = self.key()?;
        let payload = match wire_type {
            VARINT => {
                self.varint()?;
                None
            }
            FIXED64 => {
                self.take(8)?;
                None
            }
            FIXED32 => {
                self.take(4)?;
                None
            }
            DELIMITED => {
                let len = usize::try_from(self.varint()?).map_err(|_| WireError::Truncated)?;
                Some(self.take(len)?)
            }
            START_GROUP => {
                self.skip_group(number)?;
                None
            }
            _ => return Err(WireError::Group),
        };
        Ok(Some(Field { number, payload }))
    }

    fn key(&mut self) -> Result<(u32, u8), WireError> {
        let key = self.varint()?;
        let wire_type = u8::try_from(key & 7).expect("three bits");
        let number = key >> 3;
        if key > u64::from(u32::MAX) || number == 0 || wire_type > FIXED32 {
            return Err(WireError::Key(key));
        }
        Ok((u32::try_from(number).expect("checked above"), wire_type))
    }

    /// Skips to the end of the group `number` whose start was just read.
    fn skip_group(&mut self, number: u32) -> Result<(), WireError> {
        let mut open = vec![number];
        while let Some(&innermost) = open.last() {
            if self.buf.is_empty() {
                return Err(WireError::Group);
            }
            let (inner, wire_type) = self.key()?;
            match wire_type {
                VARINT => {
                    self.varint()?;
                }
                FIXED64 => {
                    self.take(8)?;
                }
                FIXED32 => {
                    self.take(4)?;
                }
                DELIMITED => {
                    let len = usize::try_from(self.varint()?).map_err(|_| WireError::Truncated)?;
                    self.take(len)?;
                }
                START_GROUP if open.len() >= MAX_GROUP_DEPTH => return Err(WireError::TooDeep),
                START_GROUP => open.push(inner),
                END_GROUP if inner == innermost => {
                    open.pop();
                }
                _ => return Err(WireError::Group),
            }
        }
        Ok(())
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if len > self.buf.len() {
            return Err(WireError::Truncated);
        }
        let (taken, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(taken)
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for (i, &byte) in self.buf.iter().take(10).enumerate() {
            // The tenth byte may only carry the top bit of a u64.
            if i == 9 && byte > 1 {
                return Err(WireError::Varint);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(WireError::Varint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1;
    use proptest::prelude::*;
    use prost::Message as _;

    fn batch_get(keys: usize) -> Vec<u8> {
        v1::BatchGetRequest {
            keys: vec![bytes::Bytes::from_static(b"k"); keys],
            consistency: Some(v1::Consistency::named(v1::ConsistencyLevel::Quorum)),
        }
        .encode_to_vec()
    }

    #[test]
    fn counts_a_repeated_field_and_a_nested_one() {
        assert_eq!(count(&batch_get(0), &[1]), Ok(0));
        assert_eq!(count(&batch_get(1000), &[1]), Ok(1000));
        assert_eq!(count(&batch_get(3), &[2]), Ok(1));
        assert_eq!(count(&batch_get(3), &[]), Ok(0));
        let context = v1::CausalContext {
            clock: Some(v1::VectorClock {
                entries: vec![v1::ClockEntry::default(); 7],
            }),
            key_token: 9,
        }
        .encode_to_vec();
        assert_eq!(count(&context, &[1, 1]), Ok(7));
        // A sub-message field sent twice: the decoder joins both.
        let twice = [context.clone(), context].concat();
        assert_eq!(count(&twice, &[1, 1]), Ok(14));
        let decoded = v1::CausalContext::decode(&twice[..]).expect("decodes");
        assert_eq!(decoded.clock.expect("clock").entries.len(), 14);
    }

    #[test]
    fn malformed_framing_is_an_error_not_a_count() {
        // A length past the end.
        assert_eq!(count(&[0x0a, 5, 1], &[1]), Err(WireError::Truncated));
        // Field number 0.
        assert_eq!(count(&[0x02, 0], &[1]), Err(WireError::Key(2)));
        // Wire types 6 and 7.
        assert_eq!(count(&[0x0e], &[1]), Err(WireError::Key(0x0e)));
        // A varint of 11 bytes.
        assert_eq!(
            count(
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
                ],
                &[1]
            ),
            Err(WireError::Varint)
        );
        // A tenth byte past the top bit of a u64 (prost refuses it too).
        let ten = [vec![0x08], vec![0xff; 9], vec![0x02]].concat();
        assert_eq!(count(&ten, &[1]), Err(WireError::Varint));
        assert!(v1::BatchGetRequest::decode(&ten[..]).is_err());
        let top_bit = [vec![0x08], vec![0xff; 9], vec![0x01]].concat();
        assert_eq!(count(&top_bit, &[1]), Ok(1));
        // An end of group with no start, a group never closed.
        assert_eq!(count(&[0x0c], &[1]), Err(WireError::Group));
        assert_eq!(count(&[0x0b, 0x08, 1], &[1]), Err(WireError::Group));
        // A group closed by another number's end.
        assert_eq!(count(&[0x0b, 0x14], &[1]), Err(WireError::Group));
        // Groups nested past the limit.
        let deep = [
            vec![0x0b; MAX_GROUP_DEPTH + 1],
            vec![0x0c; MAX_GROUP_DEPTH + 1],
        ]
        .concat();
        assert_eq!(count(&deep, &[2]), Err(WireError::TooDeep));
        // Malformed bytes inside a counted sub-message are found too.
        assert_eq!(
            count(&[0x0a, 2, 0x0a, 9], &[1, 1]),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn groups_in_unknown_fields_are_skipped_as_the_decoder_skips_them() {
        // Field 9 as a group holding a varint and a nested group, then one key.
        let bytes = [0x4b, 0x08, 1, 0x53, 0x54, 0x4c, 0x0a, 1, b'k'];
        assert_eq!(count(&bytes, &[1]), Ok(1));
        let decoded = v1::BatchGetRequest::decode(&bytes[..]).expect("decodes");
        assert_eq!(decoded.keys.len(), 1);
    }

    /// Encoded fields numbered 1 to 3 of every wire type, length-delimited
    /// ones holding such fields again (`depth` levels down) or raw bytes:
    /// bytes the decoders mostly accept, with elements to count.
    fn fields(depth: u32) -> BoxedStrategy<Vec<u8>> {
        let leaf = prop_oneof![
            (1u8..4, any::<u64>()).prop_map(|(f, v)| {
                let mut out = vec![f << 3];
                prost::encoding::encode_varint(v, &mut out);
                out
            }),
            (1u8..4).prop_map(|f| [vec![(f << 3) | 1], vec![7; 8]].concat()),
            (1u8..4).prop_map(|f| [vec![(f << 3) | 5], vec![7; 4]].concat()),
            (1u8..4, proptest::collection::vec(any::<u8>(), 0..6))
                .prop_map(|(f, b)| delimited(f, &b)),
        ];
        let field = if depth == 0 {
            leaf.boxed()
        } else {
            prop_oneof![
                3 => leaf,
                1 => (1u8..4, fields(depth - 1)).prop_map(|(f, inner)| delimited(f, &inner)),
            ]
            .boxed()
        };
        proptest::collection::vec(field, 0..12)
            .prop_map(|fs| fs.concat())
            .boxed()
    }

    fn delimited(field: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(field << 3) | 2];
        prost::encoding::encode_varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }

    /// Where `bytes` decode as a batch or a context, the walk counts the
    /// keys or clock entries the decoder decodes.
    fn counts_what_decodes(bytes: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(decoded) = v1::BatchGetRequest::decode(bytes) {
            prop_assert_eq!(count(bytes, &[1]), Ok(decoded.keys.len()));
        }
        if let Ok(decoded) = v1::CausalContext::decode(bytes) {
            let entries = decoded.clock.map_or(0, |c| c.entries.len());
            prop_assert_eq!(count(bytes, &[1, 1]), Ok(entries));
        }
        Ok(())
    }

    proptest! {
        /// On structured bytes the decoder accepts, the walk counts what
        /// it decodes; on what it refuses, the walk may refuse or count.
        #[test]
        fn agrees_with_the_decoder_on_fields(bytes in fields(2)) {
            counts_what_decodes(&bytes)?;
        }

        /// On any bytes the decoder accepts, the walk accepts them and
        /// counts what the decoder decodes.
        #[test]
        fn agrees_with_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            counts_what_decodes(&bytes)?;
        }

        /// Contexts sent as several parts, which the decoder joins: every
        /// part's entries are counted.
        #[test]
        fn counts_the_entries_of_every_part(parts in proptest::collection::vec(
            (0usize..20, proptest::collection::vec(any::<u8>(), 0..8)), 0..5)
        ) {
            let mut bytes = Vec::new();
            for (entries, junk) in &parts {
                bytes.extend(v1::CausalContext {
                    clock: Some(v1::VectorClock {
                        entries: vec![v1::ClockEntry::default(); *entries],
                    }),
                    key_token: 1,
                }.encode_to_vec());
                bytes.extend(delimited(15, junk));
            }
            let decoded = v1::CausalContext::decode(&bytes[..]).expect("decodes");
            let entries = decoded.clock.map_or(0, |c| c.entries.len());
            prop_assert_eq!(entries, parts.iter().map(|(n, _)| n).sum::<usize>());
            prop_assert_eq!(count(&bytes, &[1, 1]), Ok(entries));
        }

        /// Well-formed messages with any number of elements and unknown
        /// fields around them.
        #[test]
        fn counts_encoded_batches(keys in 0usize..300, junk in proptest::collection::vec(any::<u8>(), 0..8)) {
            let mut bytes = batch_get(keys);
            // An unknown length-delimited field 15 holding arbitrary bytes.
            bytes.extend([0x7a, u8::try_from(junk.len()).expect("small")]);
            bytes.extend(&junk);
            prop_assert_eq!(count(&bytes, &[1]), Ok(keys));
        }
    }
}
