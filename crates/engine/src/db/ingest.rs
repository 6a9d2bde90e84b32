//! Ingest-behind (after RocksDB's `ingest_behind`): a sorted run of merge
//! operands written straight into one table under every version the
//! database holds, without the WAL, the memtable or compaction. It is how a
//! node bulk-loads data streamed to it.
//!
//! The entries are stored as merge operands with sequence number 0, so they
//! read as the oldest versions of their keys: newer operands merge on top
//! of them, a newer put or delete hides them. An entry whose key already
//! has a put or delete stored would be hidden at once; it is left out and
//! its position handed back ([`Ingested::shadowed`]).
//!
//! Placement: the level just below the deepest level holding a table that
//! overlaps the run's key range (level 1 if none does), so nothing older
//! lies below the run and levels 1+ keep their no-overlap invariant; a run
//! overlapping the last level cannot go behind ([`Error::IngestOverlap`]).
//! The table then takes part in compaction like any other.
//!
//! Why concurrent work is safe:
//! - The compaction lock is held from the first probe to the commit:
//!   levels 1 and deeper do not change meanwhile (a flush only adds level-0
//!   tables), and no compaction picked before the run was placed (one that
//!   believes nothing lies below its output) installs after it.
//! - The commit holds the WAL lock, so no write lands meanwhile; the
//!   memtables and the level-0 tables flushed since the first probe are
//!   probed again, and a put or delete of an ingested key written during
//!   the ingest fails it with [`Error::IngestConflict`] (the table is
//!   deleted; nothing changed).
//! - A crash before the MANIFEST record is synced leaves an unreferenced
//!   table, collected at the next open.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Inner;
use super::write::MAX_BATCH_BYTES;
use crate::iter::InternalIterator;
use crate::key::{self, Kind, MAX_SEQ};
use crate::memtable::{Memtable, MemtableIter};
use crate::table::TableBuilder;
use crate::version::{FileKind, FileMeta, Version, VersionEdit, file_path};
use crate::{Error, Result};

/// What [`Db::ingest_behind`](crate::Db::ingest_behind) did.
#[derive(Debug, Default)]
pub struct Ingested {
    /// Entries written into the new table.
    pub entries: u64,
    /// Size of the new table in bytes (0 when nothing was ingested).
    pub table_bytes: u64,
    /// The level it was placed on (0 when nothing was ingested).
    pub level: usize,
    /// Positions (in the input) of the entries not ingested because a put
    /// or delete of their key is already stored (it would hide them).
    pub shadowed: Vec<usize>,
}

pub(crate) fn ingest_behind<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    inner: &Inner,
    entries: &[(K, V)],
) -> Result<Ingested> {
    match prepare(inner, entries)? {
        Prepared::Nothing(shadowed) => Ok(Ingested {
            shadowed,
            ..Ingested::default()
        }),
        Prepared::Table(table) => commit(inner, table),
    }
}

/// A built table waiting for its commit; holds the compaction lock.
struct Table<'a> {
    _compaction: std::sync::MutexGuard<'a, ()>,
    meta: Arc<FileMeta>,
    /// The entries in the table.
    run: Vec<(&'a [u8], &'a [u8])>,
    shadowed: Vec<usize>,
    probed_l0: HashSet<u64>,
    /// Where the table goes.
    level: usize,
}

enum Prepared<'a> {
    /// Every entry is shadowed (or there were none).
    Nothing(Vec<usize>),
    Table(Table<'a>),
}

