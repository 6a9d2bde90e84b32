//! Handing over every hint this node holds before it leaves the ring (the
//! last step of a decommission): each target's hints go to the target when
//! gossip sees it up, otherwise to a live normal member that keeps them as
//! hints for it; a target that has left itself gets none, its hints go to
//! their keys' replicas (`departed.rs`). A delivery that fails (the
//! receiver went down or is cut off), or finds no live member to take
//! them, is retried with the next candidate; only a segment that cannot
//! be read stops the hand-over.

use std::time::Duration;

use strata_cluster::{NodeId, NodeState};

use super::TakeError;
use super::departed::{self, has_left};
use crate::context::Context;
use crate::throttle::Throttle;
use crate::transport::RemoteReplica;

/// Time between attempts to hand over a target's hints.
const RETRY: Duration = Duration::from_millis(500);

/// Delivers every hint `ctx` holds, each write bounded by `timeout`,
/// retrying a failed delivery every [`RETRY`] until it is taken.
/// `status` is told why it waits (`Some`) and when a target is done
/// (`None`).
///
/// # Errors
/// A segment that cannot be read (its hints stay on disk).
pub(crate) async fn hand_over_all(
    ctx: &Context,
    timeout: Duration,
    mut status: impl FnMut(Option<&str>),
) -> Result<(), String> {
    for (target, _) in ctx.hints.targets() {
        for attempt in 0usize.. {
            // The replay may be delivering this target's segments right
            // now: take them only once it is done with them.
            let delivery = ctx.hints.delivery().await;
            match hand_over_target(ctx, &target, attempt, timeout).await {
                Ok(()) => break,
                Err(TakeError::Unreadable(e)) => return Err(e),
                Err(TakeError::Undelivered(e)) => {
                    drop(delivery);
                    // Logged at attempts 0, 1, 2, 4, 8...: a hand-over may
                    // wait long for a member to take the hints.
                    if attempt == 0 || attempt.is_power_of_two() {
                        tracing::warn!(%target, attempt, error = %e,
                            "handing over hints failed; retrying");
                    }
                    status(Some(&format!(
                        "handing over hints for {target} (retrying): {e}"
                    )));
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
        status(None);
    }
    Ok(())
}

/// Delivers `target`'s sealed segments, each deleted once delivered
/// (renamed `*.corrupt` past damage, as the replay does: `take.rs`;
/// expired hints are dropped, not handed on to start a new window). A
/// target that is down gets its hints kept by a live normal member: the
/// `attempt`-th candidate, so a retry tries another.
async fn hand_over_target(
    ctx: &Context,
    target: &NodeId,
    attempt: usize,
    timeout: Duration,
) -> Result<(), TakeError> {
    let store = &ctx.hints;
    let view = ctx.view();
    if has_left(&view, target) {
        // Not to another member as hints for it: nobody would take them.
        let mut unpaced = Throttle::new(0);
        return departed::redirect(ctx, target, &mut unpaced, timeout)
            .await
            .map(drop);
    }
    let (to, hint_for) = match view.node(target).filter(|n| n.alive) {
        Some(n) => (
            RemoteReplica {
                id: target.clone(),
                address: n.internal_address.clone(),
            },
            None,
        ),
        None => {
            let candidates: Vec<_> = view
                .nodes()
                .filter(|(id, n)| {
                    **id != ctx.id && *id != target && n.alive && n.state == NodeState::Normal
                })
                .collect();
            if candidates.is_empty() {
                // Waited for, as a range waits for its receiver: leaving
                // now could lose a write only this node holds.
                return Err(TakeError::Undelivered(
                    "the target is down and no live member can take them".into(),
                ));
            }
            let (id, n) = candidates[attempt % candidates.len()];
            (
                RemoteReplica {
                    id: id.clone(),
                    address: n.internal_address.clone(),
                },
                Some(target),
            )
        }
    };
    for segment in store.sealed(target).await.map_err(TakeError::Unreadable)? {
        let (records, damage) = store
            .live_hints(&segment)
            .await
            .map_err(TakeError::Unreadable)?;
        for record in records {
            let (key, siblings) = record
                .into_write()
                .map_err(|e| TakeError::Unreadable(e.to_string()))?;
            ctx.transport
                .write(&to, &key, &siblings, hint_for, timeout)
                .await
                .map_err(|e| TakeError::Undelivered(format!("to {}: {e}", to.id)))?;
        }
        store.taken(target, segment, damage, "handed over").await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use strata_cluster::{ClusterView, Dot, Siblings, Version, VersionVector};

    use super::*;
    use crate::context::Topology;
    use crate::hints::{HintLimits, HintStore};
    use crate::metrics::HintMetrics;
    use crate::storage::Storage;
    use crate::testing::{ContextBuilder, member};
    use crate::transport::memory::{Link, MemoryTransport};

    fn id(i: usize) -> NodeId {
        NodeId::new(format!("node-{i}")).expect("id")
    }

    fn siblings(value: &str) -> Siblings {
        Siblings::from_versions([Version {
            dot: Dot {
                node: id(9),
                counter: 1,
            },
            context: VersionVector::new(),
            value: Some(value.as_bytes().to_vec().into()),
            timestamp_micros: 1,
            request_id: 0,
        }])
    }

    fn open_hints(dir: &Path) -> HintStore {
        HintStore::open(dir, HintLimits::default(), HintMetrics::default()).expect("hints")
    }

    /// Node 0 hands over (leaving); nodes 1.. live in the in-memory
    /// transport, those in `down` down in gossip's view.
    struct Net {
        /// Every node's directory, removed with it.
        _dir: tempfile::TempDir,
        /// Node 0's data directory.
        home: std::path::PathBuf,
        transport: Arc<MemoryTransport>,
    }

    impl Net {
        fn new(nodes: usize) -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let transport = Arc::new(MemoryTransport::default());
            for i in 1..nodes {
                let home = dir.path().join(format!("node-{i}"));
                let storage = Storage::open(
                    &home.join("engine"),
                    strata_engine::Durability::SyncEachGroup,
                )
                .expect("storage");
                transport.add(
                    &id(i),
                    Arc::new(storage),
                    Arc::new(open_hints(&home.join("hints"))),
                );
            }
            let home = dir.path().join("node-0");
            Self {
                _dir: dir,
                home,
                transport,
            }
        }

        /// Stores `keys` hints for node `target` in node 0's hint store
        /// (closed again, so a test may damage its segment).
        async fn hints_for(&self, target: usize, keys: std::ops::Range<usize>) {
            let store = open_hints(&self.home.join("hints"));
            for k in keys {
                store
                    .store(&id(target), format!("key-{k}").as_bytes(), &siblings("v"))
                    .await
                    .expect("store");
            }
        }

        /// Node 0's context: `nodes` members, node 0 leaving, those in
        /// `down` down.
        fn node0(&self, nodes: usize, down: &[usize]) -> Arc<Context> {
            self.node0_with(nodes, &[(0, NodeState::Leaving)], down)
        }

        /// Node 0's context: `nodes` members, normal unless `states`
        /// says otherwise, those in `down` down.
        fn node0_with(
            &self,
            nodes: usize,
            states: &[(usize, NodeState)],
            down: &[usize],
        ) -> Arc<Context> {
            self.builder(nodes, states, down).build()
        }

        /// [`Net::node0_with`], still to be built.
        fn builder(
            &self,
            nodes: usize,
            states: &[(usize, NodeState)],
            down: &[usize],
        ) -> ContextBuilder<'_> {
            let view = ClusterView::from_peers((0..nodes).map(|i| {
                let state = states
                    .iter()
                    .find(|(n, _)| *n == i)
                    .map_or(NodeState::Normal, |(_, s)| *s);
                member(&id(i), &format!("memory-{i}"), state, !down.contains(&i))
            }));
            ContextBuilder::new(&self.home)
                .id(&id(0))
                .factor(3)
                .topology(Topology::Fixed(Arc::new(view)))
                .transport(Arc::clone(&self.transport) as _)
        }

        /// Keys node `i` stores itself.
        fn stored(&self, i: usize, keys: std::ops::Range<usize>) -> usize {
            let storage = self.transport.storage(&id(i));
            keys.filter(|k| holds(&storage, *k)).count()
        }

        /// For each key, the nodes that hold it (node 0 is `ctx`'s own
        /// store), of `nodes`.
        fn holders(
            &self,
            ctx: &Context,
            nodes: usize,
            keys: std::ops::Range<usize>,
        ) -> Vec<Vec<NodeId>> {
            keys.map(|k| {
                (0..nodes)
                    .filter(|&i| {
                        let storage = if i == 0 {
                            Arc::clone(&ctx.storage)
                        } else {
                            self.transport.storage(&id(i))
                        };
                        holds(&storage, k)
                    })
                    .map(id)
                    .collect()
            })
            .collect()
        }
    }

    fn holds(storage: &Storage, k: usize) -> bool {
        !storage
            .read(format!("key-{k}").as_bytes())
            .expect("read")
            .versions()
            .is_empty()
    }

    /// The nodes that should hold each of `keys`: their live replicas on
    /// the ring, less leaving and left members.
    fn receivers_of(ctx: &Context, keys: std::ops::Range<usize>) -> Vec<Vec<NodeId>> {
        let view = ctx.view();
        keys.map(|k| {
            let mut ids = super::departed::receivers(&view, format!("key-{k}").as_bytes(), 3);
            ids.sort();
            ids
        })
        .collect()
    }

    /// Runs a hand-over for at most `within`: its outcome (`None` when
    /// still running then) and what it reported.
    async fn hand_over(
        ctx: &Context,
        within: Duration,
    ) -> (Option<Result<(), String>>, Vec<Option<String>>) {
        let mut said = Vec::new();
        let outcome = tokio::time::timeout(
            within,
            hand_over_all(ctx, Duration::from_millis(200), |why| {
                said.push(why.map(str::to_owned));
            }),
        )
        .await
        .ok();
        (outcome, said)
    }

    /// A hand-over still running after 1.5 s, holding `held` (a target's
    /// hints) and saying `why` it waits.
    async fn still_waiting(ctx: &Context, held: (NodeId, u64), why: &str) {
        let (outcome, said) = hand_over(ctx, Duration::from_millis(1500)).await;
        assert_eq!(outcome, None, "gave up: {said:?}");
        assert_eq!(ctx.hints.targets(), [held]);
        assert!(said.iter().flatten().any(|s| s.contains(why)), "{said:?}");
    }

    #[tokio::test]
    async fn hints_go_to_their_target_or_past_a_failing_member_to_the_next() {
        let net = Net::new(4);
        net.hints_for(2, 0..5).await;
        net.hints_for(3, 5..25).await;
        // node-3 is down: its hints go to a live member, node-1 first,
        // which cannot be reached.
        net.transport.set_link(&id(1), Link::Down);
        let ctx = net.node0(4, &[3]);

        let (outcome, said) = hand_over(&ctx, Duration::from_secs(10)).await;
        assert_eq!(outcome, Some(Ok(())));
        assert!(ctx.hints.targets().is_empty(), "{:?}", ctx.hints.targets());
        // node-2 is up: its hints are written to it.
        assert_eq!(net.stored(2, 0..5), 5);
        // node-3's are kept for it by node-2, the member after the one that
        // failed; none reached node-1.
        assert_eq!(net.transport.hints(&id(2)).targets(), [(id(3), 20)]);
        assert!(net.transport.hints(&id(1)).targets().is_empty());
        assert_eq!(net.transport.served(&id(1)), (0, 0));
        let retried: Vec<&String> = said.iter().flatten().collect();
        assert_eq!(retried.len(), 1, "{said:?}");
        assert!(
            retried[0].starts_with("handing over hints for node-3 (retrying): to node-1:"),
            "{said:?}"
        );
        // Each target's end is reported, clearing the retry.
        assert_eq!(said.last(), Some(&None));
    }

    #[tokio::test]
    async fn with_no_member_to_take_them_hints_are_kept_and_the_hand_over_waits() {
        let net = Net::new(3);
        net.hints_for(2, 0..3).await;
        // node-2 (the target) and node-1 (the only other member) are down.
        let ctx = net.node0(3, &[1, 2]);
        still_waiting(&ctx, (id(2), 3), "no live member can take them").await;
    }

    #[tokio::test]
    async fn a_damaged_segment_hands_over_what_precedes_the_damage_and_is_set_aside() {
        let net = Net::new(3);
        net.hints_for(2, 0..4).await;
        let dir = net.home.join("hints").join("node-2");
        let segment = std::fs::read_dir(&dir)
            .expect("dir")
            .next()
            .expect("one segment")
            .expect("entry")
            .path();
        let mut bytes = std::fs::read(&segment).expect("read");
        let last = bytes.len() - 3;
        bytes[last] ^= 0xFF;
        std::fs::write(&segment, bytes).expect("write");
        let ctx = net.node0(3, &[]);

        let (outcome, _) = hand_over(&ctx, Duration::from_secs(10)).await;
        assert_eq!(outcome, Some(Ok(())));
        assert_eq!(net.stored(2, 0..4), 3, "the records before the damage");
        assert!(segment.with_extension("corrupt").exists());
        assert!(ctx.hints.targets().is_empty());
    }
    #[tokio::test]
    async fn a_departed_target_s_hints_go_to_their_keys_replicas_not_to_it() {
        let net = Net::new(6);
        net.hints_for(5, 0..40).await;
        // node-0 is leaving; node-5 has left (its process still answers:
        // before, it was handed its hints and they ended in a store nobody
        // reads); node-4 is down.
        let ctx = net.node0_with(6, &[(0, NodeState::Leaving), (5, NodeState::Left)], &[4]);

        let (outcome, _) = hand_over(&ctx, Duration::from_secs(10)).await;
        assert_eq!(outcome, Some(Ok(())));
        assert!(ctx.hints.targets().is_empty(), "{:?}", ctx.hints.targets());
        assert_eq!(net.stored(5, 0..40), 0, "none went to the departed node");
        assert_eq!(net.transport.served(&id(5)), (0, 0));
        let expected = receivers_of(&ctx, 0..40);
        assert!(expected.iter().all(|r| !r.is_empty()));
        assert!(
            expected
                .iter()
                .flatten()
                .all(|r| ![0, 4, 5].map(id).contains(r)),
            "neither the leaving, the down nor the departed node: {expected:?}"
        );
        assert_eq!(net.holders(&ctx, 6, 0..40), expected);
        // Nothing kept as hints for it elsewhere either.
        for i in 1..5 {
            assert!(net.transport.hints(&id(i)).targets().is_empty());
        }
    }

    #[tokio::test]
    async fn the_replay_sends_a_departed_member_s_hints_to_every_live_replica_including_itself() {
        let net = Net::new(5);
        net.hints_for(4, 0..40).await;
        net.hints_for(3, 40..45).await;
        // node-4 has left and still runs; node-3 is down: its own hints
        // wait for it.
        let ctx = net.node0_with(5, &[(4, NodeState::Left)], &[3]);
        let settings = super::super::ReplaySettings {
            interval: Duration::from_millis(20),
            bytes_per_second: 0,
            batch_bytes: 1 << 20,
            timeout: Duration::from_millis(500),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let replay = tokio::spawn(super::super::replay_loop(
            Arc::clone(&ctx),
            settings,
            async move {
                let _ = stopped.await;
            },
        ));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while ctx.hints.targets().iter().any(|(t, _)| *t == id(4)) {
            assert!(tokio::time::Instant::now() < deadline, "still held");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop.send(());
        replay.await.expect("replay");

        assert_eq!(net.stored(4, 0..40), 0, "none went to the departed node");
        let expected = receivers_of(&ctx, 0..40);
        assert!(
            expected.iter().any(|r| r.contains(&id(0))),
            "some keys are this node's own: {expected:?}"
        );
        assert_eq!(net.holders(&ctx, 5, 0..40), expected);
        assert_eq!(ctx.hints.targets(), [(id(3), 5)], "the down node's wait");
    }

    #[tokio::test]
    async fn a_departed_target_s_hints_wait_while_no_replica_of_their_key_is_up() {
        let net = Net::new(4);
        net.hints_for(3, 0..3).await;
        // node-3 has left; node-0 is leaving and the others are down.
        let ctx = net.node0_with(4, &[(0, NodeState::Leaving), (3, NodeState::Left)], &[1, 2]);
        still_waiting(&ctx, (id(3), 3), "no replica of a key it held is up").await;
    }

    #[tokio::test]
    async fn expired_hints_are_dropped_not_handed_on_to_start_a_new_window() {
        let net = Net::new(3);
        net.hints_for(1, 0..3).await;
        net.hints_for(2, 3..6).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        // node-2 is down: its hints would be kept by node-1 for it.
        let ctx = net
            .builder(3, &[(0, NodeState::Leaving)], &[2])
            .hint_window(Duration::from_millis(10))
            .build();

        let (outcome, _) = hand_over(&ctx, Duration::from_secs(10)).await;
        assert_eq!(outcome, Some(Ok(())));
        assert!(ctx.hints.targets().is_empty());
        assert_eq!(net.stored(1, 0..6), 0, "nothing written to node-1");
        assert!(net.transport.hints(&id(1)).targets().is_empty(), "nor kept");
        assert_eq!(ctx.hints.metrics().expired.get(), 6);
    }
}
