//! Damaged files give a specific error or a clean recovery: never a panic,
//! never silently wrong data.

mod common;

use std::path::{Path, PathBuf};

use common::key;
use strata_engine::{Db, Durability, Error, Options, WalRecovery};

fn options() -> Options {
    Options {
        compression: false,
        block_bytes: 1024,
        durability: Durability::SyncEachGroup,
        ..Options::default()
    }
}

fn files_with(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

fn flip(path: &Path, offset: u64) {
    let mut data = std::fs::read(path).expect("read");
    let at = usize::try_from(offset).expect("offset");
    data[at] ^= 0x5a;
    std::fs::write(path, data).expect("write");
}

/// A database with 1000 keys in one table, closed.
fn table_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), options()).expect("open");
    for i in 0..1000 {
        db.put(&key(i), &[b'v'; 100]).expect("put");
    }
    db.flush().expect("flush");
    db.close().expect("close");
    let table = files_with(dir.path(), ".sst").pop().expect("one table");
    (dir, table)
}

fn footer_field(table: &Path, index: usize) -> u64 {
    let data = std::fs::read(table).expect("read");
    let footer = &data[data.len() - 48..];
    u64::from_le_bytes(
        footer[index * 8..index * 8 + 8]
            .try_into()
            .expect("8 bytes"),
    )
}

fn read_all(db: &Db) -> Result<Vec<Option<Vec<u8>>>, Error> {
    (0..1000).map(|i| db.get(&key(i))).collect()
}

#[test]
fn flipped_byte_in_a_data_block_is_a_corruption_error() {
    let (dir, table) = table_db();
    flip(&table, 10);
    let db = Db::open(dir.path(), options()).expect("open reads no data blocks");
    let err = db.get(&key(0)).expect_err("first block is damaged");
    assert!(
        matches!(&err, Error::Corruption { reason, .. } if reason.contains("checksum")),
        "{err}"
    );
    // Positioning the iterator reads the first block, so the error comes
    // from `iter` itself.
    let scan = db
        .iter(None, None)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>);
    assert!(matches!(scan, Err(Error::Corruption { .. })));
    // Keys in undamaged blocks are still served, correctly.
    assert_eq!(
        db.get(&key(999)).expect("last block is intact"),
        Some(vec![b'v'; 100])
    );
}

/// A compaction that reads a damaged block stops the store, and the
/// failure says it is damage (reopening finds it again), unlike a full disk.
#[test]
fn a_compaction_over_a_damaged_table_fails_the_store_as_damaged() {
    let (dir, table) = table_db();
    flip(&table, 10);
    let db = Db::open(dir.path(), options()).expect("open reads no data blocks");
    assert!(!db.stats().failure_is_damage);
    assert!(db.get(&key(0)).expect_err("damaged").is_damage());
    assert!(!db.refuses_writes(), "a read alone does not stop the store");
    db.put(&key(0), b"w").expect("put");
    db.compact_range(None, None)
        .expect_err("the compaction reads the damaged block");
    let stats = db.stats();
    assert!(db.refuses_writes());
    assert!(stats.failure_is_damage, "{:?}", stats.failure);
    let failure = stats.failure.expect("a failure");
    assert!(failure.contains("checksum"), "{failure}");
}

/// A caller that found damage can stop the store itself; reads go on.
#[test]
fn refuse_writes_stops_writes_with_the_damage_as_the_reason() {
    let (dir, table) = table_db();
    flip(&table, 10);
    let db = Db::open(dir.path(), options()).expect("open");
    let damage = db.get(&key(0)).expect_err("damaged");
    db.refuse_writes(&damage);
    assert!(db.refuses_writes());
    assert!(db.put(&key(1), b"w").is_err(), "writes are refused");
    let stats = db.stats();
    assert!(stats.failure_is_damage);
    assert!(
        stats
            .failure
            .is_some_and(|f| f.contains(&damage.to_string())),
        "the damage is the reason"
    );
    assert_eq!(db.get(&key(999)).expect("read"), Some(vec![b'v'; 100]));
}

