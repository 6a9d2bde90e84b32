//! Topology changes as data: which ranges move where while members join,
//! leave or are removed.
//!
//! A ring in the middle of a change has `Joining` members (future owners
//! that do not serve reads yet) or a `Leaving` member (still an owner until
//! it is `Left`). For every range, [`Ring::placement`] gives its current
//! owners and its future owners; a member that is a future owner but not a
//! current one *gains* the range and must receive it from a current owner
//! before the change completes. [`transfers`] lists exactly those moves.

use crate::{NodeId, NodeState, Ring, Token, TokenRange};

/// One range a member gains in the change in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The range, `(start, end]`.
    pub range: TokenRange,
    /// The member that gains it.
    pub to: NodeId,
    /// Its current owners, which hold the data; the owner losing the range
    /// first (it is the one handing the range over).
    pub sources: Vec<NodeId>,
}

/// The ranges between consecutive tokens of every member (joining and
/// leaving ones included), in token order: `(previous token, token]`.
fn ranges(ring: &Ring) -> Vec<TokenRange> {
    let mut tokens: Vec<Token> = ring
        .members()
        .iter()
        .flat_map(|m| m.tokens.iter().copied())
        .collect();
    tokens.sort_unstable();
    tokens.dedup();
    (0..tokens.len())
        .map(|k| TokenRange {
            start: tokens[(k + tokens.len() - 1) % tokens.len()],
            end: tokens[k],
        })
        .collect()
}

/// Every range some member gains while `ring`'s change is in progress,
/// with replication factor `n`, adjacent ranges with the same gainer and
/// sources merged. Empty when nothing is changing.
#[must_use]
pub fn transfers(ring: &Ring, n: usize) -> Vec<Transfer> {
    let mut out: Vec<Transfer> = Vec::new();
    for TokenRange { start, end } in ranges(ring) {
        let placement = ring.placement(end, n);
        let mut sources = placement.replicas.clone();
        // The owner that loses the range comes first (a leaving member, or
        // the one a joiner takes the range over from): copying what it held
        // keeps every write that had W current owners on W future owners,
        // whichever W they were (Cassandra's consistent range movement).
        sources.sort_by_key(|id| placement.future.contains(id));
        for to in placement
            .future
            .iter()
            .filter(|f| !placement.replicas.contains(f))
        {
            let range = TokenRange { start, end };
            match out.last_mut() {
                Some(last)
                    if last.range.end == start && &last.to == to && last.sources == sources =>
                {
                    last.range.end = end;
                }
                _ => out.push(Transfer {
                    range,
                    to: to.clone(),
                    sources: sources.clone(),
                }),
            }
        }
    }
    out
}

/// What `member`, joining again under its own tokens after losing its
/// data, copies back: every range it replicates in `ring` (where it keeps
/// its place: [`crate::NodeInfo::rejoining`]), from every other replica of
/// the range, since a write acknowledged by W replicas, the lost copy
/// among them, may now be on one of the others only. Adjacent ranges with
/// the same sources merged; a range with no other replica (N = 1) has
/// nothing to copy back.
#[must_use]
pub fn rejoin_transfers(ring: &Ring, member: &NodeId, n: usize) -> Vec<Transfer> {
    let mut out: Vec<Transfer> = Vec::new();
    for TokenRange { start, end } in ranges(ring) {
        let replicas = ring.placement(end, n).replicas;
        if !replicas.contains(member) {
            continue;
        }
        let sources: Vec<NodeId> = replicas.into_iter().filter(|r| r != member).collect();
        if sources.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.range.end == start && last.sources == sources => {
                last.range.end = end;
            }
            _ => out.push(Transfer {
                range: TokenRange { start, end },
                to: member.clone(),
                sources,
            }),
        }
    }
    out
}

/// The ranges `node` neither replicates now nor will after the change in
/// progress: what it may delete once every member routes with `ring`
/// (cleanup after a join). Adjacent ranges are merged.
#[must_use]
pub fn foreign_ranges(ring: &Ring, node: &NodeId, n: usize) -> Vec<TokenRange> {
    let mut out: Vec<TokenRange> = Vec::new();
    for TokenRange { start, end } in ranges(ring) {
        let p = ring.placement(end, n);
        if p.replicas.contains(node) || p.future.contains(node) {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.end == start => last.end = end,
            _ => out.push(TokenRange { start, end }),
        }
    }
    out
}

