//! The engine directory `engine_files` starts from, and how its inputs
//! map to files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use strata_engine::{Db, Durability, MergeOperator, Options, WalRecovery};

/// `content` as framed records: each a little-endian u16 length and that
/// many payload bytes (the last one takes what is left).
pub fn frame(mut content: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (len, rest) = match content {
            [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
            rest => (rest.len(), &rest[..0]),
        };
        let (payload, rest) = rest.split_at(len.min(rest.len()));
        let len = u32::try_from(payload.len()).expect("small").to_le_bytes();
        out.extend_from_slice(&len);
        out.extend_from_slice(&crc32c::crc32c(&len).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        out.extend_from_slice(payload);
        content = rest;
    }
    out
}

/// Appends operands to the value: merge chains to resolve on reads and in
/// compaction.
#[derive(Debug)]
struct Append;

impl MergeOperator for Append {
    fn merge(&self, _key: &[u8], existing: Option<&[u8]>, operand: &[u8]) -> Vec<u8> {
        let mut value = existing.unwrap_or_default().to_vec();
        value.extend_from_slice(operand);
        value
    }
}

pub fn options(wal_recovery: WalRecovery) -> Options {
    Options {
        durability: Durability::None,
        memtable_bytes: 4096,
        block_bytes: 256,
        l0_compaction_trigger: 2,
        target_file_bytes: 4096,
        level_base_bytes: 16 << 10,
        block_cache_bytes: 64 << 10,
        direct_io_for_ingest: false,
        merge_operator: Some(Arc::new(Append)),
        wal_recovery,
        ..Options::default()
    }
}

pub struct Seed {
    pub dir: tempfile::TempDir,
    /// Every file of the database, sorted.
    pub files: Vec<PathBuf>,
}

/// A database with tables on level 1 (compacted) and level 0, merge
/// chains, tombstones, and writes only its log holds.
pub fn seed() -> &'static Seed {
    static SEED: OnceLock<Seed> = OnceLock::new();
    SEED.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path(), options(WalRecovery::Strict)).expect("open");
        let write = |i: usize| {
            let key = format!("key{i:04}");
            match i % 7 {
                0 => db.delete(key.as_bytes()),
                3 => db.merge(key.as_bytes(), b"+op"),
                _ => db.put(key.as_bytes(), &vec![b'a' + (i % 26) as u8; i % 90]),
            }
            .expect("write");
        };
        (0..300).for_each(write);
        db.flush().expect("flush");
        db.compact_range(None, None).expect("compact");
        (0..300).step_by(3).for_each(write);
        db.flush().expect("flush");
        (0..300).step_by(11).for_each(write);
        // Dropped, not closed: the last writes stay in the log only.
        drop(db);
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .map(|e| PathBuf::from(e.expect("entry").file_name()))
            .filter(|name| name.to_str() != Some("LOCK"))
            .collect();
        files.sort();
        Seed { dir, files }
    })
}

/// Whether `file` is made of checksummed records (a log or a manifest).
#[must_use]
pub fn is_record_file(file: &Path) -> bool {
    let name = file.to_string_lossy();
    name.ends_with(".log") || name.starts_with("MANIFEST")
}

/// One input per file of the seed database that reproduces it as it is:
/// the file's records in [`frame`]'s form for logs and manifests, its
/// bytes otherwise; and each log and manifest raw as well.
#[must_use]
pub fn seed_inputs() -> Vec<Vec<u8>> {
    let seed = seed();
    let mut inputs = Vec::new();
    for (i, file) in seed.files.iter().enumerate() {
        let selector = u8::try_from(i).expect("fewer than 64 files");
        let bytes = std::fs::read(seed.dir.path().join(file)).expect("read seed file");
        if is_record_file(file) {
            let mut input = vec![selector];
            input.extend(unframe(&bytes));
            inputs.push(input);
            inputs.push([&[selector | 0x80][..], &bytes].concat());
        } else {
            inputs.push([&[selector][..], &bytes].concat());
        }
    }
    inputs
}

/// The inverse of [`frame`] for a well-formed file (zeros after the last
/// record, where logs are preallocated, end it).
fn unframe(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while bytes.len() >= 12 {
        let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
        if len == 0 || bytes.len() < 12 + len {
            break;
        }
        let len16 = u16::try_from(len).expect("seed records are small");
        out.extend_from_slice(&len16.to_le_bytes());
        out.extend_from_slice(&bytes[12..12 + len]);
        bytes = &bytes[12 + len..];
    }
    out
}
