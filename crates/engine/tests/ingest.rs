//! `Db::ingest_behind`: bulk-loaded tables under everything already stored.

mod common;

use std::sync::Arc;

use common::{key, small_options};
use strata_engine::{Db, Error, Options};

fn options() -> Options {
    small_options()
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
fn an_ingested_run_is_one_table_readable_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), options()).expect("open");
    let done = db.ingest_behind(&run(0..500, "v")).expect("ingest");
    assert_eq!(done.entries, 500);
    assert!(done.shadowed.is_empty());
    assert_eq!(done.level, 1, "nothing stored: level 1");
    let stats = db.stats();
    assert_eq!(stats.levels[1].files, 1);
    assert_eq!(stats.levels[1].bytes, done.table_bytes);
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
    assert_eq!(db.stats().levels[1].files, 1);
}

#[test]
fn ingested_entries_are_older_than_everything_stored_and_merge_under_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), options()).expect("open");
    // Key 2: an operand compacted down to level 1 (where, with nothing
    // below, it became a put); keys 1 and 2: operands in the memtable.
    db.merge(&key(2), b"new2").expect("merge");
    db.flush().expect("flush");
    db.merge(&key(9), b"x").expect("merge");
    db.flush().expect("flush");
    // Two level-0 tables: the compaction thread moves them to level 1.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while db.stats().levels[0].files > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "level 0 never compacted"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(db.stats().levels[1].files, 1);
    db.merge(&key(1), b"new1").expect("merge");
    db.merge(&key(2), b"newer2").expect("merge");
    let done = db.ingest_behind(&run(0..4, "old")).expect("ingest");
    assert_eq!(done.level, 2, "below the level-1 table overlapping it");
    assert_eq!(done.entries, 3);
    assert_eq!(done.shadowed, vec![2], "key 2 has a put stored");
    assert_eq!(get(&db, 0).as_deref(), Some("old0"));
    assert_eq!(get(&db, 1).as_deref(), Some("old1,new1"));
    assert_eq!(get(&db, 2).as_deref(), Some("new2,newer2"));
    // Writes after the ingest land on top; a second run over the same keys
    // goes below the first: older still.
    db.merge(&key(3), b"after3").expect("merge");
    let done = db.ingest_behind(&run([0, 3], "older")).expect("ingest");
    assert_eq!(done.level, 3);
    assert_eq!(get(&db, 3).as_deref(), Some("older3,old3,after3"));
    // Compaction keeps the order.
    db.compact_range(None, None).expect("compact");
    assert_eq!(get(&db, 0).as_deref(), Some("older0,old0"));
    assert_eq!(get(&db, 1).as_deref(), Some("old1,new1"));
    assert_eq!(get(&db, 2).as_deref(), Some("new2,newer2"));
    assert_eq!(get(&db, 3).as_deref(), Some("older3,old3,after3"));
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
        db.merge(&key(3), format!("m{i}").as_bytes())
            .expect("merge");
    }
    let done = db.ingest_behind(&run(0..5, "old")).expect("ingest");
    assert_eq!(done.entries, 2, "keys 0 and 4");
    assert_eq!(done.shadowed, vec![1, 2, 3]);
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
        db.ingest_behind(&unsorted),
        Err(Error::IngestUnsorted { index: 2 })
    ));
    let mut duplicate = run(0..3, "v");
    duplicate[1].0 = key(0);
    assert!(matches!(
        db.ingest_behind(&duplicate),
        Err(Error::IngestUnsorted { index: 1 })
    ));
    let empty = db
        .ingest_behind::<Vec<u8>, Vec<u8>>(&[])
        .expect("nothing to do");
    assert_eq!(empty.entries, 0);

    // Disjoint runs share level 1; each overlapping one goes a level down,
    // until the last level is in the way.
    assert_eq!(db.ingest_behind(&run(10..20, "a")).expect("run").level, 1);
    assert_eq!(db.ingest_behind(&run(20..30, "c")).expect("run").level, 1);
    let last = db.stats().levels.len() - 1;
    for level in 2..=last {
        let done = db.ingest_behind(&run([5, 15], "b")).expect("run");
        assert_eq!(done.level, level);
    }
    let before = db.stats().levels;
    assert!(matches!(
        db.ingest_behind(&run([5, 15], "b")),
        Err(Error::IngestOverlap { level, .. }) if level == last
    ));
    assert_eq!(db.stats().levels, before, "nothing changed");
    assert_eq!(get(&db, 25).as_deref(), Some("c25"));
    let b = vec!["b15"; last - 1].join(",");
    assert_eq!(get(&db, 15), Some(format!("{b},a15")));

    let plain = tempfile::tempdir().expect("tempdir");
    let db = Db::open(
        plain.path(),
        Options {
            merge_operator: None,
            ..small_options()
        },
    )
    .expect("open");
    assert!(matches!(
        db.ingest_behind(&run(0..1, "v")),
        Err(Error::NoMergeOperator)
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
        let entries = run(chunk * 100..(chunk + 1) * 100, "i");
        let done = db.ingest_behind(&entries).expect("ingest");
        shadowed.extend(done.shadowed.iter().map(|&i| entries[i].clone()));
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
