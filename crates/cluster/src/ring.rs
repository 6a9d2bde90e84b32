//! The consistent-hash ring with virtual nodes.
//!
//! Each member owns V tokens; a token `t` of member `m` makes `m` the
//! primary of the range `(previous token, t]`. A key's preference list is
//! the first N distinct members met walking clockwise from its token.
//! Joining members are not in preference lists yet: coordinators send them
//! writes as *pending* owners while they stream their future ranges.
//! Leaving members stay in preference lists until they are `Left`, and the
//! members that will take over are pending owners meanwhile.

use std::collections::HashMap;

use crate::{NodeId, Token, TokenRange};

/// A member's place in a topology change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Has tokens, streams its future ranges, receives writes as a pending
    /// owner, serves no reads.
    Joining,
    /// Owns its ranges.
    Normal,
    /// Streams its ranges to their next owners; still owns them.
    Leaving,
    /// Gone; owns nothing.
    Left,
}

/// A ring member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Stable id.
    pub id: NodeId,
    /// Its tokens (any order).
    pub tokens: Vec<Token>,
    /// Its state.
    pub state: NodeState,
}

/// Where a key's replicas are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    /// Current owners, in ring order: the first is the primary.
    pub replicas: Vec<NodeId>,
    /// Members that will own the key after the topology change in progress;
    /// writes go to them too.
    pub pending: Vec<NodeId>,
    /// The owners once the change in progress completes, in ring order
    /// (equal to `replicas` when nothing is changing).
    pub future: Vec<NodeId>,
}

/// An immutable view of the ring, built from the members' gossiped state.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    /// Token to the index in `members` of its owner, sorted by token.
    tokens: Vec<(Token, usize)>,
    members: Vec<Member>,
}

impl Ring {
    /// Builds the ring. `Left` members and duplicate tokens are ignored (the
    /// first member claiming a token, by id order, keeps it).
    #[must_use]
    pub fn new(members: impl IntoIterator<Item = Member>) -> Self {
        let mut members: Vec<Member> = members
            .into_iter()
            .filter(|m| m.state != NodeState::Left)
            .collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        let mut tokens: Vec<(Token, usize)> = members
            .iter()
            .enumerate()
            .flat_map(|(i, m)| m.tokens.iter().map(move |&t| (t, i)))
            .collect();
        // By token, then member: of a token's claims the first kept is the
        // first member's.
        tokens.sort_unstable();
        tokens.dedup_by_key(|(t, _)| *t);
        Self { tokens, members }
    }

