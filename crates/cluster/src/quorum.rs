//! Quorum bookkeeping for one request: pure state machines the coordinator
//! feeds with replica answers as they arrive.

use crate::{NodeId, Placement, Siblings};

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not decided yet: more answers are needed and possible.
    Pending,
    /// Enough replicas succeeded.
    Reached,
    /// So many replicas failed that the requirement can no longer be met:
    /// answer `UNAVAILABLE` now rather than at the deadline.
    Unreachable {
        /// Successful answers so far.
        acks: u32,
        /// Answers required.
        required: u32,
    },
}

/// Counts write acknowledgements against the required number.
///
/// Built for a key's [`Placement`], it applies the pending-write rule
/// ([`write_acknowledged`]): while the key's owners are changing, `required`
/// acks are needed from the current owners *and* from the future ones.
#[derive(Debug, Clone)]
pub struct WriteQuorum {
    required: u32,
    contacted: u32,
    /// The key's owners, for the pending-write rule (`None`: any
    /// `required` of the `contacted`).
    placement: Option<Placement>,
    acked: Vec<NodeId>,
    failed: Vec<NodeId>,
}

/// The pending-write rule: a write at level `required` is acknowledged
/// when `required` of the key's current owners and `required` of its
/// future owners (`placement.future`) hold it. Without it a write acked by
/// current owners just before a change could be missing from a read quorum
/// of the new owners just after (Cassandra adds pending endpoints to
/// `blockFor` for the same reason), so W + R > N would not hold across it.
#[must_use]
pub fn write_acknowledged(required: u32, placement: &Placement, acked: &[NodeId]) -> bool {
    let enough =
        |owners: &[NodeId]| count_in(owners, acked) >= required && count(owners) >= required;
    enough(&placement.replicas) && enough(&placement.future)
}

