//! Whether a node that has just started has heard the members it knows.
//!
//! A restarted node knows its members from its data directory, each as
//! down until gossip hears it, and the failure detector needs a few rounds
//! to hear them: a request arriving in the first second after a restart
//! found its key's other replicas "down" and failed with UNAVAILABLE
//! although they were up. A new cluster's founder knows only itself until
//! gossip brings the other founders, and a ring of the founders it has
//! heard so far places keys on the wrong replicas. Now a request that
//! would fail for want of live replicas, or whose view lacks a founder,
//! waits (the rest never do) until its view has what it needs
//! ([`Settle::may_serve`]) or gossip has settled: this node hears every
//! member it knows that has not left and knows every founder
//! ([`settled`]), or [`SETTLE_ROUNDS`] gossip rounds have passed since the
//! start; at most the request's own timeout. Cassandra waits for gossip
//! to settle before it serves clients for the same reason.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use strata_cluster::{ClusterView, NodeId, NodeState};
use tokio::sync::watch;

/// Gossip rounds after a start at most before requests stop waiting for
/// members this node has not heard (10 s at the default 500 ms rounds;
/// the failure detector convicts a silent member in fewer).
pub const SETTLE_ROUNDS: u32 = 20;

/// Whether `me` hears every member in `view` that has not left, knows of
/// every one of `founders` (a new cluster's `--initial-cluster`: before
/// gossip brings them, a founder's view holds only itself), and, if it has
/// yet to become a normal member itself, hears at least one: nothing it
/// expects to hear is still missing.
#[must_use]
pub fn settled(view: &ClusterView, me: &NodeId, founders: &[NodeId]) -> bool {
    if founders.iter().any(|f| view.node(f).is_none()) {
        return false;
    }
    let mut others = view
        .nodes()
        .filter(|(id, n)| *id != me && n.state != NodeState::Left)
        .peekable();
    let normal = view.node(me).is_some_and(|n| n.state == NodeState::Normal);
    if !normal && others.peek().is_none() {
        return false;
    }
    others.all(|(_, n)| n.alive)
}

/// A latch that opens once gossip has settled after this node's start.
#[derive(Debug)]
pub struct Settle {
    started: Instant,
    window: Duration,
    /// `--initial-cluster`'s other members.
    founders: Vec<NodeId>,
    /// Read by every request: an atomic, not a lock.
    open: AtomicBool,
    /// Bumped at every view observed while closed, and when it opens.
    views: watch::Sender<()>,
}

impl Settle {
    /// A closed latch for node `me` starting now with gossip rounds of
    /// `round`, in a cluster founded by `founders` (`--initial-cluster`,
    /// possibly empty).
    #[must_use]
    pub fn new(round: Duration, me: &NodeId, founders: &[NodeId]) -> Self {
        Self {
            started: Instant::now(),
            window: round * SETTLE_ROUNDS,
            founders: founders.iter().filter(|f| *f != me).cloned().collect(),
            open: AtomicBool::new(false),
            views: watch::Sender::new(()),
        }
    }

    /// Takes the view `me` just published: opens the latch when it has
    /// heard every member it expects, or when the window has passed, and
    /// says which in the log (once).
    pub fn observe(&self, view: &ClusterView, me: &NodeId) {
        if self.is_open() {
            return;
        }
        let waited = self.started.elapsed();
        let heard_all = settled(view, me, &self.founders);
        if (heard_all || waited >= self.window) && !self.open.swap(true, Ordering::AcqRel) {
            let waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
            if heard_all {
                tracing::info!(
                    members = view.nodes().filter(|(_, n)| n.alive).count(),
                    waited_ms,
                    "gossip settled: this node hears every member it knows"
                );
            } else {
                let mut missing: Vec<String> = view
                    .nodes()
                    .filter(|(id, n)| *id != me && n.state != NodeState::Left && !n.alive)
                    .map(|(id, _)| id.to_string())
                    .collect();
                missing.extend(
                    self.founders
                        .iter()
                        .filter(|f| view.node(f).is_none())
                        .map(ToString::to_string),
                );
                tracing::info!(
                    not_heard = %missing.join(","),
                    waited_ms,
                    "gossip settle window passed: requests no longer wait for members not \
                     heard since the start"
                );
            }
        }
        // Waiters look at every view while the latch is closed (one may
        // have what its request needs already) and see it open.
        self.views.send_replace(());
    }

    /// Whether a request may be served on `view`: the latch is open, or
    /// `view` knows every founder and is `enough` for the request (a view
    /// without a founder is a ring still forming: its replicas for a key
    /// may not be the key's).
    pub fn may_serve(&self, view: &ClusterView, enough: impl FnOnce(&ClusterView) -> bool) -> bool {
        self.is_open() || (self.founders.iter().all(|f| view.node(f).is_some()) && enough(view))
    }

