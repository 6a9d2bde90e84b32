//! Opening a database directory.
//!
//! 1. Lock `LOCK` so that one process at a time owns the directory.
//! 2. Replay the MANIFEST named by `CURRENT` (or start empty).
//! 3. Replay every WAL at or after the MANIFEST's log number into a
//!    memtable, and write that memtable to a level-0 table.
//! 4. Write a fresh MANIFEST with the whole file set and switch `CURRENT`.
//! 5. Delete what no version references: old logs, old MANIFESTs, tables
//!    left by a compaction that crashed before its edit was recorded.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use super::{Background, Inner, State};
use crate::cache::BlockCache;
use crate::key::SeqNo;
use crate::memtable::Memtable;
use crate::options::WalRecovery;
use crate::record::{self, Tail, TailPolicy};
use crate::stats::Counters;
use crate::table_cache::TableCache;
use crate::version::{
    FileKind, Recovered, Version, VersionEdit, VersionSet, current_manifest, file_path,
    parse_file_name,
};
use crate::{Error, Options, Result, WriteBatch};

pub(crate) fn open(dir: &Path, options: Options) -> Result<Inner> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let lock_path = dir.join("LOCK");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(Error::io(&lock_path))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(Error::Locked {
                path: dir.to_owned(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path)(e)),
    }

    let manifest = current_manifest(dir)?;
    let recovered = match &manifest {
        Some(path) => Some(VersionSet::recover(dir, path, options.num_levels)?),
        None => None,
    };
    let listing = list_dir(dir)?;
    if let (Some(path), Some(r)) = (&manifest, &recovered) {
        check_manifest_is_whole(path, r, &listing)?;
    }
    let (mut version, log_number, mut last_seq, mut next_file) = match recovered {
        Some(r) => (r.version, r.log_number, r.last_sequence, r.next_file_number),
        None => (Version::new(options.num_levels), 0, 0, 1),
    };
    if let Some(max) = listing.iter().map(|(_, n, _)| *n).max() {
        next_file = next_file.max(max + 1);
    }
    // Before anything is written: on a full disk, the output of the
    // compaction or flush that failed is what makes room for the log's
    // replay below.
    remove_unreferenced_tables(&listing, &version);
    let next_file = Arc::new(AtomicU64::new(next_file));
    let blocks = Arc::new(BlockCache::new(options.block_cache_bytes));

    // Replay logs, oldest first (into a memtable only flushed: no lookups,
    // so no key filter to speak of).
    let mem = Memtable::new(0, 0);
    let mut corrupt_logs = Vec::new();
    for (kind, number, path) in &listing {
        if *kind != FileKind::Wal || *number < log_number {
            continue;
        }
        let replayed = replay_log(path, &mem, options.wal_recovery)?;
        last_seq = last_seq.max(replayed.max_seq);
        if replayed.truncated {
            corrupt_logs.push(path.clone());
        }
    }
    // No reader exists yet: every replayed version may collapse.
    if let Some(meta) =
        super::flush::write_level0(dir, &options, &next_file, &mem, crate::key::MAX_SEQ)?
    {
        version = version.apply(&VersionEdit {
            added: vec![(0, Arc::new(meta))],
            ..VersionEdit::default()
        });
    }

    let wal_number = next_file.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let wal_path = file_path(dir, FileKind::Wal, wal_number);
    let wal = super::write::create_wal(&wal_path, &options)?;
    let versions = VersionSet::create(dir, version, wal_number, last_seq, Arc::clone(&next_file))?;
    let version = versions.current();

    for path in corrupt_logs {
        let mut target = path.clone().into_os_string();
        target.push(".corrupt");
        std::fs::rename(&path, &target).map_err(Error::io(&path))?;
    }
    collect_garbage(dir, wal_number, versions.manifest_path());

    Ok(Inner {
        dir: dir.to_owned(),
        state: RwLock::new(State {
            mem: Arc::new(Memtable::new(wal_number, options.memtable_bytes)),
            imms: Vec::new(),
            version,
        }),
        versions: Mutex::new(versions),
        next_file,
        last_seq: AtomicU64::new(last_seq),
        writers: Mutex::default(),
        compaction: Mutex::new(()),
        wal: Mutex::new(super::Wal {
            writer: wal,
            scratch: Vec::new(),
        }),
        bg: Mutex::new(Background::default()),
        failed: AtomicBool::new(false),
        bg_cv: Condvar::new(),
        snapshots: Mutex::new(BTreeMap::new()),
        tables: TableCache::new(options.max_open_tables, blocks),
        counters: Counters::default(),
        options,
        _lock: lock,
    })
}