#[test]
fn bulk_scans_read_ahead_and_report_damage_like_block_reads() {
    let (dir, table) = table_db();
    {
        let db = Db::open(dir.path(), options()).expect("open");
        let plain: Vec<_> = db
            .iter(None, None)
            .expect("iter")
            .collect::<Result<_, _>>()
            .expect("scan");
        let bulk: Vec<_> = db
            .iter_bulk(Some(&key(100)), None)
            .expect("iter")
            .collect::<Result<_, _>>()
            .expect("bulk scan");
        assert_eq!(bulk.len(), 900);
        assert_eq!(bulk, plain[100..]);
        db.close().expect("close");
    }
    // Damage far into the file (a block read ahead with its neighbours).
    let middle = footer_field(&table, 0) / 2;
    flip(&table, middle);
    let db = Db::open(dir.path(), options()).expect("open");
    let scan = db
        .iter_bulk(None, None)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>);
    assert!(
        matches!(&scan, Err(Error::Corruption { reason, .. }) if reason.contains("checksum")),
        "{scan:?}"
    );
    drop(db);
    // A table cut short: the block past the end is corruption, not a panic.
    let data = std::fs::read(&table).expect("read");
    std::fs::write(&table, &data[..usize::try_from(middle).expect("fits")]).expect("cut");
    let db = Db::open(dir.path(), options());
    if let Ok(db) = db {
        let scan = db
            .iter_bulk(None, None)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>);
        assert!(matches!(scan, Err(Error::Corruption { .. })), "{scan:?}");
    }
}

#[test]
fn flipped_byte_in_the_index_block_is_a_corruption_error() {
    let (dir, table) = table_db();
    flip(&table, footer_field(&table, 0) + 3);
    let db = Db::open(dir.path(), options()).expect("open");
    let err = read_all(&db).expect_err("index is damaged");
    assert!(
        matches!(&err, Error::Corruption { path, .. } if *path == table),
        "{err}"
    );
}

#[test]
fn flipped_byte_in_the_footer_is_a_corruption_error() {
    let (dir, table) = table_db();
    let len = std::fs::metadata(&table).expect("stat").len();
    for (offset, expected) in [(len - 40, "footer checksum"), (len - 3, "bad magic")] {
        flip(&table, offset);
        let db = Db::open(dir.path(), options()).expect("open");
        let err = db.get(&key(1)).expect_err("footer is damaged");
        assert!(
            matches!(&err, Error::Corruption { reason, .. } if reason.contains(expected)),
            "{err}"
        );
        drop(db);
        flip(&table, offset);
    }
}

#[test]
fn flipped_byte_in_the_manifest_refuses_to_open() {
    let (dir, _) = table_db();
    let manifest = files_with(dir.path(), "").into_iter().find(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("MANIFEST-"))
    });
    let manifest = manifest.expect("manifest");
    flip(&manifest, 20);
    let err = Db::open(dir.path(), options()).expect_err("manifest is damaged");
    assert!(
        matches!(&err, Error::Corruption { path, .. } if *path == manifest),
        "{err}"
    );
    // Nothing was deleted: the table is still there for manual recovery.
    assert_eq!(files_with(dir.path(), ".sst").len(), 1);
}

/// A database whose data is only in its WAL: 50 single-key batches.
fn wal_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), options()).expect("open");
    for i in 0..50 {
        db.put(&key(i), format!("value-{i}").as_bytes())
            .expect("put");
    }
    db.close().expect("close");
    let wal = files_with(dir.path(), ".log")
        .into_iter()
        .find(|p| data_end(p) > 0)
        .expect("a WAL with records");
    (dir, wal)
}

/// End of the written records: logs are preallocated with zeros.
fn data_end(path: &Path) -> u64 {
    let data = std::fs::read(path).expect("read");
    data.iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i as u64 + 1)
}