    /// Whether requests no longer wait.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Waits until the latch opens or `enough` holds (asked again at
    /// every view observed), `at_most`.
    pub async fn wait(&self, at_most: Duration, enough: impl Fn() -> bool) {
        // Subscribed before looking: a view observed after the look wakes
        // this waiter.
        let mut views = self.views.subscribe();
        let _ = tokio::time::timeout(at_most, async {
            while !self.is_open() && !enough() {
                if views.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::testing::member;

    fn id(s: &str) -> NodeId {
        NodeId::new(s).expect("id")
    }

    fn view(mine: NodeState, others: &[(&str, NodeState, bool)]) -> ClusterView {
        let me = id("me");
        let mut peers = vec![member(&me, "me:1", mine, true)];
        for (name, state, alive) in others {
            peers.push(member(&id(name), &format!("{name}:1"), *state, *alive));
        }
        ClusterView::from_peers(peers)
    }

    #[test]
    fn settled_once_every_member_that_has_not_left_is_heard() {
        use NodeState::{Joining, Leaving, Left, Normal};
        let me = id("me");
        let settled = |v: &ClusterView| settled(v, &me, &[]);
        assert!(!settled(&view(
            Normal,
            &[("a", Normal, true), ("b", Normal, false)]
        )));
        assert!(!settled(&view(Normal, &[("a", Leaving, false)])));
        assert!(!settled(&view(Normal, &[("a", Joining, false)])));
        assert!(settled(&view(
            Normal,
            &[("a", Normal, true), ("b", Joining, true)]
        )));
        // A member that left is not waited for.
        assert!(settled(&view(
            Normal,
            &[("a", Normal, true), ("b", Left, false)]
        )));
        // A cluster of one has nothing to hear; a node yet to join expects
        // someone.
        assert!(settled(&view(Normal, &[])));
        assert!(!settled(&view(Joining, &[])));
        assert!(!settled(&view(Joining, &[("a", Left, false)])));
        assert!(settled(&view(Joining, &[("a", Normal, true)])));
        // A founder of a new cluster waits for the other founders to be
        // known and heard; one that left later is not waited for.
        let founders = [id("a"), id("b")];
        assert!(!super::settled(
            &view(Normal, &[("a", Normal, true)]),
            &me,
            &founders
        ));
        assert!(!super::settled(
            &view(Normal, &[("a", Normal, true), ("b", Normal, false)]),
            &me,
            &founders
        ));
        assert!(super::settled(
            &view(Normal, &[("a", Normal, true), ("b", Normal, true)]),
            &me,
            &founders
        ));
        assert!(super::settled(
            &view(Normal, &[("a", Normal, true), ("b", Left, false)]),
            &me,
            &founders
        ));
    }

    #[tokio::test]
    async fn the_latch_opens_when_gossip_settles_and_stays_open() {
        let me = id("me");
        let settle = Settle::new(Duration::from_secs(3600), &id("me"), &[]);
        settle.observe(
            &view(NodeState::Normal, &[("a", NodeState::Normal, false)]),
            &me,
        );
        assert!(!settle.is_open());
        let waiting = tokio::time::timeout(
            Duration::from_millis(20),
            settle.wait(Duration::MAX, || false),
        );
        assert!(waiting.await.is_err(), "a closed latch holds its waiters");
        settle.observe(
            &view(NodeState::Normal, &[("a", NodeState::Normal, true)]),
            &me,
        );
        assert!(settle.is_open());
        settle.wait(Duration::MAX, || false).await;
        // A member going down later does not close it again.
        settle.observe(
            &view(NodeState::Normal, &[("a", NodeState::Normal, false)]),
            &me,
        );
        assert!(settle.is_open());
    }

    #[test]
    fn a_request_is_served_on_a_view_that_knows_every_founder_and_is_enough() {
        use NodeState::Normal;
        let me = id("me");
        let settle = Settle::new(
            Duration::from_secs(3600),
            &me,
            &[me.clone(), id("a"), id("b")],
        );
        let partial = view(Normal, &[("a", Normal, true)]);
        let whole = view(Normal, &[("a", Normal, true), ("b", Normal, false)]);
        // A ring still forming is never enough: its replicas for a key may
        // not be the key's.
        assert!(!settle.may_serve(&partial, |_| true));
        assert!(settle.may_serve(&whole, |_| true));
        assert!(!settle.may_serve(&whole, |_| false));
        settle.observe(
            &view(Normal, &[("a", Normal, true), ("b", Normal, true)]),
            &me,
        );
        assert!(settle.is_open());
        assert!(settle.may_serve(&partial, |_| false));
    }

    #[tokio::test]
    async fn the_latch_opens_after_the_window_with_members_still_unheard() {
        let me = id("me");
        let settle = Settle::new(Duration::ZERO, &id("me"), &[]);
        settle.observe(
            &view(NodeState::Normal, &[("a", NodeState::Normal, false)]),
            &me,
        );
        assert!(settle.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_its_bound() {
        let settle = Settle::new(Duration::from_secs(3600), &id("me"), &[]);
        let started = tokio::time::Instant::now();
        settle.wait(Duration::from_secs(2), || false).await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        assert!(!settle.is_open());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_the_first_view_that_is_enough() {
        let me = id("me");
        let settle = Arc::new(Settle::new(Duration::from_secs(3600), &id("me"), &[]));
        let enough = Arc::new(AtomicBool::new(false));
        let waiter = tokio::spawn({
            let (settle, enough) = (Arc::clone(&settle), Arc::clone(&enough));
            async move {
                let started = tokio::time::Instant::now();
                settle
                    .wait(Duration::from_secs(60), || enough.load(Ordering::SeqCst))
                    .await;
                started.elapsed()
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        // One member heard of two: enough for the request, not settled.
        enough.store(true, Ordering::SeqCst);
        let partial = view(
            NodeState::Normal,
            &[
                ("a", NodeState::Normal, true),
                ("b", NodeState::Normal, false),
            ],
        );
        settle.observe(&partial, &me);
        let waited = waiter.await.expect("waiter");
        assert_eq!(waited, Duration::from_secs(1));
        assert!(!settle.is_open());
    }
}
