//! Durable membership: every ring member a node has ever learned of.
//!
//! Gossip liveness and ring membership are different things. Gossip says
//! who is heard from now; a node that restarts, or is cut off, hears from
//! fewer nodes than are members. A ring built from gossip alone would then
//! lack members, and the node would coordinate keys for replicas that are
//! not theirs (and acknowledge writes no real replica holds). So every node
//! keeps [`KnownMembers`] on disk: each member's id, address, tokens and
//! state, updated whenever gossip says something new, never shrunk by
//! silence. A member leaves the ring only by reaching `Left` (decommission
//! or removal); a member nobody hears from is down, not gone.
//!
//! The file format is text, one member per line, with a checksum line; this
//! module encodes and decodes it (the node does the IO).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::membership::{Departure, NodeGossip, Peer, state_name};
use crate::{NodeId, NodeState, Token};

const MAGIC: &str = "strata-ring v1";

/// What a node last knew of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// `host:port` of its gRPC server.
    pub grpc_address: String,
    /// `host:port` of its internal gRPC server (empty: none apart).
    pub internal_address: String,
    /// `host:port` of its gossip (UDP; empty: unknown). A restarted node
    /// gossips with the members it knows besides its seeds, so members
    /// find each other while the seeds are down.
    pub gossip_address: String,
    /// Its tokens.
    pub tokens: Vec<Token>,
    /// Its state.
    pub state: NodeState,
    /// Its incarnation (0: unknown).
    pub incarnation: u64,
    /// This incarnation follows one that owned ranges, and took them over
    /// as a normal member without streaming (or waits to be told to join):
    /// it started from a new data directory (the old one was lost or
    /// wiped) and lacks their data. Kept, and gossiped
    /// ([`KnownMembers::lost_data`]), until it joins to stream them back.
    pub lost_data: bool,
}

/// Why a membership file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KnownMembersError {
    /// The checksum does not match: the file is damaged.
    #[error("membership file checksum mismatch (damaged)")]
    Checksum,
    /// A line that is not part of the format.
    #[error("membership file line {line}: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Every member known, by id, plus the cluster it belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownMembers {
    cluster_id: String,
    members: BTreeMap<NodeId, MemberRecord>,
}

impl KnownMembers {
    /// Nothing known yet, for cluster `cluster_id`.
    #[must_use]
    pub fn new(cluster_id: &str) -> Self {
        Self {
            cluster_id: cluster_id.to_owned(),
            members: BTreeMap::new(),
        }
    }

    /// The cluster these members belong to.
    #[must_use]
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The members, by id.
    pub fn members(&self) -> impl Iterator<Item = (&NodeId, &MemberRecord)> {
        self.members.iter()
    }

