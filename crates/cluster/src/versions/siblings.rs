//! Versions of one key and the set of those not yet superseded.

use super::clock::{Dot, VersionVector};
use crate::{Error, NodeId};

/// One write of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The write event; unique across the cluster.
    pub dot: Dot,
    /// What the writer had seen: every version whose dot this covers is
    /// superseded by this one.
    pub context: VersionVector,
    /// The value; `None` for a delete (a tombstone).
    pub value: Option<bytes::Bytes>,
    /// Coordinator wall clock, microseconds: last-write-wins order and
    /// tombstone age. Never used for causality.
    pub timestamp_micros: u64,
    /// The client's id for the request that wrote it (0: none): a retry of
    /// that request is recognized instead of written again. Not part of
    /// the version's identity (the dot is).
    pub request_id: u64,
}

impl Version {
    /// Whether this version supersedes `other`.
    #[must_use]
    pub fn supersedes(&self, other: &Version) -> bool {
        self.dot != other.dot && self.context.covers(&other.dot)
    }
}

/// The versions of a key that no other version supersedes, sorted by dot.
///
/// Merging is a join: commutative, associative and idempotent, so replicas
/// that exchange versions in any order end with the same set.
///
/// **Protocol contract.** A context entry `n: c` covers every dot of `n` up
/// to `c`, so a node's dots for one key must be issued in causal order: the
/// coordinator merges the new version into its own replica's sibling set
/// and replicates that whole set, never the lone version. Then any replica
/// holding `(n, c)` also holds `n`'s earlier versions of the key, or what
/// superseded them, and a context built from it covers nothing its reader
/// did not see. (A lone version replicated without its coordinator's
/// siblings could let a later context cover a concurrent write unseen.)
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Siblings {
    versions: Vec<Version>,
}

impl Siblings {
    /// No versions: the key was never written (or everything was GC'd).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The siblings among `versions` (superseded ones are dropped).
    #[must_use]
    pub fn from_versions(versions: impl IntoIterator<Item = Version>) -> Self {
        let mut s = Self::new();
        for v in versions {
            s.insert(v);
        }
        s
    }

    /// The current siblings, sorted by dot.
    #[must_use]
    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    /// Whether there is no version at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// Adds one version, keeping only what nothing supersedes.
    pub fn insert(&mut self, version: Version) {
        if self
            .versions
            .iter()
            .any(|v| v.dot == version.dot || v.supersedes(&version))
        {
            return; // already here, or obsolete
        }
        self.versions.retain(|v| !version.supersedes(v));
        let position = self
            .versions
            .binary_search_by(|v| v.dot.cmp(&version.dot))
            .unwrap_or_else(|position| position);
        self.versions.insert(position, version);
    }

    /// Merges `other` into `self`.
    pub fn merge(&mut self, other: &Siblings) {
        for v in &other.versions {
            self.insert(v.clone());
        }
    }

    /// The context to hand to a client: covers every sibling, so a write
    /// carrying it supersedes them all.
    #[must_use]
    pub fn context(&self) -> VersionVector {
        let mut context = VersionVector::new();
        for v in &self.versions {
            context.join(&v.context);
            context.add_dot(&v.dot, v.timestamp_micros);
        }
        context
    }

    /// The siblings as a client sees them: one version per client write.
    /// A write retried through another coordinator, after its first
    /// attempt's answer was lost (a node killed mid-request), can leave two
    /// versions with the same request id and value; they are one write,
    /// shown once (the smallest dot). The set itself keeps both, and its
    /// [`context`](Self::context) covers both, so a write made with that
    /// context supersedes both.
    #[must_use]
    pub fn one_per_request(&self) -> Siblings {
        let mut shown: Vec<Version> = Vec::with_capacity(self.versions.len());
        for v in &self.versions {
            let duplicate = v.request_id != 0
                && shown
                    .iter()
                    .any(|s| s.request_id == v.request_id && s.value == v.value);
            if !duplicate {
                shown.push(v.clone());
            }
        }
        Siblings { versions: shown }
    }

    /// Sibling values that are not deletes.
    pub fn live_values(&self) -> impl Iterator<Item = &[u8]> {
        self.versions.iter().filter_map(|v| v.value.as_deref())
    }

    /// Last-write-wins view: the version with the greatest timestamp (dot
    /// breaks ties, so every replica picks the same one).
    #[must_use]
    pub fn last_write(&self) -> Option<&Version> {
        self.versions
            .iter()
            .max_by(|a, b| (a.timestamp_micros, &a.dot).cmp(&(b.timestamp_micros, &b.dot)))
    }
}