/// The ring once its change completes: joining members become `Normal`,
/// leaving members `Left`.
#[must_use]
pub fn completed(ring: &Ring) -> Ring {
    Ring::new(ring.members().iter().map(|m| {
        let mut m = m.clone();
        m.state = match m.state {
            NodeState::Joining => NodeState::Normal,
            NodeState::Leaving => NodeState::Left,
            other => other,
        };
        m
    }))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{Member, tokens_for, write_acknowledged};

    fn node(i: usize) -> NodeId {
        NodeId::new(format!("n{i}")).expect("id")
    }

    fn member(i: usize, state: NodeState) -> Member {
        Member {
            id: node(i),
            tokens: tokens_for(&node(i), 8),
            state,
        }
    }

    /// A ring of `size` normal members plus one change: member `size`
    /// joining, or member `leaver` leaving.
    fn ring(size: usize, join: bool, leaver: usize) -> Ring {
        let mut members: Vec<Member> = (0..size).map(|i| member(i, NodeState::Normal)).collect();
        if join {
            members.push(member(size, NodeState::Joining));
        } else {
            members[leaver % size].state = NodeState::Leaving;
        }
        Ring::new(members)
    }

    fn in_range(range: &TokenRange, t: Token) -> bool {
        range.contains(t)
    }

    #[test]
    fn nothing_moves_without_a_change() {
        let ring = Ring::new((0..4).map(|i| member(i, NodeState::Normal)));
        assert!(transfers(&ring, 3).is_empty());
    }

    /// Why a member that lost its data cannot simply join again: as a
    /// pending owner of its own ranges, the next member takes its place
    /// among the current replicas and is the first source, yet never held
    /// those ranges.
    #[test]
    fn a_plain_join_under_lost_tokens_copies_from_a_member_without_the_data() {
        let normal = Ring::new((0..4).map(|i| member(i, NodeState::Normal)));
        let mut joining: Vec<Member> = (0..4).map(|i| member(i, NodeState::Normal)).collect();
        joining[2].state = NodeState::Joining;
        let from_outsider = transfers(&Ring::new(joining), 3)
            .iter()
            .filter(|t| {
                let before = normal.placement(t.range.end, 3).replicas;
                !before.contains(&t.sources[0])
            })
            .count();
        assert!(from_outsider > 0, "some range's first source never held it");
        // Kept in place, it copies each range from the replicas that did.
        for t in rejoin_transfers(&normal, &node(2), 3) {
            let before = normal.placement(t.range.end, 3).replicas;
            assert!(before.contains(&node(2)), "{t:?}");
            assert_eq!(t.sources.len(), 2, "{t:?}");
            assert!(t.sources.iter().all(|s| before.contains(s)), "{t:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// A member that lost its data copies back exactly the ranges it
        /// replicates, each from all of its other replicas.
        #[test]
        fn a_rejoin_copies_every_range_it_replicates_from_every_other_replica(
            size in 1usize..7,
            n in 1usize..4,
            who in 0usize..7,
            probes in proptest::collection::vec(any::<u64>(), 64),
        ) {
            let ring = Ring::new((0..size).map(|i| member(i, NodeState::Normal)));
            let me = node(who % size);
            let moves = rejoin_transfers(&ring, &me, n);
            for t in probes.iter().copied().map(Token) {
                let replicas = ring.placement(t, n).replicas;
                let others: Vec<NodeId> = replicas.iter().filter(|r| **r != me).cloned().collect();
                let covering: Vec<&Transfer> = moves.iter().filter(|m| m.range.contains(t)).collect();
                if replicas.contains(&me) && !others.is_empty() {
                    prop_assert_eq!(covering.len(), 1, "{:?}", t);
                    prop_assert_eq!(&covering[0].sources, &others);
                    prop_assert_eq!(&covering[0].to, &me);
                } else {
                    prop_assert!(covering.is_empty(), "{:?}", t);
                }
            }
        }

        /// A node deletes exactly the ranges it owns neither now nor after.
        #[test]
        fn foreign_ranges_are_exactly_what_a_node_does_not_own(
            size in 3usize..7,
            join in any::<bool>(),
            leaver in 0usize..7,
            probes in proptest::collection::vec(any::<u64>(), 64),
        ) {
            let ring = ring(size, join, leaver);
            for m in ring.members() {
                let foreign = foreign_ranges(&ring, &m.id, 3);
                for t in probes.iter().copied().map(Token) {
                    let p = ring.placement(t, 3);
                    let owned = p.replicas.contains(&m.id) || p.future.contains(&m.id);
                    let deleted = foreign.iter().any(|r| r.contains(t));
                    prop_assert_eq!(deleted, !owned, "{} at {:?}", m.id, t);
                }
            }
        }

        /// The ranges a member receives are exactly the ranges it gains,
        /// each from the range's current owners.
        #[test]
        fn a_member_receives_exactly_the_ranges_it_gains(
            size in 3usize..7,
            join in any::<bool>(),
            leaver in 0usize..7,
            probes in proptest::collection::vec(any::<u64>(), 64),
        ) {
            let n = 3;
            let ring = ring(size, join, leaver);
            let moves = transfers(&ring, n);
            for t in probes.into_iter().map(Token) {
                let p = ring.placement(t, n);
                for m in ring.members() {
                    let gains = p.future.contains(&m.id) && !p.replicas.contains(&m.id);
                    let received: Vec<&Transfer> = moves
                        .iter()
                        .filter(|x| x.to == m.id && in_range(&x.range, t))
                        .collect();
                    prop_assert_eq!(received.len(), usize::from(gains), "{} at {:?}", m.id, t);
                    if let Some(x) = received.first() {
                        // The first source is the owner losing the range.
                        let losers: Vec<&NodeId> =
                            p.replicas.iter().filter(|r| !p.future.contains(r)).collect();
                        if !losers.is_empty() {
                            prop_assert!(losers.contains(&&x.sources[0]), "{:?} at {:?}", x, t);
                        }
                        let mut sources = x.sources.clone();
                        sources.sort();
                        let mut owners = p.replicas.clone();
                        owners.sort();
                        prop_assert_eq!(sources, owners);
                    }
                }
            }
        }

        /// Before, during and after a change every range has N distinct
        /// current owners and N distinct future owners (given N members).
        #[test]
        fn every_range_keeps_n_distinct_replicas(
            size in 3usize..7,
            join in any::<bool>(),
            leaver in 0usize..7,
            probes in proptest::collection::vec(any::<u64>(), 32),
        ) {
            let n = 3;
            let during = ring(size, join, leaver);
            let after = completed(&during);
            let future_members = if join { size + 1 } else { size - 1 };
            for t in probes.into_iter().map(Token) {
                let (now, then) = (during.placement(t, n), after.placement(t, n));
                for owners in [&now.replicas, &now.future, &then.replicas] {
                    let mut distinct = owners.clone();
                    distinct.sort();
                    distinct.dedup();
                    prop_assert_eq!(distinct.len(), owners.len());
                }
                prop_assert_eq!(now.replicas.len(), n);
                prop_assert_eq!(now.future.len(), n.min(future_members));
                // The future owners now are the owners after completion.
                prop_assert_eq!(during.placement(t, n).future, after.placement(t, n).replicas);
            }
        }

        /// The pending-write rule keeps W + R > N across the change: a
        /// write it acknowledges is seen by every read quorum of the current
        /// owners (before the switch) and of the future owners (after).
        #[test]
        fn acknowledged_writes_meet_every_read_quorum_on_both_sides(
            size in 3usize..7,
            join in any::<bool>(),
            leaver in 0usize..7,
            token in any::<u64>(),
            mask in any::<u8>(),
            w in 1u32..=3,
        ) {
            let n = 3usize;
            let ring = ring(size, join, leaver);
            let p = ring.placement(Token(token), n);
            let mut everyone = p.replicas.clone();
            everyone.extend(p.pending.iter().cloned());
            let acked: Vec<NodeId> = everyone
                .iter()
                .enumerate()
                .filter(|(i, _)| mask >> i & 1 == 1)
                .map(|(_, id)| id.clone())
                .collect();
            let r = 3 - w + 1;
            if write_acknowledged(w, &p, &acked) {
                for owners in [&p.replicas, &p.future] {
                    // Every R-subset of the owners meets an acker.
                    let k = owners.len();
                    for subset in 0u32..(1 << k) {
                        if subset.count_ones() != r {
                            continue;
                        }
                        let meets = (0..k).any(|i| subset >> i & 1 == 1 && acked.contains(&owners[i]));
                        prop_assert!(meets, "W={} R={} owners {:?} acked {:?}", w, r, owners, acked);
                    }
                }
            }
            // Everyone acking is enough whenever the owners are enough.
            let possible = p.replicas.len() >= w as usize && p.future.len() >= w as usize;
            prop_assert_eq!(write_acknowledged(w, &p, &everyone), possible);
        }
    }
}