    /// How many members are known (including `Left` ones).
    #[must_use]
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether no member is known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Learns what gossip says now (the newest generation of each node
    /// wins); returns whether anything changed, i.e. whether the file must
    /// be written again. Members gossip does not mention are kept.
    ///
    /// A member recorded `Left` stays `Left` whatever the same incarnation
    /// gossips (a removed node that comes back with its old data must not
    /// own ranges again); a new incarnation (a wiped node rejoining under
    /// the same id) is a new member. Departures gossiped by any node move
    /// the named incarnation to `Leaving` or `Left`.
    pub fn observe(&mut self, peers: &[Peer]) -> bool {
        let mut latest: BTreeMap<&NodeId, &Peer> = BTreeMap::new();
        for peer in peers {
            match latest.get(&peer.id) {
                Some(seen) if seen.generation >= peer.generation => {}
                _ => {
                    latest.insert(&peer.id, peer);
                }
            }
        }
        let mut changed = false;
        for (id, peer) in &latest {
            let mut record = MemberRecord {
                grpc_address: peer.gossip.grpc_address.clone(),
                internal_address: peer.gossip.internal_address.clone(),
                gossip_address: peer.gossip.gossip_address.clone(),
                tokens: peer.gossip.tokens.clone(),
                state: peer.gossip.state,
                incarnation: peer.gossip.incarnation,
                lost_data: false,
            };
            let before = self.members.get(*id);
            if let Some(known) = before
                && known.state == NodeState::Left
                && known.incarnation == record.incarnation
            {
                continue;
            }
            // A member that got its ranges back says so, which also clears
            // the mark of a member that missed its rejoin.
            record.lost_data = peer.gossip.rejoin != crate::Rejoin::Done
                && before.is_some_and(|known| lost_data(known, &record));
            if self.members.get(*id) != Some(&record) {
                self.members.insert((*id).clone(), record);
                changed = true;
            }
        }
        for departure in latest.values().flat_map(|p| &p.gossip.departures) {
            let Some(known) = self.members.get_mut(&departure.id) else {
                continue;
            };
            let advances = match (known.state, departure.state) {
                (NodeState::Left, _) | (NodeState::Leaving, NodeState::Leaving) => false,
                (_, state) => state == NodeState::Left || known.state != NodeState::Joining,
            };
            if known.incarnation == departure.incarnation && advances {
                known.state = departure.state;
                changed = true;
            }
        }
        changed
    }

    /// Members whose current incarnation lacks the data of the one before
    /// it (see [`MemberRecord::lost_data`]), with that incarnation: what
    /// this node tells the cluster, so the member itself learns it even
    /// when gossip has long forgotten its earlier process.
    #[must_use]
    pub fn lost_data(&self) -> Vec<(NodeId, u64)> {
        self.members
            .iter()
            // A departure (a removal) may have moved a marked member on.
            .filter(|(_, m)| {
                m.lost_data && matches!(m.state, NodeState::Normal | NodeState::Joining)
            })
            .map(|(id, m)| (id.clone(), m.incarnation))
            .collect()
    }

    /// Departures to gossip: every member recorded `Left`.
    #[must_use]
    pub fn departures(&self) -> Vec<Departure> {
        self.members
            .iter()
            .filter(|(_, m)| m.state == NodeState::Left)
            .map(|(id, m)| Departure {
                id: id.clone(),
                incarnation: m.incarnation,
                state: NodeState::Left,
            })
            .collect()
    }

    /// `peers` (what gossip hears now) plus every known member it does not
    /// hear, as a down peer with its last known address, tokens and state:
    /// the input of a view that never lacks a member known before.
    #[must_use]
    pub fn complete(&self, mut peers: Vec<Peer>) -> Vec<Peer> {
        // What the record knows beyond a member's own gossip: that it left
        // (same incarnation), or, for a member that cannot speak (down),
        // that it is being removed.
        for peer in &mut peers {
            if let Some(record) = self.members.get(&peer.id)
                && record.incarnation == peer.gossip.incarnation
                && (record.state == NodeState::Left
                    || (!peer.alive && record.state == NodeState::Leaving))
            {
                peer.gossip.state = record.state;
            }
        }
        for (id, record) in &self.members {
            if peers.iter().any(|p| &p.id == id) {
                continue;
            }
            peers.push(Peer {
                id: id.clone(),
                generation: 0,
                gossip: NodeGossip {
                    grpc_address: record.grpc_address.clone(),
                    internal_address: record.internal_address.clone(),
                    gossip_address: record.gossip_address.clone(),
                    tokens: record.tokens.clone(),
                    state: record.state,
                    load_bytes: 0,
                    incarnation: record.incarnation,
                    departures: Vec::new(),
                    rejoin: crate::Rejoin::None,
                },
                alive: false,
            });
        }
        peers
    }

    /// The file's bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut body = format!("{MAGIC}\ncluster {}\n", self.cluster_id);
        for (id, m) in &self.members {
            let tokens: Vec<String> = m.tokens.iter().map(|t| format!("{:x}", t.0)).collect();
            // An address never contains spaces; an empty one is "-". The
            // internal address is written only when there is one, so a
            // file without it reads the same in older versions.
            let _ = write!(
                body,
                "member {id} {} {} {} {:x}",
                dash(&m.grpc_address),
                state_name(m.state),
                if tokens.is_empty() {
                    "-".to_owned()
                } else {
                    tokens.join(",")
                },
                m.incarnation
            );
            // Likewise the gossip address and the lost-data mark after it,
            // each "-" when empty and written only when a later one is
            // not.
            let optional = [
                dash(&m.internal_address),
                dash(&m.gossip_address),
                if m.lost_data { LOST_DATA } else { "-" },
            ];
            let written = optional
                .iter()
                .rposition(|f| *f != "-")
                .map_or(0, |i| i + 1);
            for field in &optional[..written] {
                let _ = write!(body, " {field}");
            }
            body.push('\n');
        }
        let sum = xxhash_rust::xxh3::xxh3_64(body.as_bytes());
        let _ = writeln!(body, "checksum {sum:016x}");
        body.into_bytes()
    }