#[test]
fn corruption_in_the_middle_of_the_wal_is_an_error_with_a_recovery_mode() {
    let (dir, wal) = wal_db();
    let len = data_end(&wal);
    flip(&wal, len / 2);
    let err = Db::open(dir.path(), options()).expect_err("strict by default");
    let Error::WalCorruption { offset, .. } = err else {
        panic!("expected WalCorruption, got {err}");
    };
    assert!(offset > 0 && offset <= len / 2);

    let recovering = Options {
        wal_recovery: WalRecovery::TruncateAtCorruption,
        ..options()
    };
    let db = Db::open(dir.path(), recovering).expect("truncating recovery opens");
    let present: Vec<u32> = (0..50)
        .filter(|&i| db.get(&key(i)).expect("get").is_some())
        .collect();
    assert!(
        !present.is_empty() && present.len() < 50,
        "kept a prefix: {present:?}"
    );
    assert_eq!(
        present,
        (0..u32::try_from(present.len()).expect("small")).collect::<Vec<_>>()
    );
    for &i in &present {
        assert_eq!(
            db.get(&key(i)).expect("get"),
            Some(format!("value-{i}").into_bytes())
        );
    }
    assert_eq!(
        files_with(dir.path(), ".corrupt").len(),
        1,
        "damaged log kept for inspection"
    );
}

#[test]
fn tables_no_version_names_are_removed_before_the_log_is_replayed() {
    // A compaction's output left behind when the disk filled up: on a
    // still-full volume only its removal makes room for the log's replay,
    // so it must go even when the open fails later on.
    let (dir, wal) = wal_db();
    let orphan = dir.path().join("000900.sst");
    std::fs::write(&orphan, vec![7u8; 64 << 10]).expect("write orphan");
    flip(&wal, data_end(&wal) / 2);
    Db::open(dir.path(), options()).expect_err("a damaged log, strict recovery");
    assert!(!orphan.exists(), "the orphan outlived the failed open");

    // The tables the MANIFEST names stay, and so do the values.
    let (dir, _) = table_db();
    let tables = files_with(dir.path(), ".sst");
    assert!(!tables.is_empty());
    std::fs::write(dir.path().join("000900.sst"), b"orphan").expect("write orphan");
    let db = Db::open(dir.path(), options()).expect("open");
    assert!(read_all(&db).expect("read").iter().all(Option::is_some));
    assert_eq!(files_with(dir.path(), ".sst"), tables);
}

#[test]
fn truncated_wal_tail_is_the_end_of_the_log() {
    let (dir, wal) = wal_db();
    let len = data_end(&wal);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&wal)
        .expect("open");
    file.set_len(len - 3).expect("truncate");
    drop(file);
    let db = Db::open(dir.path(), options()).expect("a torn tail is not an error");
    for i in 0..49 {
        assert_eq!(
            db.get(&key(i)).expect("get"),
            Some(format!("value-{i}").into_bytes())
        );
    }
    assert_eq!(
        db.get(&key(49)).expect("get"),
        None,
        "the torn record is dropped"
    );
}

/// Offsets of the records in a WAL (logs are preallocated with zeros; a
/// zero header ends the records).
fn record_offsets(data: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut pos = 0;
    while let Some(header) = data.get(pos..pos + 12) {
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
        if header.iter().all(|&b| b == 0) {
            break;
        }
        offsets.push(pos);
        pos += 12 + len as usize;
    }
    offsets
}

