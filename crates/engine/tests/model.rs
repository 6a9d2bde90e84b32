//! Model test: random interleavings of every operation against a BTreeMap.

mod common;

use std::collections::BTreeMap;

use common::{Append, small_options};
use proptest::prelude::*;
use strata_engine::{Db, MergeOperator as _};

#[derive(Debug, Clone)]
enum Op {
    Put(u8, u16),
    Delete(u8),
    Merge(u8, u16),
    Get(u8),
    Scan(u8, u8),
    Flush,
    Compact(Option<u8>, Option<u8>),
    Reopen,
    SnapshotCheck,
}

fn key(k: u8) -> Vec<u8> {
    format!("k{k:03}").into_bytes()
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0u8..40;
    prop_oneof![
        8 => (k.clone(), any::<u16>()).prop_map(|(k, v)| Op::Put(k, v)),
        3 => k.clone().prop_map(Op::Delete),
        3 => (k.clone(), any::<u16>()).prop_map(|(k, v)| Op::Merge(k, v)),
        4 => k.clone().prop_map(Op::Get),
        2 => (k.clone(), k.clone()).prop_map(|(a, b)| Op::Scan(a.min(b), a.max(b))),
        1 => Just(Op::Flush),
        1 => (proptest::option::of(k.clone()), proptest::option::of(k)).prop_map(|(a, b)| Op::Compact(a, b)),
        1 => Just(Op::Reopen),
        1 => Just(Op::SnapshotCheck),
    ]
}

fn value(v: u16) -> Vec<u8> {
    // Values of varied length so blocks split at different places.
    let mut out = format!("{v}").into_bytes();
    out.resize(usize::from(v % 300) + 1, b'.');
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_a_btreemap(ops in proptest::collection::vec(op(), 1..250)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut db = Db::open(dir.path(), small_options()).expect("open");
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    db.put(&key(k), &value(v)).expect("put");
                    model.insert(key(k), value(v));
                }
                Op::Delete(k) => {
                    db.delete(&key(k)).expect("delete");
                    model.remove(&key(k));
                }
                Op::Merge(k, v) => {
                    db.merge(&key(k), &value(v)).expect("merge");
                    let merged = Append.merge(&key(k), model.get(&key(k)).map(Vec::as_slice), &value(v));
                    model.insert(key(k), merged);
                }
                Op::Get(k) => {
                    prop_assert_eq!(db.get(&key(k)).expect("get"), model.get(&key(k)).cloned());
                }
                Op::Scan(a, b) => {
                    let got: Vec<_> = db
                        .iter(Some(&key(a)), Some(&key(b)))
                        .expect("iter")
                        .collect::<Result<_, _>>()
                        .expect("scan");
                    let want: Vec<_> = model
                        .range(key(a)..key(b))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    prop_assert_eq!(got, want);
                }
                Op::Flush => db.flush().expect("flush"),
                Op::Compact(a, b) => {
                    db.compact_range(a.map(key).as_deref(), b.map(key).as_deref()).expect("compact");
                }
                Op::Reopen => {
                    db.close().expect("close");
                    db = Db::open(dir.path(), small_options()).expect("reopen");
                }
                Op::SnapshotCheck => {
                    // A snapshot keeps seeing the model as it was, through
                    // later writes and a full compaction.
                    let snapshot = db.snapshot();
                    let before = model.clone();
                    db.put(&key(0), b"after-snapshot").expect("put");
                    model.insert(key(0), b"after-snapshot".to_vec());
                    db.compact_range(None, None).expect("compact");
                    let seen: BTreeMap<_, _> = db
                        .iter_at(&snapshot, None, None)
                        .expect("iter")
                        .collect::<Result<_, _>>()
                        .expect("scan");
                    prop_assert_eq!(seen, before);
                }
            }
        }
        let all: BTreeMap<_, _> = db.iter(None, None).expect("iter").collect::<Result<_, _>>().expect("scan");
        prop_assert_eq!(all, model);
    }
}