/// Checks the input, probes every key and writes the table.
fn prepare<'a, K: AsRef<[u8]>, V: AsRef<[u8]>>(
    inner: &'a Inner,
    entries: &'a [(K, V)],
) -> Result<Prepared<'a>> {
    if inner.options.merge_operator.is_none() {
        return Err(Error::NoMergeOperator);
    }
    check_input(entries)?;
    let (Some(first), Some(last_key)) = (entries.first(), entries.last()) else {
        return Ok(Prepared::Nothing(Vec::new()));
    };
    let (lo, hi) = (first.0.as_ref().to_vec(), last_key.0.as_ref().to_vec());
    if let Some(e) = inner.background_error() {
        return Err(e);
    }

    let compaction = inner.compaction.lock().expect("compaction lock");
    let state = inner.state();
    let level = placement(&state.version, &lo, &hi)?;
    let probed_l0: HashSet<u64> = state.version.levels[0].iter().map(|f| f.number).collect();
    let mut shadowed = Vec::new();
    let mut run = Vec::with_capacity(entries.len());
    for (i, (key, value)) in entries.iter().enumerate() {
        let (key, value) = (key.as_ref(), value.as_ref());
        if has_base(inner, &state.mem, &state.imms, &state.version, level, key)? {
            shadowed.push(i);
        } else {
            run.push((key, value));
        }
    }
    if run.is_empty() {
        return Ok(Prepared::Nothing(shadowed));
    }

    let number = inner.next_file.fetch_add(1, Ordering::SeqCst);
    let path = file_path(&inner.dir, FileKind::Table, number);
    let info = match build(&path, inner, level, &run) {
        Ok(info) => info,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
    };
    Ok(Prepared::Table(Table {
        _compaction: compaction,
        meta: Arc::new(FileMeta::from_built(number, path, info)),
        run,
        shadowed,
        probed_l0,
        level,
    }))
}

/// Probes what was written since `prepare` and records the table.
fn commit(inner: &Inner, table: Table<'_>) -> Result<Ingested> {
    let Table {
        meta,
        run,
        shadowed,
        probed_l0,
        level,
        ..
    } = table;
    // No write can land while the WAL lock is held.
    let _wal = inner.wal.lock().expect("wal lock");
    let now = inner.state();
    let fresh_l0: Vec<_> = now.version.levels[0]
        .iter()
        .filter(|f| !probed_l0.contains(&f.number))
        .cloned()
        .collect();
    let recent = Version {
        levels: std::iter::once(fresh_l0)
            .chain((1..now.version.levels.len()).map(|_| Vec::new()))
            .collect(),
    };
    for (key, _) in &run {
        if has_base(inner, &now.mem, &now.imms, &recent, level, key)? {
            let _ = std::fs::remove_file(&meta.path);
            return Err(Error::IngestConflict { key_len: key.len() });
        }
    }
    let mut versions = inner.versions.lock().expect("versions lock");
    let edit = VersionEdit {
        last_sequence: Some(inner.last_seq.load(Ordering::Acquire)),
        added: vec![(level, Arc::clone(&meta))],
        ..VersionEdit::default()
    };
    let version = match versions.log_and_apply(edit) {
        Ok(version) => version,
        Err(e) => {
            // The MANIFEST's tail is unknown: the table may or may not be
            // part of the database after a reopen, so nothing more is
            // acknowledged until then.
            inner.set_background_error(&e);
            return Err(e);
        }
    };
    inner.state.write().expect("state lock").version = version;
    drop(versions);
    inner
        .counters
        .ingested_bytes
        .fetch_add(meta.size, Ordering::Relaxed);
    Ok(Ingested {
        entries: run.len() as u64,
        table_bytes: meta.size,
        level,
        shadowed,
    })
}

/// Keys strictly ascending, each entry within the write path's limit.
fn check_input<K: AsRef<[u8]>, V: AsRef<[u8]>>(entries: &[(K, V)]) -> Result<()> {
    for (i, (key, value)) in entries.iter().enumerate() {
        let size = key.as_ref().len() + value.as_ref().len();
        if size > MAX_BATCH_BYTES {
            return Err(Error::WriteTooLarge {
                size,
                limit: MAX_BATCH_BYTES,
            });
        }
        if i > 0 && entries[i - 1].0.as_ref() >= key.as_ref() {
            return Err(Error::IngestUnsorted { index: i });
        }
    }
    Ok(())
}