    /// Reads a file written by [`KnownMembers::encode`].
    ///
    /// # Errors
    /// [`KnownMembersError`] for anything else; never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<Self, KnownMembersError> {
        let malformed = |line: usize, reason: &str| KnownMembersError::Malformed {
            line,
            reason: reason.to_owned(),
        };
        let text = std::str::from_utf8(bytes).map_err(|_| malformed(0, "not UTF-8"))?;
        let body_end = text
            .rfind("checksum ")
            .ok_or_else(|| malformed(0, "no checksum line"))?;
        let (body, tail) = text.split_at(body_end);
        let sum = tail
            .strip_suffix('\n')
            .and_then(|t| t.strip_prefix("checksum "))
            .filter(|h| h.len() == 16)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or_else(|| malformed(0, "unreadable checksum line"))?;
        if xxhash_rust::xxh3::xxh3_64(body.as_bytes()) != sum {
            return Err(KnownMembersError::Checksum);
        }
        let mut lines = body.lines().enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, MAGIC)) => {}
            _ => return Err(malformed(1, "not a strata membership file")),
        }
        let cluster_id = match lines.next() {
            Some((_, line)) if line.starts_with("cluster ") => line["cluster ".len()..].to_owned(),
            _ => return Err(malformed(2, "expected `cluster <id>`")),
        };
        crate::check_cluster_id(&cluster_id).map_err(|reason| malformed(2, reason))?;
        let mut members = BTreeMap::new();
        for (n, line) in lines {
            let fields: Vec<&str> = line.split(' ').collect();
            // Files written before incarnations were kept lack the field
            // (unknown: 0); the internal address, gossip address and
            // lost-data mark follow only up to the last that is not empty
            // ("-": none).
            let Some(&[kind, id, address, state, tokens]) =
                fields.first_chunk::<5>().filter(|_| fields.len() <= 9)
            else {
                return Err(malformed(
                    n,
                    "expected `member <id> <address> <state> <tokens> <incarnation>`",
                ));
            };
            let optional = &fields[5..];
            let incarnation = optional.first().copied();
            let internal = optional.get(1).copied().unwrap_or("-");
            let gossip = optional.get(2).copied().unwrap_or("-");
            let lost_data = match optional.get(3).copied() {
                None | Some("-") => false,
                Some(LOST_DATA) => true,
                Some(_) => return Err(malformed(n, "unreadable lost-data mark")),
            };
            let incarnation = match incarnation {
                Some(hex) => u64::from_str_radix(hex, 16)
                    .map_err(|_| malformed(n, "unreadable incarnation"))?,
                None => 0,
            };
            if kind != "member" {
                return Err(malformed(n, "expected a member line"));
            }
            let id = NodeId::new(id).map_err(|e| malformed(n, &e.to_string()))?;
            let state = crate::membership::parse_state(state)
                .ok_or_else(|| malformed(n, "unknown state"))?;
            let tokens = if tokens == "-" {
                Vec::new()
            } else {
                tokens
                    .split(',')
                    .map(|t| u64::from_str_radix(t, 16).map(Token))
                    .collect::<Result<_, _>>()
                    .map_err(|_| malformed(n, "unreadable token"))?
            };
            let read = |field| undash(field).map_err(|reason| malformed(n, reason));
            let (grpc_address, internal_address) = (read(address)?, read(internal)?);
            let gossip_address = read(gossip)?;
            members.insert(
                id,
                MemberRecord {
                    grpc_address,
                    internal_address,
                    gossip_address,
                    tokens,
                    state,
                    incarnation,
                    lost_data,
                },
            );
        }
        Ok(Self {
            cluster_id,
            members,
        })
    }
}

/// The file's lost-data mark (see [`MemberRecord::lost_data`]).
const LOST_DATA: &str = "lost-data";

/// Whether `new`, replacing the record `known` of the same member, lacks
/// data it should hold: a new incarnation, after one that owned ranges (or
/// was taking them), that took them over as a normal member without
/// streaming, or that waits tokenless to be told to join (a pod beyond the
/// founders, `--auto-bootstrap false`); or the same incarnation, still
/// so, already marked.
fn lost_data(known: &MemberRecord, new: &MemberRecord) -> bool {
    let waiting = new.state == NodeState::Joining && new.tokens.is_empty();
    if new.state != NodeState::Normal && !waiting {
        // Joining with tokens streams the ranges; leaving or left gives
        // them up.
        return false;
    }
    if known.incarnation == new.incarnation {
        return known.lost_data;
    }
    known.incarnation != 0
        && new.incarnation != 0
        && known.state != NodeState::Left
        && !known.tokens.is_empty()
}

