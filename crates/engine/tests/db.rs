//! Behaviour of the database API.

mod common;

use std::sync::Arc;

use common::{key, small_options};
use strata_engine::{Db, Error, Options, WriteBatch};

fn collect(db: &Db, start: Option<&[u8]>, end: Option<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
    db.iter(start, end)
        .expect("iter")
        .collect::<Result<_, _>>()
        .expect("scan")
}

#[test]
fn put_get_delete_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = Db::open(dir.path(), Options::default()).expect("open");
        db.put(b"a", b"1").expect("put");
        db.put(b"b", b"2").expect("put");
        db.put(b"a", b"3").expect("overwrite");
        db.delete(b"b").expect("delete");
        assert_eq!(db.get(b"a").expect("get"), Some(b"3".to_vec()));
        assert_eq!(db.get(b"b").expect("get"), None);
        assert_eq!(db.get(b"zz").expect("get"), None);
        db.close().expect("close");
    }
    let db = Db::open(dir.path(), Options::default()).expect("reopen");
    assert_eq!(db.get(b"a").expect("get"), Some(b"3".to_vec()));
    assert_eq!(db.get(b"b").expect("get"), None);
    assert!(
        db.stats().levels[0].files >= 1,
        "recovery writes the WAL to level 0"
    );
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _db = Db::open(dir.path(), Options::default()).expect("open");
    assert!(matches!(
        Db::open(dir.path(), Options::default()),
        Err(Error::Locked { .. })
    ));
}

#[test]
fn close_with_a_live_snapshot_or_iterator_says_so_and_the_lock_lasts_until_they_drop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), Options::default()).expect("open");
    db.put(b"k", b"v").expect("put");
    let snapshot = db.snapshot();
    let iter = db.iter(None, None).expect("iter");
    let err = db.close().expect_err("handles are alive");
    assert!(matches!(err, Error::InUse { handles: 1.., .. }), "{err}");
    assert!(matches!(
        Db::open(dir.path(), Options::default()),
        Err(Error::Locked { .. })
    ));
    drop(iter);
    drop(snapshot);
    let db = Db::open(dir.path(), Options::default()).expect("lock released");
    assert_eq!(db.get(b"k").expect("get"), Some(b"v".to_vec()));
    db.close().expect("nothing else holds it");
}

#[test]
fn current_that_is_not_utf8_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    Db::open(dir.path(), Options::default())
        .expect("open")
        .close()
        .expect("close");
    std::fs::write(dir.path().join("CURRENT"), [0xff, 0xfe, b'\n']).expect("write");
    let err = Db::open(dir.path(), Options::default()).expect_err("damaged CURRENT");
    assert!(
        matches!(&err, Error::Corruption { path, .. } if path.ends_with("CURRENT")),
        "{err}"
    );
}

#[test]
fn batches_apply_all_or_nothing_and_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), small_options()).expect("open");
    let mut batch = WriteBatch::new();
    batch
        .put(b"x", b"1")
        .put(b"y", b"2")
        .delete(b"x")
        .merge(b"y", b"3");
    db.write(batch).expect("write");
    assert_eq!(db.get(b"x").expect("get"), None);
    assert_eq!(db.get(b"y").expect("get"), Some(b"2,3".to_vec()));
    db.write(WriteBatch::new()).expect("empty batch is a no-op");
}

#[test]
fn iterators_respect_bounds_seek_and_deletes_across_flushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), small_options()).expect("open");
    for i in 0..2000 {
        db.put(&key(i), format!("v{i}").as_bytes()).expect("put");
    }
    db.flush().expect("flush");
    for i in (0..2000).step_by(2) {
        db.delete(&key(i)).expect("delete");
    }
    let all = collect(&db, None, None);
    assert_eq!(all.len(), 1000);
    assert!(all.iter().all(|(k, _)| k[k.len() - 1] % 2 == 1));
    let range = collect(&db, Some(&key(100)), Some(&key(110)));
    let keys: Vec<_> = range.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, (101..110).step_by(2).map(key).collect::<Vec<_>>());

    let mut it = db.iter(None, None).expect("iter");
    it.seek(&key(1500)).expect("seek");
    let (k, v) = it.next().expect("entry").expect("ok");
    assert_eq!((k, v), (key(1501), b"v1501".to_vec()));
}

