//! Atomic write batches and their WAL encoding.
//!
//! Payload: `first seq (u64 LE) | count (u32 LE) | entries`, each entry
//! `kind (u8) | key (varint len + bytes) | value (varint len + bytes)`, a
//! delete having no value. Entry `i` gets sequence number `first seq + i`.

use crate::coding::{Reader, put_bytes};
use crate::key::{Kind, SeqNo};

/// One decoded batch entry: sequence number, kind, key, value.
pub(crate) type DecodedEntry<'a> = (SeqNo, Kind, &'a [u8], &'a [u8]);

/// A group of puts, deletes and merges applied atomically: after a crash,
/// either all of a batch is recovered or none of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    entries: Vec<u8>,
    count: u32,
    user_bytes: usize,
}

impl WriteBatch {
    /// An empty batch.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> &mut Self {
        self.push(Kind::Put, key, Some(value))
    }

    /// Deletes `key`.
    pub fn delete(&mut self, key: &[u8]) -> &mut Self {
        self.push(Kind::Delete, key, None)
    }

    /// Appends a merge operand for `key`, combined with the existing value by
    /// the database's merge operator on read and during compaction.
    pub fn merge(&mut self, key: &[u8], operand: &[u8]) -> &mut Self {
        self.push(Kind::Merge, key, Some(operand))
    }

    fn push(&mut self, kind: Kind, key: &[u8], value: Option<&[u8]>) -> &mut Self {
        // One growth per entry at most (a one-entry batch: one allocation of
        // the right size), not one per field.
        const VARINTS: usize = 2 * 10;
        self.entries
            .reserve(1 + VARINTS + key.len() + value.map_or(0, <[u8]>::len));
        self.entries.push(kind as u8);
        put_bytes(&mut self.entries, key);
        if let Some(value) = value {
            put_bytes(&mut self.entries, value);
        }
        self.count += 1;
        self.user_bytes += key.len() + value.map_or(0, <[u8]>::len);
        self
    }

    /// Number of operations in the batch.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the batch holds no operation.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of keys and values written by the batch.
    pub(crate) fn user_bytes(&self) -> usize {
        self.user_bytes
    }

    pub(crate) fn encoded_len(&self) -> usize {
        12 + self.entries.len()
    }

    pub(crate) fn encode(&self, first_seq: SeqNo, out: &mut Vec<u8>) {
        out.extend_from_slice(&first_seq.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.entries);
    }

    /// Entries of an encoded batch with their sequence numbers.
    pub(crate) fn decode(payload: &[u8]) -> Option<Vec<DecodedEntry<'_>>> {
        let mut out = Vec::new();
        Self::decode_each(payload, |entry| out.push(entry))?;
        Some(out)
    }

    /// Calls `f` with each entry of an encoded batch, without allocating.
    /// `None` (after calling `f` for the valid prefix) if it is malformed,
    /// so validate first where a partial application would matter.
    pub(crate) fn decode_each<'a>(
        payload: &'a [u8],
        mut f: impl FnMut(DecodedEntry<'a>),
    ) -> Option<()> {
        let mut r = Reader::new(payload);
        let first_seq = r.u64()?;
        let count = r.u32()?;
        for i in 0..u64::from(count) {
            let kind = Kind::from_u8(r.u8()?)?;
            let key = r.length_prefixed()?;
            let value = match kind {
                Kind::Delete => &[][..],
                Kind::Put | Kind::Merge => r.length_prefixed()?,
            };
            f((first_seq + i, kind, key, value));
        }
        r.is_empty().then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes_with_consecutive_sequence_numbers() {
        let mut batch = WriteBatch::new();
        batch.put(b"a", b"1").delete(b"b").merge(b"c", b"+");
        let mut buf = Vec::new();
        batch.encode(100, &mut buf);
        assert_eq!(buf.len(), batch.encoded_len());
        let entries = WriteBatch::decode(&buf).expect("decodes");
        assert_eq!(
            entries,
            vec![
                (100, Kind::Put, &b"a"[..], &b"1"[..]),
                (101, Kind::Delete, b"b", b""),
                (102, Kind::Merge, b"c", b"+"),
            ]
        );
        assert_eq!(batch.user_bytes(), 5);
    }

    #[test]
    fn truncated_or_padded_payloads_do_not_decode() {
        let mut batch = WriteBatch::new();
        batch.put(b"key", b"value");
        let mut buf = Vec::new();
        batch.encode(1, &mut buf);
        for cut in 0..buf.len() {
            assert!(WriteBatch::decode(&buf[..cut]).is_none(), "cut {cut}");
        }
        buf.push(0);
        assert!(WriteBatch::decode(&buf).is_none());
    }
}