/// Regression (outside torture test): a SIGKILL inside a large WAL record
/// leaves part of it followed by the preallocated zeros, because Linux stops
/// a `pwrite` at a page boundary. That is a torn tail, not corruption: the
/// database opens with exactly the acknowledged writes.
#[test]
fn wal_record_cut_at_a_page_or_header_byte_before_zeros_is_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), options()).expect("open");
    for i in 0..20 {
        db.put(&key(i), format!("value-{i}").as_bytes())
            .expect("put");
    }
    db.put(b"big", &[b'x'; 60_000]).expect("put");
    db.close().expect("close");
    let wal = files_with(dir.path(), ".log")
        .into_iter()
        .find(|p| data_end(p) > 0)
        .expect("a WAL with records");
    let original = std::fs::read(&wal).expect("read");
    let start = *record_offsets(&original).last().expect("records");
    let end = usize::try_from(data_end(&wal)).expect("small");
    assert!(end - start > 60_000, "the big record is last");

    let mut cuts: Vec<usize> = (start + 1..start + 12).collect();
    cuts.extend((start.next_multiple_of(4096)..end).step_by(4096));
    assert!(cuts.len() >= 25, "{} cuts", cuts.len());
    let template = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(dir.path()).expect("read dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, template.path().join(path.file_name().expect("name"))).expect("copy");
    }
    for cut in cuts {
        let attempt = tempfile::tempdir().expect("tempdir");
        for entry in std::fs::read_dir(template.path()).expect("read dir") {
            let path = entry.expect("entry").path();
            std::fs::copy(&path, attempt.path().join(path.file_name().expect("name")))
                .expect("copy");
        }
        let mut torn = original.clone();
        torn[cut..].fill(0);
        let torn_wal = attempt.path().join(wal.file_name().expect("name"));
        std::fs::write(&torn_wal, &torn).expect("write");

        let db = Db::open(attempt.path(), options())
            .unwrap_or_else(|e| panic!("cut at {cut}: a torn tail must open: {e}"));
        for i in 0..20 {
            assert_eq!(
                db.get(&key(i)).expect("get"),
                Some(format!("value-{i}").into_bytes()),
                "cut at {cut}"
            );
        }
        assert_eq!(db.get(b"big").expect("get"), None, "cut at {cut}");
        assert!(files_with(attempt.path(), ".corrupt").is_empty());
    }

    // A flipped byte in a record followed by valid records is still
    // corruption.
    let mut damaged = original.clone();
    let middle = record_offsets(&original)[10];
    damaged[middle + 13] ^= 0x5a;
    std::fs::write(&wal, &damaged).expect("write");
    let err = Db::open(dir.path(), options()).expect_err("damage mid-log");
    assert!(
        matches!(&err, Error::WalCorruption { offset, .. } if *offset == middle as u64),
        "{err}"
    );
}

fn manifest_of(dir: &Path) -> PathBuf {
    let current = std::fs::read_to_string(dir.join("CURRENT")).expect("CURRENT");
    dir.join(current.trim_end())
}

/// A database in `dir`, closed, whose 100 keys were written and flushed
/// three times (`v0-*`, `v1-*`, then `v2-*`): three tables, a MANIFEST
/// with three edits after its snapshot.
fn flushed_three_times(dir: &Path) {
    let db = Db::open(dir, options()).expect("open");
    for round in 0..3 {
        for i in 0..100 {
            db.put(&key(i), format!("v{round}-{i}").as_bytes())
                .expect("put");
        }
        db.flush().expect("flush");
    }
    db.close().expect("close");
}

