//! `Db::ingest_behind`: bulk-loaded tables under everything already stored.

mod common;

use std::sync::Arc;

use common::{key, small_options};
use strata_engine::{Db, Error, Options};

fn options() -> Options {
    Options {
        ingest_behind: true,
        ..small_options()
    }
}

fn run(keys: impl IntoIterator<Item = u32>, value: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    keys.into_iter()
        .map(|i| (key(i), format!("{value}{i}").into_bytes()))
        .collect()
}

fn get(db: &Db, i: u32) -> Option<String> {
    db.get(&key(i))
        .expect("get")
        .map(|v| String::from_utf8(v).expect("utf8"))
}

#[test]
fn an_ingested_run_is_one_last_level_table_readable_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), options()).expect("open");
    let done = db.ingest_behind(run(0..500, "v")).expect("ingest");
    assert_eq!(done.entries, 500);
    assert!(done.shadowed.is_empty());
    let stats = db.stats();
    let last = stats.levels.len() - 1;
    assert_eq!(stats.levels[last].files, 1);
    assert_eq!(stats.levels[last].bytes, done.table_bytes);
    assert_eq!(stats.ingested_bytes, done.table_bytes);
    assert_eq!(stats.user_bytes_written, 0, "nothing went through the WAL");
    assert_eq!(get(&db, 7).as_deref(), Some("v7"));
    let all: Vec<_> = db
        .iter(None, None)
        .expect("iter")
        .map(|r| r.expect("entry"))
        .collect();
    assert_eq!(all, run(0..500, "v"));
    drop(db);
    let db = Db::open(dir.path(), options()).expect("reopen");
    assert_eq!(get(&db, 499).as_deref(), Some("v499"));
    assert_eq!(db.stats().levels[last].files, 1);
}

#[test]
fn ingested_entries_are_older_than_everything_stored_and_merge_under_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), options()).expect("open");
    // Key 1: an operand in the memtable. Key 2: operands compacted down to
    // level 1, which must stay operands (not resolved into a put as if
    // nothing lay below) because a table may be ingested under them.
    db.merge(&key(2), b"new2").expect("merge");
    db.flush().expect("flush");
    db.merge(&key(9), b"x").expect("merge");
    db.flush().expect("flush");
    // Two level-0 tables: the compaction thread moves them to level 1.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while db.stats().levels[0].files > 0 {
        assert!(std::time::Instant::now() < deadline, "level 0 never compacted");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(db.stats().levels[1].files, 1);
    db.merge(&key(1), b"new1").expect("merge");
    db.merge(&key(2), b"newer2").expect("merge");
    let done = db.ingest_behind(run(0..4, "old")).expect("ingest");
    assert_eq!(done.entries, 4);
    assert!(done.shadowed.is_empty(), "only merge operands were stored");
    assert_eq!(get(&db, 0).as_deref(), Some("old0"));
    assert_eq!(get(&db, 1).as_deref(), Some("old1,new1"));
    assert_eq!(get(&db, 2).as_deref(), Some("old2,new2,newer2"));
    // Writes after the ingest land on top, and a full compaction (which
    // merges everything into the last level) keeps the order.
    db.merge(&key(3), b"after3").expect("merge");
    db.compact_range(None, None).expect("compact");
    let last = db.stats().levels.len() - 1;
    assert_eq!(db.stats().levels[last].files, 1);
    assert_eq!(get(&db, 2).as_deref(), Some("old2,new2,newer2"));
    assert_eq!(get(&db, 3).as_deref(), Some("old3,after3"));
}

#[test]
fn keys_with_a_stored_put_or_delete_are_handed_back_not_hidden() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), options()).expect("open");
    db.put(&key(1), b"put1").expect("put");
    db.delete(&key(2)).expect("delete");
    db.flush().expect("flush");
    // A chain long enough to be folded into a put at write time.
    for i in 0..5 {
        db.merge(&key(3), format!("m{i}").as_bytes()).expect("merge");
    }
    let done = db.ingest_behind(run(0..5, "old")).expect("ingest");
    assert_eq!(done.entries, 2, "keys 0 and 4");
    let shadowed: Vec<_> = done.shadowed.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(shadowed, vec![key(1), key(2), key(3)]);
    assert_eq!(done.shadowed[0].1, b"old1");
    assert_eq!(get(&db, 1).as_deref(), Some("put1"));
    assert_eq!(get(&db, 2), None);
    assert_eq!(get(&db, 4).as_deref(), Some("old4"));
}

#[test]
fn bad_input_and_overlaps_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), options()).expect("open");
    let mut unsorted = run(0..3, "v");
    unsorted.swap(1, 2);
    assert!(matches!(
        db.ingest_behind(unsorted),
        Err(Error::IngestUnsorted { index: 2 })
    ));
    let mut duplicate = run(0..3, "v");
    duplicate[1].0 = key(0);
    assert!(matches!(
        db.ingest_behind(duplicate),
        Err(Error::IngestUnsorted { index: 1 })
    ));
    let empty = db.ingest_behind(Vec::new()).expect("nothing to do");
    assert_eq!(empty.entries, 0);

    db.ingest_behind(run(10..20, "a")).expect("first run");
    assert!(matches!(
        db.ingest_behind(run(15..25, "b")),
        Err(Error::IngestOverlap { .. })
    ));
    assert!(matches!(
        db.ingest_behind(run([5, 19], "b")),
        Err(Error::IngestOverlap { .. })
    ));
    db.ingest_behind(run(20..30, "c")).expect("disjoint run");
    db.ingest_behind(run(0..10, "d")).expect("disjoint run below");
    assert_eq!(get(&db, 15).as_deref(), Some("a15"));
    assert_eq!(get(&db, 25).as_deref(), Some("c25"));
    let last = db.stats().levels.len() - 1;
    assert_eq!(db.stats().levels[last].files, 3);

    let plain = tempfile::tempdir().expect("tempdir");
    let db = Db::open(plain.path(), small_options()).expect("open");
    assert!(matches!(
        db.ingest_behind(run(0..1, "v")),
        Err(Error::InvalidOption {
            name: "ingest_behind",
            ..
        })
    ));
}

#[test]
fn ingests_racing_with_writers_and_compactions_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(Db::open(dir.path(), options()).expect("open"));
    let writer = {
        let db = Arc::clone(&db);
        std::thread::spawn(move || {
            for round in 0..40u32 {
                for i in (0..2000).step_by(7) {
                    db.merge(&key(i), format!("w{round}").as_bytes())
                        .expect("merge");
                }
            }
        })
    };
    let mut shadowed = Vec::new();
    for chunk in 0..20u32 {
        let done = db
            .ingest_behind(run(chunk * 100..(chunk + 1) * 100, "i"))
            .expect("ingest");
        shadowed.extend(done.shadowed);
    }
    writer.join().expect("writer");
    // The writer's chains fold into puts now and then: those keys come
    // back as shadowed, and the caller writes them on top.
    for (k, v) in shadowed {
        db.merge(&k, &v).expect("merge");
    }
    db.compact_range(None, None).expect("compact");
    for i in 0..2000 {
        let value = get(&db, i).expect("every key is present");
        let parts: Vec<&str> = value.split(',').collect();
        let ingested = format!("i{i}");
        assert_eq!(
            parts.iter().filter(|p| **p == ingested).count(),
            1,
            "key {i}: {value}"
        );
        let writes = parts.iter().filter(|p| p.starts_with('w')).count();
        assert_eq!(writes, if i % 7 == 0 { 40 } else { 0 }, "key {i}: {value}");
    }
}