/// The level just below the deepest one overlapping `[lo, hi]`, at least 1.
fn placement(version: &Version, lo: &[u8], hi: &[u8]) -> Result<usize> {
    let last = version.levels.len() - 1;
    let deepest = (1..=last)
        .rev()
        .find(|&level| !version.overlapping(level, lo, hi).is_empty());
    match deepest {
        None => Ok(1),
        Some(level) if level < last => Ok(level + 1),
        Some(level) => Err(Error::IngestOverlap {
            table: version.overlapping(level, lo, hi)[0].number,
            level,
        }),
    }
}

/// Whether a put or delete of `user_key` is stored above `level`.
fn has_base(
    inner: &Inner,
    mem: &Arc<Memtable>,
    imms: &[Arc<Memtable>],
    version: &Version,
    level: usize,
    user_key: &[u8],
) -> Result<bool> {
    let target = key::seek_key(user_key, MAX_SEQ);
    let hash = crate::table::bloom::hash(user_key);
    for m in std::iter::once(mem).chain(imms) {
        if !m.may_contain(hash) {
            continue;
        }
        let mut it = MemtableIter::new(Arc::clone(m));
        it.seek(&target)?;
        if base_here(&mut it, user_key)? {
            return Ok(true);
        }
    }
    for file in version.files_for(user_key, level) {
        let table = inner.tables.get(file)?;
        if !table.may_contain(hash) {
            continue;
        }
        let mut it = table.iter();
        it.seek(&target)?;
        if base_here(&mut it, user_key)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether the entries of `user_key` at the iterator's position include a
/// put or delete.
fn base_here(it: &mut dyn InternalIterator, user_key: &[u8]) -> Result<bool> {
    while it.valid() {
        let p = key::parse(it.key()).expect("iterators yield valid keys");
        if p.user_key != user_key {
            return Ok(false);
        }
        if p.kind != Kind::Merge {
            return Ok(true);
        }
        it.next()?;
    }
    Ok(false)
}

fn build(
    path: &std::path::Path,
    inner: &Inner,
    level: usize,
    entries: &[(&[u8], &[u8])],
) -> Result<crate::table::TableInfo> {
    let mut builder = TableBuilder::create(
        path,
        &inner.options,
        level,
        inner.options.direct_io_for_ingest,
    )?;
    let mut ikey = Vec::new();
    for (key, value) in entries {
        ikey.clear();
        ikey.extend_from_slice(key);
        ikey.extend_from_slice(&(Kind::Merge as u64).to_be_bytes());
        builder.add(&ikey, value)?;
    }
    builder.finish()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{Db, MergeOperator, Options};

    #[derive(Debug)]
    struct Append;
    impl MergeOperator for Append {
        fn merge(&self, _key: &[u8], existing: Option<&[u8]>, operand: &[u8]) -> Vec<u8> {
            let mut out = existing.map(<[u8]>::to_vec).unwrap_or_default();
            out.extend_from_slice(operand);
            out
        }
    }

    #[test]
    fn a_put_written_between_the_probe_and_the_commit_fails_the_ingest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = Options {
            merge_operator: Some(Arc::new(Append)),
            ..Options::default()
        };
        let db = Db::open(dir.path(), options).expect("open");
        let entries = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
        ];
        let Prepared::Table(table) = prepare(&db.inner, &entries).expect("prepare") else {
            panic!("nothing is stored, so nothing is shadowed");
        };
        let path = table.meta.path.clone();
        assert!(path.exists());
        db.put(b"b", b"put").expect("put");
        assert!(matches!(
            commit(&db.inner, table),
            Err(Error::IngestConflict { key_len: 1 })
        ));
        assert!(!path.exists(), "the unused table is deleted");
        assert_eq!(db.get(b"a").expect("get"), None, "nothing was ingested");
        assert_eq!(db.get(b"b").expect("get"), Some(b"put".to_vec()));
        assert!(db.stats().levels.iter().all(|l| l.files == 0));
    }
}