/// Refuses a MANIFEST that lost edits whose effects already happened.
///
/// A crash can only tear an edit that was never acted on: every file the
/// recovered version names, and the WAL it says to replay from, is then
/// still on disk (files are deleted only after the edit that retires them
/// is fsynced). If one of them is gone, later edits existed and were lost
/// (truncation or damage); opening would serve stale values and delete the
/// newer tables as garbage, so this is corruption, reported before any
/// file is touched.
fn check_manifest_is_whole(
    manifest: &Path,
    recovered: &Recovered,
    listing: &[(FileKind, u64, std::path::PathBuf)],
) -> Result<()> {
    let has =
        |kind: FileKind, number: u64| listing.iter().any(|(k, n, _)| *k == kind && *n == number);
    let lost = |what: String| {
        Error::corruption(
            manifest,
            recovered.valid_len,
            format!(
                "{what}, so the MANIFEST has lost edits after this offset; \
                 restore the directory from a replica or backup"
            ),
        )
    };
    for (level, file) in recovered.version.all_files() {
        if !has(FileKind::Table, file.number) {
            return Err(lost(format!(
                "table {:06}.sst of level {level} is missing",
                file.number
            )));
        }
    }
    if recovered.log_number > 0 && !has(FileKind::Wal, recovered.log_number) {
        return Err(lost(format!(
            "WAL {:06}.log, where replay must start, is missing",
            recovered.log_number
        )));
    }
    Ok(())
}

/// Database files in `dir`, sorted by number.
fn list_dir(dir: &Path) -> Result<Vec<(FileKind, u64, std::path::PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(Error::io(dir))? {
        let entry = entry.map_err(Error::io(dir))?;
        if let Some((kind, number)) = entry.file_name().to_str().and_then(parse_file_name) {
            files.push((kind, number, entry.path()));
        }
    }
    files.sort_by_key(|(_, number, _)| *number);
    Ok(files)
}

struct Replayed {
    max_seq: SeqNo,
    truncated: bool,
}

fn replay_log(path: &Path, mem: &Memtable, mode: WalRecovery) -> Result<Replayed> {
    let data = std::fs::read(path).map_err(Error::io(path))?;
    let (records, tail) = record::read_records(&data, TailPolicy::ChecksumTornOk);
    let mut max_seq = 0;
    let mut offset = 0u64;
    let mut truncated = false;
    for payload in records {
        let Some(entries) = WriteBatch::decode(payload) else {
            // A record with a valid checksum but an undecodable batch: a
            // bug or deliberate tampering, never a crash artifact.
            if mode == WalRecovery::Strict {
                return Err(Error::WalCorruption {
                    path: path.to_owned(),
                    offset,
                    reason: "record holds a malformed write batch".into(),
                });
            }
            truncated = true;
            break;
        };
        for (seq, kind, key, value) in entries {
            mem.insert(seq, kind, key, crate::table::bloom::hash(key), value);
            max_seq = max_seq.max(seq);
        }
        offset += (record::HEADER_LEN + payload.len()) as u64;
    }
    if let Tail::Corrupt { offset, reason } = tail {
        if mode == WalRecovery::Strict {
            return Err(Error::WalCorruption {
                path: path.to_owned(),
                offset,
                reason,
            });
        }
        truncated = true;
    }
    Ok(Replayed { max_seq, truncated })
}

/// Best-effort removal of the tables `version` does not name: outputs of
/// flushes, compactions and ingests that never reached the MANIFEST, and
/// tables it retired. Only after the MANIFEST is known to be whole (a
/// MANIFEST that lost edits would disown live tables).
fn remove_unreferenced_tables(listing: &[(FileKind, u64, std::path::PathBuf)], version: &Version) {
    let live: std::collections::HashSet<u64> = version.all_files().map(|(_, f)| f.number).collect();
    for (kind, number, path) in listing {
        if *kind == FileKind::Table && !live.contains(number) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Best-effort removal of the logs and MANIFESTs the new ones replace
/// (unneeded tables went before the replay: `remove_unreferenced_tables`);
/// anything missed is collected at the next open.
fn collect_garbage(dir: &Path, wal_number: u64, manifest: &Path) {
    let Ok(listing) = list_dir(dir) else { return };
    for (kind, number, path) in listing {
        let obsolete = match kind {
            FileKind::Wal => number < wal_number,
            FileKind::Table => false,
            FileKind::Manifest => path != manifest,
        };
        if obsolete {
            let _ = std::fs::remove_file(&path);
        }
    }
    let _ = std::fs::remove_file(dir.join("CURRENT.tmp"));
}