#[test]
fn snapshots_see_the_past_through_flush_and_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), small_options()).expect("open");
    for i in 0..500 {
        db.put(&key(i), b"old").expect("put");
    }
    let snapshot = db.snapshot();
    for i in 0..500 {
        db.put(&key(i), b"new").expect("put");
    }
    db.delete(&key(7)).expect("delete");
    db.compact_range(None, None).expect("compact");
    assert_eq!(
        db.get_at(&key(7), &snapshot).expect("get"),
        Some(b"old".to_vec())
    );
    assert_eq!(db.get(&key(7)).expect("get"), None);
    assert_eq!(db.get(&key(8)).expect("get"), Some(b"new".to_vec()));
    let past = db.iter_at(&snapshot, None, None).expect("iter").count();
    assert_eq!(past, 500);
    drop(snapshot);
    db.compact_range(None, None).expect("compact");
    assert_eq!(db.get(&key(7)).expect("get"), None);
}

#[test]
fn merge_operands_combine_on_read_flush_compaction_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = Db::open(dir.path(), small_options()).expect("open");
        db.merge(b"m", b"a").expect("merge");
        db.flush().expect("flush");
        db.merge(b"m", b"b").expect("merge");
        assert_eq!(db.get(b"m").expect("get"), Some(b"a,b".to_vec()));
        db.compact_range(None, None).expect("compact");
        db.merge(b"m", b"c").expect("merge");
        db.put(b"p", b"base").expect("put");
        db.merge(b"p", b"x").expect("merge");
        assert_eq!(db.get(b"m").expect("get"), Some(b"a,b,c".to_vec()));
        db.close().expect("close");
    }
    let db = Db::open(dir.path(), small_options()).expect("reopen");
    assert_eq!(db.get(b"m").expect("get"), Some(b"a,b,c".to_vec()));
    assert_eq!(db.get(b"p").expect("get"), Some(b"base,x".to_vec()));
    let scanned = collect(&db, None, None);
    assert_eq!(
        scanned,
        vec![
            (b"m".to_vec(), b"a,b,c".to_vec()),
            (b"p".to_vec(), b"base,x".to_vec())
        ]
    );
}

#[test]
fn merge_without_an_operator_is_a_specific_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), Options::default()).expect("open");
    db.merge(b"k", b"x").expect("writes are accepted");
    assert!(matches!(db.get(b"k"), Err(Error::NoMergeOperator)));
}

#[test]
fn many_writes_build_levels_and_stay_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), small_options()).expect("open");
    for round in 0..3u32 {
        for i in 0..3000 {
            db.put(&key(i * 7919 % 3000), format!("r{round}-{i}").as_bytes())
                .expect("put");
        }
    }
    db.flush().expect("flush");
    let stats = db.stats();
    let deeper: usize = stats.levels[1..].iter().map(|l| l.files).sum();
    assert!(deeper > 0, "compaction moved data below level 0: {stats:?}");
    assert!(stats.write_amplification > 0.0);
    assert_eq!(collect(&db, None, None).len(), 3000);
    for i in 0..3000 {
        let value = db
            .get(&key(i * 7919 % 3000))
            .expect("get")
            .expect("present");
        assert_eq!(value, format!("r2-{i}").into_bytes());
    }
}

#[test]
fn concurrent_writers_all_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options {
        durability: strata_engine::Durability::SyncEachGroup,
        ..small_options()
    };
    let db = Arc::new(Db::open(dir.path(), options).expect("open"));
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                for i in 0..200 {
                    db.put(&key(t * 1000 + i), &t.to_le_bytes()).expect("put");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer");
    }
    assert_eq!(collect(&db, None, None).len(), 1600);
    assert_eq!(db.stats().last_sequence, 1600);
}

#[test]
fn large_values_survive_flush_and_reopen_and_oversized_writes_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big: Vec<u8> = (0..10u32 << 20).map(|i| (i % 251) as u8).collect();
    {
        let db = Db::open(dir.path(), Options::default()).expect("open");
        db.put(b"big", &big).expect("10 MiB value");
        db.flush().expect("flush");
        let huge = vec![0u8; 65 << 20];
        assert!(matches!(
            db.put(b"huge", &huge),
            Err(Error::WriteTooLarge { .. })
        ));
        db.close().expect("close");
    }
    let db = Db::open(dir.path(), Options::default()).expect("reopen");
    assert_eq!(
        db.get(b"big").expect("get").as_deref(),
        Some(big.as_slice())
    );
    assert_eq!(db.get(b"huge").expect("get"), None);
}