/// Regression (outside torture test): a MANIFEST that lost its newest edits
/// used to open, delete the newer tables as garbage and serve old values.
/// Now it is corruption, and nothing is deleted.
#[test]
fn manifest_that_lost_edits_already_acted_on_refuses_to_open_and_deletes_nothing() {
    for (name, compact) in [("flush", false), ("compaction", true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        flushed_three_times(dir.path());
        if compact {
            // A fresh MANIFEST (one snapshot naming three L0 tables), then
            // the compaction's edits, which retire and delete those tables.
            let db = Db::open(dir.path(), options()).expect("reopen");
            db.compact_range(None, None).expect("compact");
            db.close().expect("close");
        }
        let manifest = manifest_of(dir.path());
        let data = std::fs::read(&manifest).expect("read");
        let offsets = record_offsets(&data);
        assert!(offsets.len() >= 2, "{name}: edits were logged");
        // Everything after the snapshot is lost: without compaction, the
        // flushes that deleted the snapshot's WAL; with it, the edit that
        // deleted the snapshot's tables.
        let cut = offsets[1];
        std::fs::write(&manifest, &data[..cut]).expect("truncate");
        let before = files_with(dir.path(), "");

        let err = Db::open(dir.path(), options()).expect_err("lost edits are damage");
        assert!(
            matches!(&err, Error::Corruption { path, offset, .. }
                if *path == manifest && *offset == cut as u64),
            "{name}: {err}"
        );
        assert_eq!(
            files_with(dir.path(), ""),
            before,
            "{name}: nothing deleted"
        );
    }
}

#[test]
fn manifest_with_a_torn_edit_never_acted_on_opens() {
    let (dir, _) = table_db();
    let manifest = manifest_of(dir.path());
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&manifest)
        .expect("open");
    std::io::Write::write_all(&mut file, &[9, 0, 0]).expect("append");
    drop(file);
    let db = Db::open(dir.path(), options()).expect("a torn last edit is a crash");
    assert_eq!(read_all(&db).expect("read").len(), 1000);
    assert!(read_all(&db).expect("read").iter().all(Option::is_some));
}

/// Every single-byte flip anywhere in a table (data, index, bloom filter,
/// footer) gives each read either the right answer or a corruption error:
/// never a panic, a wrong value, or a written key reported missing; and
/// some read notices every flip.
#[test]
fn no_flipped_byte_anywhere_in_a_table_gives_a_wrong_answer() {
    // A small memtable: each of the ~2,500 opens replays a small log.
    let options = || Options {
        memtable_bytes: 64 << 10,
        ..options()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let written = |i: u32| i.is_multiple_of(2);
    let value = |i: u32| format!("value-{i}-{}", "x".repeat(i as usize % 37)).into_bytes();
    {
        let db = Db::open(dir.path(), options()).expect("open");
        for i in (0..120).filter(|&i| written(i)) {
            db.put(&key(i), &value(i)).expect("put");
        }
        db.flush().expect("flush");
        db.close().expect("close");
    }
    let table = files_with(dir.path(), ".sst").pop().expect("one table");
    let pristine = std::fs::read(&table).expect("read");
    let expected: Vec<(Vec<u8>, Vec<u8>)> = (0..120)
        .filter(|&i| written(i))
        .map(|i| (key(i), value(i)))
        .collect();
    let mut undetected = Vec::new();
    for offset in 0..pristine.len() {
        let mut damaged = pristine.clone();
        damaged[offset] ^= 0x5a;
        std::fs::write(&table, &damaged).expect("write");
        let db = Db::open(dir.path(), options()).expect("opening reads no table");
        let mut errors = 0;
        for i in 0..120 {
            match db.get(&key(i)) {
                Ok(got) => {
                    let want = written(i).then(|| value(i));
                    assert_eq!(got, want, "key {i} with byte {offset} flipped");
                }
                Err(Error::Corruption { .. }) => errors += 1,
                Err(e) => panic!("key {i} with byte {offset} flipped: {e}"),
            }
        }
        match db
            .iter(None, None)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        {
            Ok(all) => assert_eq!(all, expected, "scan with byte {offset} flipped"),
            Err(Error::Corruption { .. }) => errors += 1,
            Err(e) => panic!("scan with byte {offset} flipped: {e}"),
        }
        if errors == 0 {
            undetected.push(offset);
        }
    }
    assert_eq!(undetected, Vec::<usize>::new(), "flips no read noticed");
}

/// Opens a copy of the database in `template` whose file `name` (there
/// `pristine`) has its byte at `offset` flipped; the copy lives as long as
/// the returned directory.
fn open_flipped(
    template: &Path,
    name: &std::ffi::OsStr,
    pristine: &[u8],
    offset: usize,
    options: Options,
) -> (tempfile::TempDir, Result<Db, Error>) {
    let copy = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(template).expect("read dir") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, copy.path().join(path.file_name().expect("name"))).expect("copy");
    }
    let mut damaged = pristine.to_vec();
    damaged[offset] ^= 0x5a;
    std::fs::write(copy.path().join(name), &damaged).expect("write");
    let db = Db::open(copy.path(), options);
    (copy, db)
}