/// The counter `node` issues next, after `issued`, for a write whose client
/// sent `claimed`.
///
/// The client's context is input, not state: it cannot move the counter.
/// A claim on a dot of `node` beyond `issued` never came from this cluster
/// and is refused, so a forged context can neither wrap the counter nor make
/// later writes look obsolete.
///
/// # Errors
/// [`Error::ContextAhead`] for such a claim; [`Error::CounterExhausted`]
/// when `issued` is `u64::MAX`.
pub fn next_counter(issued: u64, claimed: &VersionVector, node: &NodeId) -> Result<u64, Error> {
    let claim = claimed.get(node);
    if claim > issued {
        return Err(Error::ContextAhead {
            node: node.clone(),
            claimed: claim,
            issued,
        });
    }
    issued
        .checked_add(1)
        .ok_or_else(|| Error::CounterExhausted { node: node.clone() })
}

/// The context a coordinator gives a new version: what the client claims to
/// have seen, but no more than what the coordinator's own sibling set for
/// the key (`local`) knows (the pointwise minimum of the two).
///
/// A context covers dots; one that covers a dot its coordinator has not
/// seen could make a later write (of any node) obsolete on arrival, which
/// would lose it while it was acknowledged. Bounding by `local` makes that
/// impossible whatever the client sends. A client that read a newer version
/// from another replica than a lagging coordinator gets an extra sibling
/// instead, which the next write with a context resolves; never a loss.
#[must_use]
pub fn admitted_context(claimed: &VersionVector, local: &VersionVector) -> VersionVector {
    claimed.meet(local)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn node(i: u8) -> NodeId {
        NodeId::new(format!("n{i}")).expect("valid id")
    }

    fn write(n: u8, counter: u64, context: &VersionVector, value: &str) -> Version {
        Version {
            dot: Dot {
                node: node(n),
                counter,
            },
            context: context.clone(),
            value: Some(value.as_bytes().to_vec().into()),
            timestamp_micros: counter,
            request_id: 0,
        }
    }

    fn values(s: &Siblings) -> Vec<&[u8]> {
        s.live_values().collect()
    }

    #[test]
    fn one_write_retried_through_two_coordinators_is_shown_once() {
        let empty = VersionVector::new();
        let retried = |n: u8, counter: u64, value: &str, request_id: u64| Version {
            request_id,
            ..write(n, counter, &empty, value)
        };
        let s = Siblings::from_versions([
            retried(2, 7, "v", 41),
            retried(1, 3, "v", 41),
            retried(3, 1, "other", 0),
            retried(3, 2, "other", 0),
        ]);
        assert_eq!(s.versions().len(), 4, "the set keeps every dot");
        let shown = s.one_per_request();
        assert_eq!(values(&shown), [&b"v"[..], b"other", b"other"]);
        assert_eq!(shown.versions()[0].dot.node, node(1), "the smallest dot");
        // The context still covers the hidden version: a write with it
        // supersedes both.
        let next = write(1, 4, &s.context(), "next");
        assert_eq!(
            values(&Siblings::from_versions(
                [next].into_iter().chain(s.versions().iter().cloned())
            )),
            [&b"next"[..]]
        );
        // Same request id, different values: not one write.
        let s = Siblings::from_versions([retried(1, 1, "a", 9), retried(2, 1, "b", 9)]);
        assert_eq!(s.one_per_request().versions().len(), 2);
    }

    #[test]
    fn writes_without_context_are_siblings_even_from_one_node() {
        let empty = VersionVector::new();
        let s = Siblings::from_versions([write(1, 1, &empty, "a"), write(1, 2, &empty, "b")]);
        assert_eq!(values(&s), [&b"a"[..], b"b"]);
    }

    #[test]
    fn a_write_with_the_merged_context_resolves_the_siblings() {
        let empty = VersionVector::new();
        let mut s = Siblings::from_versions([write(1, 1, &empty, "a"), write(2, 1, &empty, "b")]);
        let context = s.context();
        s.insert(write(3, 1, &context, "resolved"));
        assert_eq!(values(&s), [&b"resolved"[..]]);
    }

    #[test]
    fn a_stale_context_supersedes_only_what_it_saw() {
        let empty = VersionVector::new();
        let mut s = Siblings::from_versions([write(1, 1, &empty, "a")]);
        let seen = s.context();
        s.insert(write(2, 1, &empty, "concurrent"));
        s.insert(write(1, 2, &seen, "update of a"));
        assert_eq!(values(&s), [&b"update of a"[..], b"concurrent"]);
    }

    #[test]
    fn deletes_are_versions_and_can_be_siblings() {
        let empty = VersionVector::new();
        let mut s = Siblings::from_versions([write(1, 1, &empty, "a")]);
        let mut tombstone = write(2, 1, &s.context(), "");
        tombstone.value = None;
        s.insert(tombstone);
        assert_eq!(s.versions().len(), 1);
        assert!(s.live_values().next().is_none(), "deleted");
    }

    #[test]
    fn next_counter_refuses_claims_beyond_what_was_issued_and_never_wraps() {
        let empty = VersionVector::new();
        assert_eq!(next_counter(5, &empty, &node(1)), Ok(6));
        let honest = VersionVector::from_entries([(node(1), 5, 0)]);
        assert_eq!(next_counter(5, &honest, &node(1)), Ok(6));
        let forged = VersionVector::from_entries([(node(1), u64::MAX, 0)]);
        assert_eq!(
            next_counter(5, &forged, &node(1)),
            Err(Error::ContextAhead {
                node: node(1),
                claimed: u64::MAX,
                issued: 5
            })
        );
        // Claims about other nodes do not move this node's counter.
        assert_eq!(next_counter(5, &forged, &node(2)), Ok(6));
        assert_eq!(
            next_counter(u64::MAX, &empty, &node(1)),
            Err(Error::CounterExhausted { node: node(1) })
        );
    }

    #[test]
    fn admitted_context_never_covers_what_the_coordinator_has_not_seen() {
        let local = VersionVector::from_entries([(node(1), 4, 0), (node(2), 9, 0)]);
        let claimed =
            VersionVector::from_entries([(node(1), 2, 0), (node(2), u64::MAX, 0), (node(3), 7, 0)]);
        let admitted = admitted_context(&claimed, &local);
        assert_eq!(admitted.get(&node(1)), 2);
        assert_eq!(admitted.get(&node(2)), 9);
        assert_eq!(admitted.get(&node(3)), 0);
        assert!(!admitted.covers(&Dot {
            node: node(2),
            counter: 10
        }));
    }

    #[test]
    fn last_write_wins_is_deterministic() {
        let empty = VersionVector::new();
        let mut a = write(1, 1, &empty, "a");
        let mut b = write(2, 1, &empty, "b");
        a.timestamp_micros = 7;
        b.timestamp_micros = 7;
        let s = Siblings::from_versions([a, b]);
        assert_eq!(
            s.last_write().map(|v| v.dot.node.to_string()),
            Some("n2".into())
        );
    }

    /// Histories produced by the protocol this module assumes: four
    /// nodes each hold a replica state; a client reads some replicas (its
    /// context is their merged context); the coordinator creates the version
    /// with its next counter, merges it into its own state and replicates
    /// that whole state to some other replicas.
    fn history() -> impl Strategy<Value = Vec<Version>> {
        proptest::collection::vec((0u8..4, 0u8..16, 0u8..16), 1..16).prop_map(|steps| {
            let mut states = vec![Siblings::new(); 4];
            let mut counters = [0u64; 4];
            let mut all = Vec::new();
            for (n, read_mask, replicate_mask) in steps {
                let mut seen = Siblings::new();
                for (i, state) in states.iter().enumerate() {
                    if read_mask >> i & 1 == 1 {
                        seen.merge(state);
                    }
                }
                let context = seen.context();
                let slot = &mut counters[usize::from(n)];
                *slot = next_counter(*slot, &VersionVector::new(), &node(n)).expect("small");
                let version = write(n, *slot, &context, &format!("v{}", all.len()));
                all.push(version.clone());
                states[usize::from(n)].insert(version);
                let coordinator = states[usize::from(n)].clone();
                for (i, state) in states.iter_mut().enumerate() {
                    if replicate_mask >> i & 1 == 1 {
                        state.merge(&coordinator);
                    }
                }
            }
            all
        })
    }

    proptest! {
        #[test]
        fn merge_is_a_join(history in history(), split in any::<(usize, usize)>()) {
            let n = history.len();
            let (i, j) = (split.0 % (n + 1), split.1 % (n + 1));
            let (i, j) = (i.min(j), i.max(j));
            let a = Siblings::from_versions(history[..i].iter().cloned());
            let b = Siblings::from_versions(history[i..j].iter().cloned());
            let c = Siblings::from_versions(history[j..].iter().cloned());

            let mut ab = a.clone();
            ab.merge(&b);
            let mut ba = b.clone();
            ba.merge(&a);
            prop_assert_eq!(&ab, &ba, "commutative");

            let mut ab_c = ab.clone();
            ab_c.merge(&c);
            let mut bc = b.clone();
            bc.merge(&c);
            let mut a_bc = a.clone();
            a_bc.merge(&bc);
            prop_assert_eq!(&ab_c, &a_bc, "associative");

            let mut twice = ab_c.clone();
            twice.merge(&ab_c);
            prop_assert_eq!(&twice, &ab_c, "idempotent");

            // Order of arrival does not matter either.
            let reversed = Siblings::from_versions(history.iter().rev().cloned());
            prop_assert_eq!(&reversed, &ab_c);
            // Nothing in the result supersedes anything else in it.
            for x in ab_c.versions() {
                for y in ab_c.versions() {
                    prop_assert!(!x.supersedes(y));
                }
            }
        }
    }
}