#[test]
fn writers_racing_with_flushes_all_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options {
        durability: strata_engine::Durability::SyncEachGroup,
        ..small_options()
    };
    let db = Arc::new(Db::open(dir.path(), options).expect("open"));
    let writers: Vec<_> = (0..16u32)
        .map(|t| {
            let db = Arc::clone(&db);
            std::thread::spawn(move || {
                for i in 0..150 {
                    db.put(&key(t * 1000 + i), &i.to_le_bytes()).expect("put");
                    if i % 50 == 0 {
                        db.flush().expect("flush");
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let all = collect(&db, None, None);
    assert_eq!(all.len(), 16 * 150);
    assert_eq!(db.stats().last_sequence, 16 * 150);
}

#[test]
fn long_merge_chains_fold_at_write_time_with_snapshots_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path(), small_options()).expect("open");
    db.put(b"k", b"base").expect("put");
    let mut expected = b"base".to_vec();
    let mut snapshots = Vec::new();
    for i in 0..20u8 {
        db.merge(b"k", &[b'a' + i]).expect("merge");
        expected.push(b',');
        expected.push(b'a' + i);
        snapshots.push((db.snapshot(), expected.clone()));
    }
    assert_eq!(db.get(b"k").expect("get"), Some(expected));
    for (snapshot, value) in &snapshots {
        assert_eq!(db.get_at(b"k", snapshot).expect("get"), Some(value.clone()));
    }
    drop(snapshots);
    db.close().expect("close");
    // Replaying the WAL's merge records gives the same value.
    let db = Db::open(dir.path(), small_options()).expect("reopen");
    let value = db.get(b"k").expect("get").expect("present");
    assert!(
        value.ends_with(b"s,t"),
        "{}",
        String::from_utf8_lossy(&value)
    );
}

#[test]
fn writes_outrunning_flush_and_compaction_are_reported_as_stalls_with_causes() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One immutable memtable at most and a level 0 that stops writes at two
    // files: a writer of 4 KiB memtables waits for background work often.
    let options = Options {
        memtable_bytes: 4096,
        max_immutable_memtables: 1,
        l0_compaction_trigger: 1,
        l0_slowdown_trigger: 1,
        l0_stop_trigger: 2,
        ..small_options()
    };
    let db = Db::open(dir.path(), options).expect("open");
    let started = std::time::Instant::now();
    for i in 0..2000 {
        db.put(&key(i), &[b'v'; 100]).expect("put");
    }
    let elapsed = started.elapsed();
    let stalls = db.drain_stalls();
    assert!(!stalls.is_empty(), "a writer this far ahead waits");
    assert!(
        stalls
            .iter()
            .all(|s| s.duration <= elapsed && s.started >= started),
        "every stall lies within the run: {stalls:?}"
    );
    let stopped = stalls
        .iter()
        .filter(|s| s.cause != strata_engine::StallCause::Level0Slowdown)
        .count();
    assert!(
        stopped > 0,
        "some writes stopped for flush or compaction: {stalls:?}"
    );
    let stats = db.stats();
    let logged: u64 = stalls
        .iter()
        .map(|s| u64::try_from(s.duration.as_micros()).expect("short"))
        .sum();
    assert_eq!(
        stats.stall_micros, logged,
        "the total is the sum of the events"
    );
    for total in &stats.stalls_by_cause {
        let events: Vec<_> = stalls.iter().filter(|s| s.cause == total.cause).collect();
        assert_eq!(total.count, events.len() as u64, "{:?}", total.cause);
        let micros: u64 = events
            .iter()
            .map(|s| u64::try_from(s.duration.as_micros()).expect("short"))
            .sum();
        assert_eq!(total.micros, micros, "{:?}", total.cause);
    }
    assert_eq!(stats.stall_events_dropped, 0);
    assert!(db.drain_stalls().is_empty(), "drained once");
    for i in 0..2000 {
        assert_eq!(db.get(&key(i)).expect("get"), Some(vec![b'v'; 100]));
    }
}

/// A synced log is preallocated (its fsyncs then write no size metadata);
/// an unsynced one (`Durability::None`) grows as written, so creating it
/// costs no device flush.
#[test]
fn only_a_synced_log_is_preallocated() {
    let wal_len = |durability| {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = Options {
            durability,
            memtable_bytes: 1 << 20,
            ..Options::default()
        };
        let db = Db::open(dir.path(), options).expect("open");
        let len: u64 = std::fs::read_dir(dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .map(|p| std::fs::metadata(p).expect("metadata").len())
            .sum();
        db.close().expect("close");
        len
    };
    assert!(wal_len(strata_engine::Durability::SyncEachGroup) > 1 << 20);
    assert_eq!(wal_len(strata_engine::Durability::None), 0);
}