fn count_in(owners: &[NodeId], nodes: &[NodeId]) -> u32 {
    // Counted on every answer of a write: no allocation.
    let n = owners.iter().filter(|o| nodes.contains(o)).count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl WriteQuorum {
    /// A write sent to `contacted` replicas that needs `required` acks.
    #[must_use]
    pub fn new(required: u32, contacted: u32) -> Self {
        Self {
            required,
            contacted,
            placement: None,
            acked: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// A write of a key placed at `placement` (current owners, pending ones,
    /// future ones) that needs `required` acks from the current owners and
    /// from the future owners. Record answers under the owner they count
    /// for (a stand-in's ack counts for the replica it stands in for).
    #[must_use]
    pub fn for_placement(required: u32, placement: &Placement) -> Self {
        let contacted = count(&placement.replicas) + count(&placement.pending);
        Self {
            required,
            contacted,
            placement: Some(placement.clone()),
            acked: Vec::new(),
            failed: Vec::new(),
        }
    }

    /// Records a replica's answer; a node's second answer is ignored.
    pub fn record(&mut self, node: &NodeId, ok: bool) -> Progress {
        if !self.acked.contains(node) && !self.failed.contains(node) {
            if ok {
                self.acked.push(node.clone());
            } else {
                self.failed.push(node.clone());
            }
        }
        self.progress()
    }

    /// The current state.
    #[must_use]
    pub fn progress(&self) -> Progress {
        let acks = self.acks();
        if let Some(placement) = &self.placement {
            let reached = write_acknowledged(self.required, placement, &self.acked);
            let impossible = [&placement.replicas, &placement.future]
                .into_iter()
                .any(|owners| {
                    count(owners).saturating_sub(count_in(owners, &self.failed)) < self.required
                });
            return if reached {
                Progress::Reached
            } else if impossible {
                Progress::Unreachable {
                    acks,
                    required: self.required,
                }
            } else {
                Progress::Pending
            };
        }
        let outstanding = self.contacted.saturating_sub(acks + count(&self.failed));
        if acks >= self.required {
            Progress::Reached
        } else if acks + outstanding < self.required {
            Progress::Unreachable {
                acks,
                required: self.required,
            }
        } else {
            Progress::Pending
        }
    }

    /// Replicas that acknowledged.
    #[must_use]
    pub fn acked(&self) -> &[NodeId] {
        &self.acked
    }

    /// How many replicas acknowledged.
    #[must_use]
    pub fn acks(&self) -> u32 {
        count(&self.acked)
    }
}

/// Collects replica read answers and merges them.
#[derive(Debug, Clone)]
pub struct ReadQuorum {
    inner: WriteQuorum,
    answers: Vec<(NodeId, Siblings)>,
}

/// The merged outcome of a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResolution {
    /// Every answer merged.
    pub merged: Siblings,
    /// Replicas whose answer differed from `merged`: read repair sends them
    /// the merged set.
    pub stale: Vec<NodeId>,
}

impl ReadQuorum {
    /// A read sent to `contacted` replicas that needs `required` answers.
    #[must_use]
    pub fn new(required: u32, contacted: u32) -> Self {
        Self {
            inner: WriteQuorum::new(required, contacted),
            answers: Vec::new(),
        }
    }

    /// Records a replica's versions (`None`: the replica failed).
    pub fn record(&mut self, node: &NodeId, answer: Option<Siblings>) -> Progress {
        let ok = answer.is_some();
        let already = self.answers.iter().any(|(n, _)| n == node);
        if let (Some(siblings), false) = (answer, already) {
            self.answers.push((node.clone(), siblings));
        }
        self.inner.record(node, ok)
    }

    /// The current state.
    #[must_use]
    pub fn progress(&self) -> Progress {
        self.inner.progress()
    }

    /// How many replicas answered.
    #[must_use]
    pub fn answered(&self) -> u32 {
        self.inner.acks()
    }

    /// The replicas that answered, in the order they did.
    pub fn answered_by(&self) -> impl Iterator<Item = &NodeId> {
        self.answers.iter().map(|(node, _)| node)
    }

    /// Merges the answers received so far.
    #[must_use]
    pub fn resolve(&self) -> ReadResolution {
        let mut merged = Siblings::new();
        for (_, siblings) in &self.answers {
            merged.merge(siblings);
        }
        let stale = self
            .answers
            .iter()
            .filter(|(_, siblings)| *siblings != merged)
            .map(|(node, _)| node.clone())
            .collect();
        ReadResolution { merged, stale }
    }
}

fn count(nodes: &[NodeId]) -> u32 {
    u32::try_from(nodes.len()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dot, Version, VersionVector};

    fn node(i: u8) -> NodeId {
        NodeId::new(format!("n{i}")).expect("valid id")
    }

    #[test]
    fn quorum_is_reached_after_w_acks() {
        let mut q = WriteQuorum::new(2, 3);
        assert_eq!(q.record(&node(1), true), Progress::Pending);
        assert_eq!(
            q.record(&node(1), true),
            Progress::Pending,
            "duplicates do not count"
        );
        assert_eq!(q.record(&node(2), true), Progress::Reached);
        assert_eq!(q.acked(), [node(1), node(2)]);
    }

    #[test]
    fn failures_make_the_quorum_unreachable_early() {
        let mut q = WriteQuorum::new(3, 3);
        assert_eq!(q.record(&node(1), true), Progress::Pending);
        assert_eq!(
            q.record(&node(2), false),
            Progress::Unreachable {
                acks: 1,
                required: 3
            }
        );
        let mut q = WriteQuorum::new(2, 3);
        q.record(&node(1), false);
        assert_eq!(
            q.progress(),
            Progress::Pending,
            "two replicas may still ack"
        );
        assert_eq!(
            q.record(&node(2), false),
            Progress::Unreachable {
                acks: 0,
                required: 2
            }
        );
        assert_eq!(
            WriteQuorum::new(2, 1).progress(),
            Progress::Unreachable {
                acks: 0,
                required: 2
            }
        );
    }

    fn placement(replicas: &[u8], future: &[u8]) -> Placement {
        let ids = |v: &[u8]| v.iter().map(|&i| node(i)).collect::<Vec<_>>();
        Placement {
            replicas: ids(replicas),
            pending: ids(&future
                .iter()
                .copied()
                .filter(|f| !replicas.contains(f))
                .collect::<Vec<_>>()),
            future: ids(future),
        }
    }

    #[test]
    fn during_a_change_w_current_and_w_future_owners_must_ack() {
        // n4 joins and takes n3's place for this key.
        let p = placement(&[1, 2, 3], &[1, 2, 4]);
        let mut q = WriteQuorum::for_placement(2, &p);
        assert_eq!(q.record(&node(3), true), Progress::Pending);
        assert_eq!(
            q.record(&node(4), true),
            Progress::Pending,
            "1 current + 1 future... not 2 of each"
        );
        assert_eq!(q.record(&node(1), true), Progress::Reached);
        assert!(write_acknowledged(2, &p, &[node(1), node(3), node(4)]));
        assert!(!write_acknowledged(2, &p, &[node(3), node(4)]));
        // Two current owners alone are not enough either.
        assert!(!write_acknowledged(2, &p, &[node(1), node(3)]));
        assert!(
            write_acknowledged(2, &p, &[node(1), node(2)]),
            "shared owners count for both"
        );
        // The joiner failing leaves the future owners one short of being
        // able to lose another.
        let mut q = WriteQuorum::for_placement(3, &p);
        assert!(matches!(
            q.record(&node(4), false),
            Progress::Unreachable { .. }
        ));
        // Nothing changing: the plain rule.
        let still = placement(&[1, 2, 3], &[1, 2, 3]);
        let mut q = WriteQuorum::for_placement(2, &still);
        q.record(&node(2), true);
        assert_eq!(q.record(&node(3), true), Progress::Reached);
    }

    #[test]
    fn reads_merge_answers_and_name_stale_replicas() {
        let v = |n: u8, value: &str| Version {
            dot: Dot {
                node: node(n),
                counter: 1,
            },
            context: VersionVector::new(),
            value: Some(value.as_bytes().to_vec().into()),
            timestamp_micros: 1,
            request_id: 0,
        };
        let mut q = ReadQuorum::new(2, 3);
        q.record(&node(1), Some(Siblings::from_versions([v(1, "a")])));
        q.record(&node(3), None);
        let both = Siblings::from_versions([v(1, "a"), v(2, "b")]);
        assert_eq!(q.record(&node(2), Some(both.clone())), Progress::Reached);
        let resolution = q.resolve();
        assert_eq!(resolution.merged, both);
        assert_eq!(resolution.stale, vec![node(1)]);
    }
}
