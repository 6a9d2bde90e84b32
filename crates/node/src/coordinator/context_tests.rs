//! Client contexts are input: forged, stale or misdirected ones are refused
//! or bounded, and never lose an acknowledged write (regressions from
//! outside testing: a context claiming counter 2^64-1 for the coordinator
//! wrapped its dot counter; a context of key A superseded key B's siblings).

use proptest::prelude::*;
use strata_cluster::{Dot, NodeId, Token, VersionVector};

use super::fixtures::{coordinator, values};
use super::{CoordinatorError, encode_context};
use crate::dots::DotError;

fn node(name: &str) -> NodeId {
    NodeId::new(name).expect("id")
}

fn forged(key: &[u8], entries: &[(&str, u64)]) -> Vec<u8> {
    let clock = VersionVector::from_entries(entries.iter().map(|(n, c)| (node(n), *c, 0)));
    encode_context(Token::of(key), &clock)
}

/// The highest counter among the dots of `key`'s versions on `c`.
fn newest_counter(c: &super::Coordinator, key: &[u8]) -> u64 {
    let stored = c.context().storage.read(key).expect("read");
    stored
        .versions()
        .iter()
        .map(|v| v.dot.counter)
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_context_claiming_a_dot_never_issued_is_refused_and_later_writes_stay_visible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path(), 1);
    c.put(b"k".to_vec(), Some(b"first".to_vec()), &[], None)
        .await
        .expect("put");
    for claim in [newest_counter(&c, b"k") + 1, u64::MAX] {
        let err = c
            .put(
                b"k".to_vec(),
                Some(b"forged".to_vec()),
                &forged(b"k", &[("strata-0", claim)]),
                None,
            )
            .await
            .expect_err("claims a dot never issued");
        assert!(
            matches!(
                err,
                CoordinatorError::Dots(DotError::Refused(
                    strata_cluster::Error::ContextAhead { .. }
                ))
            ),
            "{err}"
        );
        assert_eq!(
            tonic::Status::from(err).code(),
            tonic::Code::InvalidArgument
        );
    }
    // The counter did not move: later writes are new, and visible.
    for value in [&b"second"[..], b"third"] {
        c.put(b"k".to_vec(), Some(value.to_vec()), &[], None)
            .await
            .expect("put");
    }
    let read = c.read(b"k".to_vec().into(), None).await.expect("get");
    assert_eq!(values(&read), [&b"first"[..], b"second", b"third"]);
}

#[tokio::test]
async fn claims_about_other_nodes_cover_only_what_this_replica_has_seen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path(), 1);
    // Another node's counter at 2^64-1: accepted, but bounded by what this
    // replica knows of that node for the key (nothing), so a later write
    // coordinated by that node could not be covered by it.
    let outcome = c
        .put(
            b"k".to_vec(),
            Some(b"v".to_vec()),
            &forged(b"k", &[("strata-9", u64::MAX)]),
            None,
        )
        .await
        .expect("put");
    assert_eq!(outcome.acked, 1);
    let stored = c.context().storage.read(b"k").expect("read");
    assert!(!stored.versions()[0].context.covers(&Dot {
        node: node("strata-9"),
        counter: 1,
    }));
}

#[tokio::test]
async fn a_context_of_another_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = coordinator(dir.path(), 1);
    c.put(b"a".to_vec(), Some(b"a1".to_vec()), &[], None)
        .await
        .expect("put");
    c.put(b"b".to_vec(), Some(b"b1".to_vec()), &[], None)
        .await
        .expect("put");
    let context_of_a = c
        .put(b"a".to_vec(), Some(b"a2".to_vec()), &[], None)
        .await
        .expect("put")
        .context;
    let err = c
        .put(b"b".to_vec(), Some(b"b2".to_vec()), &context_of_a, None)
        .await
        .expect_err("context of another key");
    assert!(matches!(err, CoordinatorError::Context(_)), "{err}");
    let read = c.read(b"b".to_vec().into(), None).await.expect("get");
    assert_eq!(
        values(&read),
        [&b"b1"[..]],
        "b's sibling was not superseded"
    );
}