    /// Whether [`Ring::new`] of these members (id, tokens, state; sorted by
    /// id, as a `BTreeMap` yields them) would build this very ring.
    #[must_use]
    pub fn built_from<'a>(
        &self,
        members: impl Iterator<Item = (&'a NodeId, &'a [Token], NodeState)>,
    ) -> bool {
        let mut own = self.members.iter();
        for (id, tokens, state) in members.filter(|(_, _, s)| *s != NodeState::Left) {
            match own.next() {
                Some(m) if &m.id == id && m.state == state && m.tokens == tokens => {}
                _ => return false,
            }
        }
        own.next().is_none()
    }

    /// Members on the ring (not `Left`), sorted by id.
    #[must_use]
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Replicas and pending owners of `token` with replication factor `n`.
    #[must_use]
    pub fn placement(&self, token: Token, n: usize) -> Placement {
        let current = self.walk(token, n, |s| {
            matches!(s, NodeState::Normal | NodeState::Leaving)
        });
        let future = self.walk(token, n, |s| {
            matches!(s, NodeState::Normal | NodeState::Joining)
        });
        let replicas: Vec<NodeId> = current
            .iter()
            .map(|&i| self.members[i].id.clone())
            .collect();
        let pending = future
            .iter()
            .filter(|i| !current.contains(i))
            .map(|&i| self.members[i].id.clone())
            .collect();
        let future = future.iter().map(|&i| self.members[i].id.clone()).collect();
        Placement {
            replicas,
            pending,
            future,
        }
    }

    /// The first `n` distinct members clockwise from `token` whose state
    /// passes `eligible`.
    fn walk(&self, token: Token, n: usize, eligible: impl Fn(NodeState) -> bool) -> Vec<usize> {
        let mut out = Vec::with_capacity(n);
        if self.tokens.is_empty() {
            return out;
        }
        let start = self.tokens.partition_point(|(t, _)| *t < token);
        for k in 0..self.tokens.len() {
            let (_, member) = self.tokens[(start + k) % self.tokens.len()];
            if eligible(self.members[member].state) && !out.contains(&member) {
                out.push(member);
                if out.len() == n {
                    break;
                }
            }
        }
        out
    }

    /// Every `Normal` member clockwise from `token`, each once: the
    /// preference list extended past the replicas, where sloppy-quorum
    /// stand-ins come from.
    #[must_use]
    pub fn successors(&self, token: Token) -> Vec<NodeId> {
        self.walk(token, self.members.len(), |s| s == NodeState::Normal)
            .into_iter()
            .map(|i| self.members[i].id.clone())
            .collect()
    }

    /// The ranges whose primary (first replica) is `node`, considering
    /// only members whose states pass as owners now.
    #[must_use]
    pub fn primary_ranges(&self, node: &NodeId) -> Vec<TokenRange> {
        let owners: Vec<(Token, usize)> = self
            .tokens
            .iter()
            .copied()
            .filter(|&(_, m)| {
                matches!(
                    self.members[m].state,
                    NodeState::Normal | NodeState::Leaving
                )
            })
            .collect();
        let mut out = Vec::new();
        for (k, &(token, member)) in owners.iter().enumerate() {
            if &self.members[member].id == node {
                let previous = owners[(k + owners.len() - 1) % owners.len()].0;
                out.push(TokenRange {
                    start: previous,
                    end: token,
                });
            }
        }
        out
    }

    /// Every range `node` replicates with replication factor `n` (only
    /// those it is the first replica of when `primary_only`), each with
    /// all its replicas: what anti-entropy on `node` compares.
    #[must_use]
    pub fn replicated_ranges(
        &self,
        node: &NodeId,
        n: usize,
        primary_only: bool,
    ) -> Vec<(TokenRange, Vec<NodeId>)> {
        let owners: Vec<Token> = self
            .tokens
            .iter()
            .filter(|&&(_, m)| {
                matches!(
                    self.members[m].state,
                    NodeState::Normal | NodeState::Leaving
                )
            })
            .map(|&(t, _)| t)
            .collect();
        let mut out = Vec::new();
        for (k, &token) in owners.iter().enumerate() {
            let replicas = self.placement(token, n).replicas;
            let included = if primary_only {
                replicas.first() == Some(node)
            } else {
                replicas.contains(node)
            };
            if included {
                let start = owners[(k + owners.len() - 1) % owners.len()];
                out.push((TokenRange { start, end: token }, replicas));
            }
        }
        out
    }

    /// Fraction of the ring each member holds a replica of, with
    /// replication factor `n` (sums to `n` when there are at least `n`
    /// members).
    #[must_use]
    pub fn replica_shares(&self, n: usize) -> HashMap<NodeId, f64> {
        let mut shares: HashMap<NodeId, f64> = HashMap::new();
        let len = self.tokens.len();
        for k in 0..len {
            let (token, _) = self.tokens[k];
            let previous = self.tokens[(k + len - 1) % len].0;
            let width = if len == 1 {
                u64::MAX as f64
            } else {
                token.0.wrapping_sub(previous.0) as f64
            };
            for id in self.placement(token, n).replicas {
                *shares.entry(id).or_default() += width / u64::MAX as f64;
            }
        }
        shares
    }
}