/// Every single-byte flip in a WAL's records, or just past them, either
/// refuses the open with `WalCorruption` or opens with a prefix of the
/// writes, every value right; a prefix short of the end only when the flip
/// hit the last record (indistinguishable from a torn write).
#[test]
fn no_flipped_byte_in_a_wal_opens_with_wrong_or_reordered_data() {
    let options = || Options {
        memtable_bytes: 64 << 10,
        ..options()
    };
    let template = tempfile::tempdir().expect("tempdir");
    let value = |i: u32| format!("value-{i}").into_bytes();
    {
        let db = Db::open(template.path(), options()).expect("open");
        for i in 0..30 {
            db.put(&key(i), &value(i)).expect("put");
        }
        db.close().expect("close");
    }
    let wal = files_with(template.path(), ".log")
        .into_iter()
        .find(|p| data_end(p) > 0)
        .expect("a WAL with records");
    let name = wal.file_name().expect("name").to_owned();
    let pristine = std::fs::read(&wal).expect("read");
    let offsets = record_offsets(&pristine);
    assert_eq!(offsets.len(), 30, "one record per put");
    let last = *offsets.last().expect("records");
    let end = usize::try_from(data_end(&wal)).expect("small");
    let (mut refused, mut short) = (0, 0);
    for offset in 0..end + 16 {
        let (_copy, db) = open_flipped(template.path(), &name, &pristine, offset, options());
        let db = match db {
            Ok(db) => db,
            Err(Error::WalCorruption { .. }) => {
                refused += 1;
                continue;
            }
            Err(e) => panic!("byte {offset} flipped: {e}"),
        };
        let present: Vec<u32> = (0..30)
            .filter(|&i| db.get(&key(i)).expect("get").is_some())
            .collect();
        let prefix = u32::try_from(present.len()).expect("small");
        assert_eq!(present, (0..prefix).collect::<Vec<_>>(), "byte {offset}");
        for i in present {
            assert_eq!(
                db.get(&key(i)).expect("get"),
                Some(value(i)),
                "byte {offset}"
            );
        }
        if prefix < 30 {
            assert!(
                offset >= last && prefix == 29,
                "byte {offset}: kept {prefix}"
            );
            short += 1;
        }
    }
    assert!(refused > end / 2, "{refused} of {end} refused");
    assert!(short > 0, "a flip in the last record drops it");
}

/// Every single-byte flip in a MANIFEST refuses the open with a
/// corruption error or opens with every key right.
#[test]
fn no_flipped_byte_in_a_manifest_opens_with_missing_or_wrong_data() {
    let template = tempfile::tempdir().expect("tempdir");
    flushed_three_times(template.path());
    let manifest = manifest_of(template.path());
    let name = manifest.file_name().expect("name").to_owned();
    let pristine = std::fs::read(&manifest).expect("read");
    let mut refused = 0;
    for offset in 0..pristine.len() {
        let (_copy, db) = open_flipped(template.path(), &name, &pristine, offset, options());
        let db = match db {
            Ok(db) => db,
            Err(Error::Corruption { .. }) => {
                refused += 1;
                continue;
            }
            Err(e) => panic!("byte {offset} flipped: {e}"),
        };
        for i in 0..100 {
            assert_eq!(
                db.get(&key(i)).expect("get"),
                Some(format!("v2-{i}").into_bytes()),
                "key {i} with byte {offset} flipped"
            );
        }
    }
    assert!(refused > 0, "damage is found");
}