/// An address as the file writes it: "-" for none.
fn dash(address: &str) -> &str {
    if address.is_empty() { "-" } else { address }
}

/// An address as the file writes it, read back.
fn undash(field: &str) -> Result<String, &'static str> {
    if field == "-" {
        Ok(String::new())
    } else {
        crate::check_address(field).map(|()| field.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::{ClusterView, tokens_for};

    fn node(i: u8) -> NodeId {
        NodeId::new(format!("n{i}")).expect("id")
    }

    fn peer(i: u8, generation: u64, state: NodeState, alive: bool) -> Peer {
        Peer {
            id: node(i),
            generation,
            gossip: NodeGossip {
                grpc_address: format!("10.0.0.{i}:7400"),
                // Some members run an internal server apart, some do not.
                internal_address: if i % 2 == 1 {
                    format!("10.0.0.{i}:7401")
                } else {
                    String::new()
                },
                // Some are known by their gossip address, some are not.
                gossip_address: if i.is_multiple_of(3) {
                    String::new()
                } else {
                    format!("10.0.0.{i}:7402")
                },
                tokens: tokens_for(&node(i), 8),
                state,
                load_bytes: 5,
                incarnation: u64::from(i) + 1,
                departures: Vec::new(),
                rejoin: crate::Rejoin::None,
            },
            alive,
        }
    }

    #[test]
    fn silence_never_removes_a_member_and_the_view_keeps_it_down() {
        let mut known = KnownMembers::new("c");
        let everyone: Vec<Peer> = (0..5)
            .map(|i| peer(i, 1, NodeState::Normal, true))
            .collect();
        assert!(known.observe(&everyone));
        assert!(!known.observe(&everyone), "nothing new");
        // After a restart behind a partition, gossip hears only two nodes.
        let heard = vec![
            peer(3, 2, NodeState::Normal, true),
            peer(4, 2, NodeState::Normal, true),
        ];
        assert!(!known.observe(&heard));
        let view = ClusterView::from_peers(known.complete(heard));
        assert_eq!(view.ring().members().len(), 5, "no member lost");
        for i in 0..3 {
            assert!(!view.node(&node(i)).expect("known").alive, "n{i} is down");
        }
        // A QUORUM of a key's replicas cannot be met by two live nodes
        // for keys they do not both replicate.
        let full = ClusterView::from_peers(everyone);
        let token = Token(12_345);
        assert_eq!(
            view.read_targets(token, 3)
                .iter()
                .map(|t| t.id.clone())
                .collect::<Vec<_>>(),
            full.read_targets(token, 3)
                .iter()
                .map(|t| t.id.clone())
                .collect::<Vec<_>>(),
            "the same replicas as the whole cluster's view"
        );
    }

    #[test]
    fn gossip_updates_a_member_and_left_takes_it_off_the_ring() {
        let mut known = KnownMembers::new("c");
        known.observe(&[peer(1, 1, NodeState::Normal, true)]);
        let mut moved = peer(1, 2, NodeState::Normal, true);
        moved.gossip.grpc_address = "10.0.0.99:7400".into();
        assert!(known.observe(&[moved]));
        assert_eq!(
            known.members().next().expect("one").1.grpc_address,
            "10.0.0.99:7400"
        );
        // Of two generations in one gossip round, the newer one counts.
        let old = peer(1, 2, NodeState::Normal, true);
        let left = peer(1, 3, NodeState::Left, false);
        assert!(known.observe(&[left, old]));
        assert_eq!(
            known.members().next().expect("one").1.state,
            NodeState::Left
        );
        let view = ClusterView::from_peers(known.complete(Vec::new()));
        assert!(
            view.ring().members().is_empty(),
            "a Left member is off the ring"
        );
    }

    #[test]
    fn a_removed_incarnation_stays_left_and_a_wiped_one_may_rejoin() {
        let mut known = KnownMembers::new("c");
        let everyone: Vec<Peer> = (0..4)
            .map(|i| peer(i, 1, NodeState::Normal, true))
            .collect();
        known.observe(&everyone);
        let removed = 3;
        let incarnation = everyone[3].gossip.incarnation;
        // n3 is dead; n0 removes it: leaving, then left.
        let mut orchestrator = peer(0, 1, NodeState::Normal, true);
        let mut gone = peer(removed, 1, NodeState::Normal, false);
        for state in [NodeState::Leaving, NodeState::Left] {
            orchestrator.gossip.departures = vec![Departure {
                id: node(removed),
                incarnation,
                state,
            }];
            assert!(known.observe(&[orchestrator.clone(), gone.clone()]));
            let view =
                ClusterView::from_peers(known.complete(vec![orchestrator.clone(), gone.clone()]));
            assert_eq!(view.node(&node(removed)).expect("known").state, state);
        }
        assert_eq!(known.departures().len(), 1);
        // It comes back with its old data, gossiping normal: still left.
        gone.alive = true;
        gone.generation = 2;
        assert!(!known.observe(std::slice::from_ref(&gone)));
        let view = ClusterView::from_peers(known.complete(vec![gone.clone()]));
        assert_eq!(
            view.node(&node(removed)).expect("known").state,
            NodeState::Left
        );
        assert!(view.ring().members().iter().all(|m| m.id != node(removed)));
        // Wiped and started again under the same id: a new incarnation
        // joining is a new member.
        let mut fresh = peer(removed, 3, NodeState::Joining, true);
        fresh.gossip.incarnation = 999;
        assert!(known.observe(&[fresh.clone()]));
        let view = ClusterView::from_peers(known.complete(vec![fresh]));
        assert_eq!(
            view.node(&node(removed)).expect("known").state,
            NodeState::Joining
        );
    }

    #[test]
    fn a_new_incarnation_that_takes_over_as_normal_has_lost_its_data() {
        let mut known = KnownMembers::new("c");
        let everyone: Vec<Peer> = (0..3)
            .map(|i| peer(i, 1, NodeState::Normal, true))
            .collect();
        known.observe(&everyone);
        assert!(known.lost_data().is_empty(), "founders lose nothing");
        // The same incarnation restarted (its directory intact): nothing.
        assert!(!known.observe(&[peer(2, 2, NodeState::Normal, true)]));
        assert!(known.lost_data().is_empty());
        // A new directory booted normal under the same id and tokens.
        let mut wiped = peer(2, 3, NodeState::Normal, true);
        wiped.gossip.incarnation = 999;
        assert!(known.observe(std::slice::from_ref(&wiped)));
        assert_eq!(known.lost_data(), vec![(node(2), 999)]);
        // Kept across the file and while it stays normal.
        let reread = KnownMembers::decode(&known.encode()).expect("decodes");
        assert_eq!(reread.lost_data(), vec![(node(2), 999)]);
        wiped.gossip.load_bytes = 77;
        wiped.gossip.grpc_address = "10.0.0.9:7400".into();
        known.observe(std::slice::from_ref(&wiped));
        assert_eq!(known.lost_data(), vec![(node(2), 999)]);
        // Joining again streams the ranges back: the mark goes, and does
        // not come back once it is normal again.
        wiped.gossip.state = NodeState::Joining;
        assert!(known.observe(std::slice::from_ref(&wiped)));
        assert!(known.lost_data().is_empty());
        wiped.gossip.state = NodeState::Normal;
        known.observe(std::slice::from_ref(&wiped));
        assert!(known.lost_data().is_empty());
        // A member that missed all of that (down meanwhile) sees the new
        // incarnation normal: it says its ranges are back, so no mark.
        let mut missed = KnownMembers::new("c");
        missed.observe(&everyone);
        wiped.gossip.rejoin = crate::Rejoin::Done;
        missed.observe(std::slice::from_ref(&wiped));
        assert!(missed.lost_data().is_empty());
        let mut missed = KnownMembers::new("c");
        missed.observe(&everyone);
        wiped.gossip.rejoin = crate::Rejoin::None;
        missed.observe(std::slice::from_ref(&wiped));
        assert_eq!(missed.lost_data(), vec![(node(2), 999)], "without it");
        // Nor while it waits, tokenless, to be told to join (a node
        // started with --auto-bootstrap false): it must join.
        let mut waiting = peer(2, 5, NodeState::Joining, true);
        waiting.gossip.incarnation = 1001;
        waiting.gossip.tokens.clear();
        known.observe(std::slice::from_ref(&waiting));
        assert_eq!(known.lost_data(), vec![(node(2), 1001)]);
        waiting.gossip.tokens = tokens_for(&node(2), 8);
        known.observe(std::slice::from_ref(&waiting));
        assert!(known.lost_data().is_empty(), "joining with tokens streams");
        // A new incarnation joining, or one after a member that left or
        // never owned tokens, lacks nothing.
        let mut joiner = peer(1, 4, NodeState::Joining, true);
        joiner.gossip.incarnation = 1000;
        known.observe(&[joiner]);
        assert!(known.lost_data().is_empty());
        let mut left = KnownMembers::new("c");
        left.observe(&[peer(0, 1, NodeState::Left, false)]);
        let mut tokenless = peer(1, 1, NodeState::Normal, true);
        tokenless.gossip.tokens.clear();
        left.observe(&[tokenless]);
        let mut back = [
            peer(0, 2, NodeState::Normal, true),
            peer(1, 2, NodeState::Normal, true),
        ];
        for p in &mut back {
            p.gossip.incarnation += 100;
        }
        left.observe(&back);
        assert!(left.lost_data().is_empty());
    }

    #[test]
    fn files_round_trip_and_damage_is_an_error() {
        let mut known = KnownMembers::new("prod-1");
        known.observe(
            &(0..4)
                .map(|i| peer(i, 1, NodeState::Normal, true))
                .collect::<Vec<_>>(),
        );
        let mut joining = peer(7, 1, NodeState::Joining, true);
        joining.gossip.grpc_address = String::new();
        joining.gossip.tokens = Vec::new();
        known.observe(&[joining]);
        // And one that lost its data, with neither address after it.
        let mut wiped = peer(3, 2, NodeState::Normal, true);
        wiped.gossip.incarnation = 99;
        wiped.gossip.gossip_address = String::new();
        known.observe(&[wiped]);
        assert_eq!(known.lost_data().len(), 1);
        let bytes = known.encode();
        assert_eq!(KnownMembers::decode(&bytes), Ok(known.clone()));
        assert!(
            known.members().any(|(_, m)| !m.internal_address.is_empty())
                && known.members().any(|(_, m)| m.internal_address.is_empty()),
            "both kinds of member are in the file"
        );
        // Every mix of internal and gossip address (6, 7 and 8 fields).
        for (internal, gossip) in [(false, false), (true, false), (false, true), (true, true)] {
            assert!(
                known
                    .members()
                    .any(|(_, m)| m.internal_address.is_empty() != internal
                        && m.gossip_address.is_empty() != gossip),
                "internal {internal}, gossip {gossip}"
            );
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(KnownMembers::decode(&bad).is_err(), "flip at {i}");
        }
        for cut in 0..bytes.len() {
            assert!(KnownMembers::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_file_written_before_gossip_addresses_were_kept_reads() {
        let body = format!(
            "{MAGIC}\ncluster c\nmember n1 10.0.0.1:7400 normal 1,2 5 10.0.0.1:7401\n\
             member n2 10.0.0.2:7400 normal 3 6\n"
        );
        let sum = xxhash_rust::xxh3::xxh3_64(body.as_bytes());
        let file = format!("{body}checksum {sum:016x}\n");
        let known = KnownMembers::decode(file.as_bytes()).expect("decodes");
        let members: Vec<_> = known.members().collect();
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].1.internal_address, "10.0.0.1:7401");
        assert!(members.iter().all(|(_, m)| m.gossip_address.is_empty()));
        assert!(members[1].1.internal_address.is_empty());
    }

    /// Found by `fuzz/fuzz_targets/membership_file.rs`: a cluster id
    /// ending in a carriage return decoded without it, so the file read
    /// back named another cluster than the one that wrote it.
    #[test]
    fn a_file_holds_only_what_reads_back_the_same() {
        let file = |body: String| {
            let sum = xxhash_rust::xxh3::xxh3_64(body.as_bytes());
            format!("{body}checksum {sum:016x}\n")
        };
        for bad in [
            format!("{MAGIC}\ncluster c\r"),
            format!("{MAGIC}\ncluster a b\n"),
            format!("{MAGIC}\ncluster \n"),
            format!("{MAGIC}\ncluster c\nmember n1 10.0.0.1\x07:7400 normal 1 5\n"),
            format!("{MAGIC}\ncluster c\nmember n1 10.0.0.1:7400 normal 1 5 ::1:7401\n"),
            format!("{MAGIC}\ncluster c\nmember n1 10.0.0.1:7400 normal 1 5 - host\n"),
        ] {
            let decoded = KnownMembers::decode(file(bad.clone()).as_bytes());
            assert!(
                matches!(decoded, Err(KnownMembersError::Malformed { line: 2.., .. })),
                "{bad:?}: {decoded:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = KnownMembers::decode(&bytes);
        }
    }
}