/// `count` tokens for `node`, derived from its id: the same id always gets
/// the same tokens, so a restarted node keeps its ranges.
#[must_use]
pub fn tokens_for(node: &NodeId, count: usize) -> Vec<Token> {
    (0..count as u64)
        .map(|i| {
            let mut seed = node.as_str().as_bytes().to_vec();
            seed.extend_from_slice(&i.to_be_bytes());
            Token(xxhash_rust::xxh3::xxh3_64_with_seed(
                &seed,
                0x5354_5241_5441,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: usize) -> NodeId {
        NodeId::new(format!("strata-{i}")).expect("valid id")
    }

    fn member(i: usize, vnodes: usize, state: NodeState) -> Member {
        Member {
            id: id(i),
            tokens: tokens_for(&id(i), vnodes),
            state,
        }
    }

    fn ring(nodes: usize, vnodes: usize) -> Ring {
        Ring::new((0..nodes).map(|i| member(i, vnodes, NodeState::Normal)))
    }

    #[test]
    fn a_token_claimed_twice_goes_to_the_first_member_by_id_and_left_members_hold_none() {
        let shared = Token(42);
        let claim = |i: usize, state| Member {
            id: id(i),
            tokens: vec![Token(100 + i as u64), shared],
            state,
        };
        // Given in any order: the lowest id keeps the shared token.
        let r = Ring::new([
            claim(3, NodeState::Normal),
            claim(1, NodeState::Normal),
            claim(2, NodeState::Left),
        ]);
        assert_eq!(
            r.tokens,
            vec![(shared, 0), (Token(101), 0), (Token(103), 1)]
        );
        assert_eq!(r.placement(Token(41), 1).replicas, [id(1)]);
        assert_eq!(
            r.members().iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
            [id(1), id(3)]
        );
        // What it was built from, in id order, Left members included.
        let from = |members: &[Member]| {
            let mut sorted = members.to_vec();
            sorted.sort_by(|a, b| a.id.cmp(&b.id));
            sorted
        };
        let same = from(&[
            claim(1, NodeState::Normal),
            claim(2, NodeState::Left),
            claim(3, NodeState::Normal),
        ]);
        let built = |members: &[Member]| {
            r.built_from(
                members
                    .iter()
                    .map(|m| (&m.id, m.tokens.as_slice(), m.state)),
            )
        };
        assert!(built(&same));
        let mut other_state = same.clone();
        other_state[2].state = NodeState::Leaving;
        let mut other_tokens = same.clone();
        other_tokens[0].tokens.pop();
        for changed in [&other_state[..], &other_tokens[..], &same[..1], &same[..0]] {
            assert!(!built(changed), "{changed:?}");
        }
    }

    #[test]
    fn preference_lists_hold_n_distinct_members() {
        let r = ring(5, 16);
        for key in 0..1000u32 {
            let p = r.placement(Token::of(&key.to_be_bytes()), 3);
            assert_eq!(p.replicas.len(), 3);
            let mut unique = p.replicas.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), 3, "{p:?}");
            assert!(p.pending.is_empty());
        }
        assert_eq!(
            ring(2, 16).placement(Token(7), 3).replicas.len(),
            2,
            "N capped by members"
        );
        assert!(Ring::new([]).placement(Token(7), 3).replicas.is_empty());
    }

    #[test]
    fn balance_across_cluster_sizes() {
        // Ratio of the largest to the smallest replica share, N = 3.
        let vnodes = 256;
        for nodes in 3..=20 {
            let shares = ring(nodes, vnodes).replica_shares(3);
            let max = shares.values().copied().fold(f64::MIN, f64::max);
            let min = shares.values().copied().fold(f64::MAX, f64::min);
            let total: f64 = shares.values().sum();
            println!(
                "nodes={nodes:2} vnodes={vnodes} max/min share = {:.3}",
                max / min
            );
            assert!(
                (total - 3.0).abs() < 1e-6,
                "replica shares sum to N: {total}"
            );
            assert!(max / min < 1.5, "{nodes} nodes: max/min {:.3}", max / min);
        }
    }

    #[test]
    fn a_join_moves_only_ranges_the_new_member_takes() {
        let before = ring(5, 64);
        let after = ring(6, 64);
        let (mut moved, total) = (0, 10_000u32);
        for key in 0..total {
            let token = Token::of(&key.to_be_bytes());
            let old = before.placement(token, 3).replicas;
            let new = after.placement(token, 3).replicas;
            if old != new {
                moved += 1;
                assert!(
                    new.contains(&id(5)),
                    "key {key} moved without the new node: {old:?} -> {new:?}"
                );
                // Exactly one replica changes: the new member replaces one.
                assert_eq!(old.iter().filter(|n| !new.contains(n)).count(), 1);
            }
        }
        // The new member holds about N/6 of the keys.
        let fraction = f64::from(moved) / f64::from(total);
        println!("join of a 6th node moved {:.1}% of keys", fraction * 100.0);
        assert!((0.35..0.65).contains(&fraction), "{fraction}");
    }

    #[test]
    fn a_leave_moves_only_the_leaving_members_ranges() {
        let before = ring(6, 64);
        let after = Ring::new((0..6).map(|i| {
            let state = if i == 2 {
                NodeState::Left
            } else {
                NodeState::Normal
            };
            member(i, 64, state)
        }));
        let (mut moved, total) = (0, 10_000u32);
        for key in 0..total {
            let token = Token::of(&key.to_be_bytes());
            let old = before.placement(token, 3).replicas;
            let new = after.placement(token, 3).replicas;
            if old == new {
                assert!(!old.contains(&id(2)), "key {key} kept the leaver");
            } else {
                moved += 1;
                assert!(old.contains(&id(2)), "key {key} moved needlessly");
                // The leaver's replica goes to one node; the others stay.
                assert_eq!(new.iter().filter(|n| !old.contains(n)).count(), 1);
            }
        }
        let fraction = f64::from(moved) / f64::from(total);
        println!(
            "leave of 1 of 6 nodes moved {:.1}% of keys",
            fraction * 100.0
        );
        assert!((0.35..0.65).contains(&fraction), "{fraction}");
    }

    #[test]
    fn joining_and_leaving_members_are_pending_owners_not_replicas() {
        let mut members: Vec<Member> = (0..4).map(|i| member(i, 32, NodeState::Normal)).collect();
        members.push(member(4, 32, NodeState::Joining));
        let r = Ring::new(members.clone());
        let mut saw_pending = false;
        for key in 0..2000u32 {
            let p = r.placement(Token::of(&key.to_be_bytes()), 3);
            assert!(
                !p.replicas.contains(&id(4)),
                "joining members serve no reads"
            );
            if !p.pending.is_empty() {
                assert_eq!(p.pending, vec![id(4)]);
                saw_pending = true;
            }
        }
        assert!(saw_pending);

        members[4].state = NodeState::Normal;
        members[0].state = NodeState::Leaving;
        let r = Ring::new(members);
        let p = (0..2000u32)
            .map(|k| r.placement(Token::of(&k.to_be_bytes()), 3))
            .find(|p| p.replicas.contains(&id(0)))
            .expect("node 0 replicates something");
        assert_eq!(
            p.pending.len(),
            1,
            "a successor takes over node 0's replica: {p:?}"
        );
        assert!(!p.pending.contains(&id(0)));
    }

    #[test]
    fn primary_ranges_tile_the_ring() {
        let r = ring(4, 8);
        let ranges: Vec<TokenRange> = (0..4).flat_map(|i| r.primary_ranges(&id(i))).collect();
        assert_eq!(ranges.len(), 32);
        for key in 0..1000u32 {
            let t = Token::of(&key.to_be_bytes());
            let containing = ranges.iter().filter(|range| range.contains(t)).count();
            assert_eq!(containing, 1, "token {t:?}");
        }
    }

    #[test]
    fn tokens_are_stable_per_id() {
        assert_eq!(tokens_for(&id(1), 4), tokens_for(&id(1), 4));
        assert_ne!(tokens_for(&id(1), 4), tokens_for(&id(2), 4));
    }

    #[test]
    fn replicated_ranges_cover_the_ring_n_times() {
        let r = ring(5, 16);
        let width = |range: &TokenRange| range.end.0.wrapping_sub(range.start.0) as f64;
        let mut primary_total = 0.0;
        for i in 0..5 {
            let all = r.replicated_ranges(&id(i), 3, false);
            let primary = r.replicated_ranges(&id(i), 3, true);
            assert!(primary.len() < all.len());
            for (range, replicas) in &all {
                assert_eq!(replicas.len(), 3);
                assert!(replicas.contains(&id(i)));
                assert_eq!(r.placement(range.end, 3).replicas, *replicas);
            }
            for (_, replicas) in &primary {
                assert_eq!(replicas[0], id(i));
            }
            primary_total += primary.iter().map(|(range, _)| width(range)).sum::<f64>();
        }
        // Primary ranges of all nodes tile the ring exactly once.
        assert!((primary_total / u64::MAX as f64 - 1.0).abs() < 1e-9);
    }
}
