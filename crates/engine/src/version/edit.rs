//! MANIFEST records: changes to the file set and the counters.
//!
//! Encoding: a sequence of `tag (varint)` fields. 1 log number, 2 next file
//! number, 3 last sequence (varints); 4 deleted file (level, number);
//! 5 added file (level, number, size, entries, smallest, largest with
//! length prefixes).

use std::path::Path;
use std::sync::Arc;

use super::FileMeta;
use crate::coding::{Reader, put_bytes, put_varint};

#[derive(Debug, Default, Clone)]
pub(crate) struct VersionEdit {
    /// WAL files below this number are fully flushed.
    pub(crate) log_number: Option<u64>,
    pub(crate) next_file_number: Option<u64>,
    pub(crate) last_sequence: Option<u64>,
    pub(crate) deleted: Vec<(usize, u64)>,
    pub(crate) added: Vec<(usize, Arc<FileMeta>)>,
}

const LOG_NUMBER: u64 = 1;
const NEXT_FILE: u64 = 2;
const LAST_SEQ: u64 = 3;
const DELETED: u64 = 4;
const ADDED: u64 = 5;

impl VersionEdit {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (tag, value) in [
            (LOG_NUMBER, self.log_number),
            (NEXT_FILE, self.next_file_number),
            (LAST_SEQ, self.last_sequence),
        ] {
            if let Some(value) = value {
                put_varint(&mut out, tag);
                put_varint(&mut out, value);
            }
        }
        for (level, number) in &self.deleted {
            put_varint(&mut out, DELETED);
            put_varint(&mut out, *level as u64);
            put_varint(&mut out, *number);
        }
        for (level, f) in &self.added {
            put_varint(&mut out, ADDED);
            put_varint(&mut out, *level as u64);
            put_varint(&mut out, f.number);
            put_varint(&mut out, f.size);
            put_varint(&mut out, f.entries);
            put_bytes(&mut out, &f.smallest);
            put_bytes(&mut out, &f.largest);
        }
        out
    }

    /// Decodes a record; `None` if malformed. `dir` locates added files and
    /// `num_levels` bounds level numbers.
    pub(crate) fn decode(bytes: &[u8], dir: &Path, num_levels: usize) -> Option<Self> {
        let mut r = Reader::new(bytes);
        let mut edit = Self::default();
        while !r.is_empty() {
            let level = |r: &mut Reader<'_>| r.varint_usize().filter(|&l| l < num_levels);
            match r.varint()? {
                LOG_NUMBER => edit.log_number = Some(r.varint()?),
                NEXT_FILE => edit.next_file_number = Some(r.varint()?),
                LAST_SEQ => edit.last_sequence = Some(r.varint()?),
                DELETED => {
                    let level = level(&mut r)?;
                    edit.deleted.push((level, r.varint()?));
                }
                ADDED => {
                    let level = level(&mut r)?;
                    let number = r.varint()?;
                    let size = r.varint()?;
                    let entries = r.varint()?;
                    let smallest = r.length_prefixed()?.to_vec();
                    let largest = r.length_prefixed()?.to_vec();
                    let path = super::file_path(dir, super::FileKind::Table, number);
                    let meta = FileMeta::new(number, size, entries, smallest, largest, path);
                    edit.added.push((level, Arc::new(meta)));
                }
                _ => return None,
            }
        }
        Some(edit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown_tags_and_levels() {
        let dir = Path::new("/db");
        let meta = FileMeta::new(
            7,
            100,
            3,
            b"a\0\0\0\0\0\0\x01\x01".to_vec(),
            b"z".to_vec(),
            "/db/000007.sst".into(),
        );
        let edit = VersionEdit {
            log_number: Some(4),
            next_file_number: Some(9),
            last_sequence: Some(1000),
            deleted: vec![(1, 3)],
            added: vec![(2, Arc::new(meta))],
        };
        let bytes = edit.encode();
        let back = VersionEdit::decode(&bytes, dir, 7).expect("decodes");
        assert_eq!(back.log_number, Some(4));
        assert_eq!(back.next_file_number, Some(9));
        assert_eq!(back.last_sequence, Some(1000));
        assert_eq!(back.deleted, vec![(1, 3)]);
        let (level, f) = &back.added[0];
        assert_eq!((*level, f.number, f.size, f.entries), (2, 7, 100, 3));
        assert_eq!(f.largest, b"z");
        assert_eq!(f.path, Path::new("/db/000007.sst"));

        assert!(
            VersionEdit::decode(&bytes, dir, 2).is_none(),
            "level 2 of 2"
        );
        assert!(VersionEdit::decode(&[99, 1], dir, 7).is_none());
        assert!(VersionEdit::decode(&bytes[..bytes.len() - 1], dir, 7).is_none());
    }
}