/// How a generated write picks its context.
#[derive(Debug, Clone)]
enum ContextChoice {
    None,
    /// The context returned by an earlier operation (a read or a write).
    Genuine(usize),
    /// Entries relative to this node's newest counter for the key
    /// (`delta` may point above it), or absolute for other nodes.
    Forged(Vec<(u8, i8, bool)>),
    /// Bytes that are not a context.
    Garbage(Vec<u8>),
}

fn choice() -> impl Strategy<Value = ContextChoice> {
    prop_oneof![
        Just(ContextChoice::None),
        any::<usize>().prop_map(ContextChoice::Genuine),
        proptest::collection::vec((0u8..3, -3i8..4, any::<bool>()), 0..4)
            .prop_map(ContextChoice::Forged),
        proptest::collection::vec(any::<u8>(), 1..16).prop_map(ContextChoice::Garbage),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Arbitrary contexts thrown at the coordinator: every acknowledged
    /// write is, at the end, still a sibling or superseded by a later
    /// acknowledged write whose *client* claimed to have seen it; a
    /// refused write changes nothing.
    #[test]
    fn no_context_loses_an_acknowledged_write(ops in proptest::collection::vec(choice(), 1..24)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let c = coordinator(dir.path(), 1);
            let key = b"key".to_vec();
            let names = ["strata-0", "strata-1", "strata-2"];
            let mut genuine: Vec<Vec<u8>> = Vec::new();
            // (dot, claimed context) of each acknowledged write, in order.
            let mut acked: Vec<(Dot, VersionVector)> = Vec::new();
            for (i, op) in ops.into_iter().enumerate() {
                let context = match op {
                    ContextChoice::None => Vec::new(),
                    ContextChoice::Genuine(j) if !genuine.is_empty() => {
                        genuine[j % genuine.len()].clone()
                    }
                    ContextChoice::Genuine(_) => Vec::new(),
                    ContextChoice::Forged(entries) => {
                        let newest = newest_counter(&c, &key);
                        let entries: Vec<(&str, u64)> = entries
                            .iter()
                            .map(|&(n, delta, huge)| {
                                let counter = if huge {
                                    u64::MAX
                                } else {
                                    newest.saturating_add_signed(i64::from(delta))
                                };
                                (names[usize::from(n)], counter)
                            })
                            .collect();
                        forged(&key, &entries)
                    }
                    ContextChoice::Garbage(bytes) => bytes,
                };
                let claimed = super::decode_context(Token::of(&key), &context).ok();
                let before = c.context().storage.read(&key).expect("read");
                let value = format!("v{i}").into_bytes();
                match c.put(key.clone(), Some(value.clone()), &context, None).await {
                    Ok(outcome) => {
                        genuine.push(outcome.context);
                        let stored = c.context().storage.read(&key).expect("read");
                        let Some(version) = stored
                            .versions()
                            .iter()
                            .find(|v| v.value.as_deref() == Some(&value[..]))
                        else {
                            prop_assert!(false, "write {i} acknowledged but not visible");
                            unreachable!()
                        };
                        let claimed = claimed.expect("an accepted context decodes");
                        acked.push((version.dot.clone(), claimed));
                    }
                    Err(_) => {
                        prop_assert_eq!(&c.context().storage.read(&key).expect("read"), &before);
                    }
                }
                let read = c.read(key.clone().into(), None).await.expect("get");
                genuine.push(encode_context(Token::of(&key), &read.context));
            }
            let fin = c.context().storage.read(&key).expect("read");
            for (i, (dot, _)) in acked.iter().enumerate() {
                let present = fin.versions().iter().any(|v| &v.dot == dot);
                let superseded = acked[i + 1..].iter().any(|(_, claimed)| claimed.covers(dot));
                prop_assert!(present || superseded, "acknowledged write {dot:?} was lost");
            }
            Ok(())
        })?;
    }
}
