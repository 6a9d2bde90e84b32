//! What nodes gossip about themselves, and the cluster view built from it.
//!
//! Each node publishes a few string key-values (gossip carries strings):
//! its gRPC address, tokens, state and load. Every node turns the set of
//! gossiped states plus its failure detector's verdicts into a
//! [`ClusterView`]: the ring, and for each member where to reach it and
//! whether it is believed alive. The gossip protocol itself (and its clock)
//! lives in `strata-node`; this module is the pure translation.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::{Member, NodeId, NodeState, Ring, Token};

/// Gossip key: `host:port` of the node's gRPC server.
pub const KEY_GRPC_ADDRESS: &str = "grpc_address";
/// Gossip key: `host:port` of the node's internal (node-to-node) gRPC
/// server, when it runs one apart from the client port.
pub const KEY_INTERNAL_ADDRESS: &str = "internal_address";
/// Gossip key: the node's tokens, lowercase hex, comma separated.
pub const KEY_TOKENS: &str = "tokens";
/// Most tokens (virtual nodes) a node may have. Its tokens travel as one
/// gossip value (up to 17 bytes each, before chitchat's compression), and
/// chitchat sends a value whole: it refuses one whose uncompressed size does
/// not fit a UDP datagram (65,507 bytes) next to the sender's digest of
/// every member. 4,096 tokens (69.6 KB) never reach a peer at all; 2,048
/// (34.8 KB) leave the other half for the digest (some 60 bytes per member)
/// and the gossip key's tag.
pub const MAX_VNODES: u16 = 2048;
/// Gossip key: `joining`, `normal`, `leaving` or `left`.
pub const KEY_STATE: &str = "state";
/// Gossip key: bytes stored on the node's disk, decimal.
pub const KEY_LOAD: &str = "load_bytes";
/// Gossip key: the replication factor N the node runs with, decimal (every
/// node of a cluster must agree on it).
pub const KEY_REPLICATION_FACTOR: &str = "replication_factor";
/// Gossip key: how the node coordinates writes (`last-write-wins` or
/// `siblings`, then `strict-quorum` or `sloppy-quorum`), for peers to warn
/// about a cluster whose nodes differ.
pub const KEY_WRITE_POLICY: &str = "write_policy";
/// Gossip key: the node's incarnation (random per data directory), hex.
pub const KEY_INCARNATION: &str = "incarnation";
/// Gossip keys `departures.0` to `departures.f`: members that are leaving
/// by removal or have left, as this node knows them, `id:incarnation:state`
/// entries, comma separated, each in the value its id hashes to (see
/// [`departure_values`]).
pub const KEY_DEPARTURES: &str = "departures";
/// How many gossip values carry a node's departures. Chitchat sends a value
/// whole in one datagram, so one value for every departure would stop
/// reaching peers at 750 to 3,000 removed members (up to 88 bytes each),
/// and with it every later change of the node's state. Sixteen values of at
/// most [`MAX_DEPARTURES_VALUE`] bytes hold more than 4,000 of the longest
/// ids; an entry stays in its value, so a new departure changes one value.
pub const DEPARTURE_VALUES: usize = 16;
/// Most bytes of one departures value: with the sender's digest of every
/// member and the gossip key's tag, it fits a UDP datagram.
pub const MAX_DEPARTURES_VALUE: usize = 24 * 1024;
/// Gossip key: members whose current incarnation started without the
/// data of the one before it, as this node recorded them:
/// `id:incarnation` entries, comma separated. Read only by the member
/// named, which then joins again to stream its ranges back.
pub const KEY_LOST_DATA: &str = "lost_data";
/// Gossip key: `running` while the node joins again under its own tokens
/// after losing its data, `done` once its ranges are back; absent for a
/// node whose data directory was never lost.
pub const KEY_REJOIN: &str = "rejoin";
/// Gossip key: present once the node has begun a graceful stop (SIGTERM):
/// its peers take it as down at once instead of after the failure
/// detector's seconds of silence. A restart is a new gossip generation,
/// without it.
pub const KEY_STOPPING: &str = "stopping";

/// Where a member whose data directory was lost stands in getting its
/// ranges back ([`KEY_REJOIN`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Rejoin {
    /// It never lost its data (or does not know yet).
    #[default]
    None,
    /// It joins again under its own tokens, copying its ranges back from
    /// every other replica.
    Running,
    /// Its ranges are back: it is a replica like any other.
    Done,
}

/// A member leaving or gone, as a node tells the others: how a removal
/// (of a node that cannot gossip for itself) spreads, and how a node that
/// comes back after being removed learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departure {
    /// The member.
    pub id: NodeId,
    /// Its incarnation: a wiped node that rejoins under the same id is a
    /// new incarnation, not the departed one.
    pub incarnation: u64,
    /// `Leaving` (being removed) or `Left`.
    pub state: NodeState,
}

/// A gossiped value that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GossipError {
    /// A required key is absent (the node has not published it yet).
    #[error("gossip state lacks {0:?}")]
    Missing(&'static str),
    /// A key's value does not parse.
    #[error("gossip key {key:?} has an unreadable value {value:?}")]
    Unreadable {
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
    },
}

/// What one node tells the others about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGossip {
    /// `host:port` of its gRPC server.
    pub grpc_address: String,
    /// `host:port` of its internal gRPC server (`Replica`); empty when it
    /// serves everything on `grpc_address`.
    pub internal_address: String,
    /// `host:port` its gossip listens on (UDP), from gossip's own node id
    /// rather than a published value; empty when unknown.
    pub gossip_address: String,
    /// Its virtual-node tokens.
    pub tokens: Vec<Token>,
    /// Its place in topology changes.
    pub state: NodeState,
    /// Bytes it stores.
    pub load_bytes: u64,
    /// Its incarnation (0: unknown, from a node that does not say).
    pub incarnation: u64,
    /// Members it knows are being removed or have left.
    pub departures: Vec<Departure>,
    /// Whether it is getting lost data back, or has.
    pub rejoin: Rejoin,
}

impl NodeGossip {
    /// The key-values to publish.
    #[must_use]
    pub fn to_key_values(&self) -> Vec<(String, String)> {
        let mut tokens = String::with_capacity(self.tokens.len() * 17);
        for (i, t) in self.tokens.iter().enumerate() {
            if i > 0 {
                tokens.push(',');
            }
            let _ = write!(tokens, "{:x}", t.0);
        }
        let mut values = vec![
            (KEY_GRPC_ADDRESS.to_owned(), self.grpc_address.clone()),
            (KEY_TOKENS.to_owned(), tokens),
            (KEY_STATE.to_owned(), state_name(self.state).to_owned()),
            (KEY_LOAD.to_owned(), self.load_bytes.to_string()),
            (
                KEY_INCARNATION.to_owned(),
                format!("{:x}", self.incarnation),
            ),
        ];
        let (departures, _) = departure_values(&self.departures);
        values.extend(
            departures
                .into_iter()
                .enumerate()
                .filter(|(_, value)| !value.is_empty())
                .map(|(i, value)| (departures_key(i), value)),
        );
        if !self.internal_address.is_empty() {
            values.push((
                KEY_INTERNAL_ADDRESS.to_owned(),
                self.internal_address.clone(),
            ));
        }
        if let Some(rejoin) = rejoin_name(self.rejoin) {
            values.push((KEY_REJOIN.to_owned(), rejoin.to_owned()));
        }
        values
    }

    /// Reads a node's published key-values (unknown keys are ignored, so
    /// newer nodes may publish more).
    ///
    /// # Errors
    /// [`GossipError`] naming the missing or unreadable key.
    pub fn from_key_values<'a>(
        key_values: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, GossipError> {
        let (mut address, mut tokens, mut state, mut load) = (None, None, None, None);
        let (mut incarnation, mut departures) = (0, Vec::new());
        let mut internal_address = String::new();
        let mut rejoin = Rejoin::None;
        for (key, value) in key_values {
            match key {
                // Addresses go into every member's `RING` file and
                // become connection URIs: one token of host and port.
                KEY_GRPC_ADDRESS => {
                    crate::check_address(value).map_err(|_| unreadable(KEY_GRPC_ADDRESS, value))?;
                    address = Some(value.to_owned());
                }
                KEY_INTERNAL_ADDRESS => {
                    if !value.is_empty() {
                        crate::check_address(value)
                            .map_err(|_| unreadable(KEY_INTERNAL_ADDRESS, value))?;
                    }
                    value.clone_into(&mut internal_address);
                }
                KEY_TOKENS => tokens = Some(parse_tokens(value)?),
                KEY_STATE => {
                    state = Some(parse_state(value).ok_or_else(|| unreadable(KEY_STATE, value))?);
                }
                KEY_LOAD => {
                    load = Some(value.parse().map_err(|_| unreadable(KEY_LOAD, value))?);
                }
                KEY_INCARNATION => {
                    incarnation = u64::from_str_radix(value, 16)
                        .map_err(|_| unreadable(KEY_INCARNATION, value))?;
                }
                key if is_departures_key(key) => departures.extend(parse_departures(value)?),
                KEY_REJOIN => {
                    rejoin = parse_rejoin(value).ok_or_else(|| unreadable(KEY_REJOIN, value))?;
                }
                _ => {}
            }
        }
        Ok(Self {
            grpc_address: address.ok_or(GossipError::Missing(KEY_GRPC_ADDRESS))?,
            internal_address,
            gossip_address: String::new(),
            tokens: tokens.ok_or(GossipError::Missing(KEY_TOKENS))?,
            state: state.ok_or(GossipError::Missing(KEY_STATE))?,
            load_bytes: load.unwrap_or(0),
            incarnation,
            departures,
            rejoin,
        })
    }
}

/// How [`Rejoin`] is gossiped (and written in the node's `REJOIN` file):
/// nothing for [`Rejoin::None`].
#[must_use]
pub fn rejoin_name(rejoin: Rejoin) -> Option<&'static str> {
    match rejoin {
        Rejoin::None => None,
        Rejoin::Running => Some("running"),
        Rejoin::Done => Some("done"),
    }
}

/// Reads [`rejoin_name`]'s output.
#[must_use]
pub fn parse_rejoin(value: &str) -> Option<Rejoin> {
    match value {
        "running" => Some(Rejoin::Running),
        "done" => Some(Rejoin::Done),
        _ => None,
    }
}

/// The gossip key of departures value `i` (of [`DEPARTURE_VALUES`]).
#[must_use]
pub fn departures_key(i: usize) -> String {
    format!("{KEY_DEPARTURES}.{i:x}")
}

/// Whether `key` is one of [`departures_key`]'s (or the single value of
/// nodes from before them).
fn is_departures_key(key: &str) -> bool {
    key.strip_prefix(KEY_DEPARTURES)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// `departures` as [`DEPARTURE_VALUES`] gossip values (empty ones
/// included, by index), each `id:incarnation:state` entries, comma
/// separated, in the value the id hashes to; and how many departures were
/// left out because their value was full ([`MAX_DEPARTURES_VALUE`]).
#[must_use]
pub fn departure_values(departures: &[Departure]) -> (Vec<String>, usize) {
    let mut values = vec![String::new(); DEPARTURE_VALUES];
    let mut left_out = 0;
    for d in departures {
        let entry = format!("{}:{:x}:{}", d.id, d.incarnation, state_name(d.state));
        let hash = crate::Token::of(d.id.as_str().as_bytes()).0;
        let i = usize::from(hash.to_le_bytes()[0]) % DEPARTURE_VALUES;
        let value = &mut values[i];
        if value.len() + 1 + entry.len() > MAX_DEPARTURES_VALUE {
            left_out += 1;
            continue;
        }
        if !value.is_empty() {
            value.push(',');
        }
        value.push_str(&entry);
    }
    (values, left_out)
}

fn parse_departures(value: &str) -> Result<Vec<Departure>, GossipError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|entry| {
            let mut fields = entry.split(':');
            let (Some(id), Some(incarnation), Some(state), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return None;
            };
            Some(Departure {
                id: NodeId::new(id).ok()?,
                incarnation: u64::from_str_radix(incarnation, 16).ok()?,
                state: parse_state(state)
                    .filter(|s| matches!(s, NodeState::Leaving | NodeState::Left))?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| unreadable(KEY_DEPARTURES, value))
}

/// `id:incarnation` entries, comma separated.
#[must_use]
pub fn format_lost_data(members: &[(NodeId, u64)]) -> String {
    members
        .iter()
        .map(|(id, incarnation)| format!("{id}:{incarnation:x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads [`format_lost_data`]'s output; unreadable entries are skipped (a
/// peer's damaged value must not hide the others).
#[must_use]
pub fn parse_lost_data(value: &str) -> Vec<(NodeId, u64)> {
    value
        .split(',')
        .filter_map(|entry| {
            let (id, incarnation) = entry.split_once(':')?;
            Some((
                NodeId::new(id).ok()?,
                u64::from_str_radix(incarnation, 16).ok()?,
            ))
        })
        .collect()
}

fn unreadable(key: &'static str, value: &str) -> GossipError {
    GossipError::Unreadable {
        key,
        value: value.chars().take(64).collect(),
    }
}

fn parse_tokens(value: &str) -> Result<Vec<Token>, GossipError> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    value
        .split(',')
        .map(|t| u64::from_str_radix(t, 16).map(Token))
        .collect::<Result<_, _>>()
        .map_err(|_| unreadable(KEY_TOKENS, value))
}

/// The lowercase name of a state, as gossiped and shown by the CLI.
#[must_use]
pub fn state_name(state: NodeState) -> &'static str {
    match state {
        NodeState::Joining => "joining",
        NodeState::Normal => "normal",
        NodeState::Leaving => "leaving",
        NodeState::Left => "left",
    }
}

pub(crate) fn parse_state(value: &str) -> Option<NodeState> {
    Some(match value {
        "joining" => NodeState::Joining,
        "normal" => NodeState::Normal,
        "leaving" => NodeState::Leaving,
        "left" => NodeState::Left,
        _ => return None,
    })
}

/// Whether a member that says `gossip` is getting lost data back (see
/// [`NodeInfo::rejoining`]): it says so while it streams its ranges back,
/// and before it starts, members recorded its incarnation as having lost
/// its data (`marked`) while it still serves as a normal member. A member
/// with no tokens owns nothing either way.
#[must_use]
pub fn rejoining(gossip: &NodeGossip, marked: bool) -> bool {
    if gossip.tokens.is_empty() {
        return false;
    }
    match gossip.rejoin {
        Rejoin::Running => matches!(gossip.state, NodeState::Normal | NodeState::Joining),
        Rejoin::Done => false,
        Rejoin::None => marked && gossip.state == NodeState::Normal,
    }
}

/// One gossip participant as the failure detector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its id.
    pub id: NodeId,
    /// Incarnation: a restarted node gossips under a higher generation.
    pub generation: u64,
    /// What it published.
    pub gossip: NodeGossip,
    /// The failure detector's verdict.
    pub alive: bool,
}

/// A member as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// `host:port` of its gRPC server (clients, `KV` and `Admin`).
    pub grpc_address: String,
    /// `host:port` where other nodes call its `Replica` service: its
    /// internal server, or `grpc_address` when it runs none.
    pub internal_address: String,
    /// Its state.
    pub state: NodeState,
    /// Bytes it stores.
    pub load_bytes: u64,
    /// Whether it is believed alive.
    pub alive: bool,
    /// Its tokens.
    pub tokens: Vec<Token>,
    /// The incarnation of its data directory (0: not known): a new one
    /// means a node that lost its data and joined again.
    pub incarnation: u64,
    /// It lost its data and is getting its ranges back (or is about to):
    /// it keeps its place among their replicas and takes their writes,
    /// but answers no reads until they are back ([`rejoining`]).
    pub rejoining: bool,
}

/// A replica of a key: who, and whether requests should be sent to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaTarget {
    /// The node.
    pub id: NodeId,
    /// Believed alive by the failure detector.
    pub alive: bool,
}

/// The ring plus reachability: everything a coordinator needs to route.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Shared between successive views while the members it is built from
    /// are unchanged ([`ClusterView::following`]).
    ring: Arc<Ring>,
    nodes: BTreeMap<NodeId, NodeInfo>,
}

impl ClusterView {
    /// Builds the view from gossip participants. A node that restarted
    /// appears under several generations until the old one is collected;
    /// a live one wins over dead ones, then the highest generation. (A
    /// second process started under a running node's id is live and newer
    /// until it stops itself; once it is gone, the running one wins again.)
    #[must_use]
    pub fn from_peers(peers: impl IntoIterator<Item = Peer>) -> Self {
        Self::with_lost_data(peers, &[])
    }

    /// [`ClusterView::from_peers`], where `lost` names the incarnations
    /// recorded as having lost their data (this node's records and the
    /// live members' [`KEY_LOST_DATA`]): such a member is
    /// [`NodeInfo::rejoining`] until its ranges are back.
    #[must_use]
    pub fn with_lost_data(peers: impl IntoIterator<Item = Peer>, lost: &[(NodeId, u64)]) -> Self {
        Self::build(peers, lost, None)
    }

    /// [`ClusterView::with_lost_data`], sharing `previous`'s ring when the
    /// members it is built from (ids, tokens, states) are unchanged. Gossip
    /// changes liveness and load far more often than the ring, and a ring
    /// of many members (thousands of tokens) takes a millisecond to build:
    /// a node rebuilds its view several times per gossip round.
    #[must_use]
    pub fn following(
        previous: &ClusterView,
        peers: impl IntoIterator<Item = Peer>,
        lost: &[(NodeId, u64)],
    ) -> Self {
        Self::build(peers, lost, Some(previous))
    }

    fn build(
        peers: impl IntoIterator<Item = Peer>,
        lost: &[(NodeId, u64)],
        previous: Option<&ClusterView>,
    ) -> Self {
        let mut latest: BTreeMap<NodeId, Peer> = BTreeMap::new();
        for peer in peers {
            match latest.get(&peer.id) {
                Some(seen) if (seen.alive, seen.generation) >= (peer.alive, peer.generation) => {}
                _ => {
                    latest.insert(peer.id.clone(), peer);
                }
            }
        }
        let nodes: BTreeMap<NodeId, NodeInfo> = latest
            .into_iter()
            .map(|(id, p)| {
                let marked = lost.contains(&(id.clone(), p.gossip.incarnation));
                let rejoining = rejoining(&p.gossip, marked);
                (
                    id,
                    NodeInfo {
                        internal_address: if p.gossip.internal_address.is_empty() {
                            p.gossip.grpc_address.clone()
                        } else {
                            p.gossip.internal_address
                        },
                        grpc_address: p.gossip.grpc_address,
                        state: p.gossip.state,
                        load_bytes: p.gossip.load_bytes,
                        alive: p.alive,
                        tokens: p.gossip.tokens,
                        incarnation: p.gossip.incarnation,
                        rejoining,
                    },
                )
            })
            .collect();
        // A rejoining member keeps its place: were it a pending owner, the
        // next member (which never held its ranges) would be read in its
        // stead.
        let members = nodes.iter().map(|(id, n)| {
            let state = if n.rejoining {
                NodeState::Normal
            } else {
                n.state
            };
            (id, n.tokens.as_slice(), state)
        });
        let ring = match previous {
            Some(previous) if previous.ring.built_from(members.clone()) => {
                Arc::clone(&previous.ring)
            }
            _ => Arc::new(Ring::new(members.map(|(id, tokens, state)| Member {
                id: id.clone(),
                tokens: tokens.to_vec(),
                state,
            }))),
        };
        Self { ring, nodes }
    }

    /// Whether `self` and `other` share one ring (built once).
    #[must_use]
    pub fn shares_ring_with(&self, other: &ClusterView) -> bool {
        Arc::ptr_eq(&self.ring, &other.ring)
    }

    /// The ring.
    #[must_use]
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// A member by id.
    #[must_use]
    pub fn node(&self, id: &NodeId) -> Option<&NodeInfo> {
        self.nodes.get(id)
    }

    /// Every known node (including `Left` ones), by id.
    pub fn nodes(&self) -> impl Iterator<Item = (&NodeId, &NodeInfo)> {
        self.nodes.iter()
    }

    /// Where a write of `token` goes with replication factor `n`: the
    /// replicas in ring order, then pending owners, each with liveness.
    #[must_use]
    pub fn write_targets(&self, token: Token, n: usize) -> Vec<ReplicaTarget> {
        let placement = self.ring.placement(token, n);
        placement
            .replicas
            .into_iter()
            .chain(placement.pending)
            .map(|id| self.target(id))
            .collect()
    }

    /// Where a read of `token` goes: the current replicas only (pending
    /// owners are still streaming and may lack data), less rejoining ones
    /// (their data is gone until it streams back).
    #[must_use]
    pub fn read_targets(&self, token: Token, n: usize) -> Vec<ReplicaTarget> {
        self.ring
            .placement(token, n)
            .replicas
            .into_iter()
            .filter(|id| !self.nodes.get(id).is_some_and(|n| n.rejoining))
            .map(|id| self.target(id))
            .collect()
    }

    /// Sloppy quorum: up to `count` live nodes that may hold hints for
    /// down replicas of `token` — the next nodes clockwise that are not
    /// among `targets`.
    #[must_use]
    pub fn stand_ins(&self, token: Token, targets: &[ReplicaTarget], count: usize) -> Vec<NodeId> {
        self.ring
            .successors(token)
            .into_iter()
            .filter(|id| !targets.iter().any(|t| &t.id == id))
            .filter(|id| self.nodes.get(id).is_some_and(|n| n.alive))
            .take(count)
            .collect()
    }

    fn target(&self, id: NodeId) -> ReplicaTarget {
        let alive = self.nodes.get(&id).is_some_and(|n| n.alive);
        ReplicaTarget { id, alive }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens_for;

    fn node(i: u8) -> NodeId {
        NodeId::new(format!("n{i}")).expect("valid id")
    }

    fn gossip(i: u8) -> NodeGossip {
        NodeGossip {
            grpc_address: format!("127.0.0.1:{}", 7400 + u16::from(i)),
            internal_address: if i % 2 == 1 {
                format!("127.0.0.1:{}", 7500 + u16::from(i))
            } else {
                String::new()
            },
            gossip_address: String::new(),
            tokens: tokens_for(&node(i), 16),
            state: NodeState::Normal,
            load_bytes: u64::from(i) * 1000,
            incarnation: u64::from(i) + 100,
            departures: vec![Departure {
                id: node(9),
                incarnation: 7,
                state: NodeState::Left,
            }],
            rejoin: Rejoin::None,
        }
    }

    fn peer(i: u8, generation: u64, alive: bool) -> Peer {
        Peer {
            id: node(i),
            generation,
            gossip: gossip(i),
            alive,
        }
    }

    /// The placements of many keys, to compare two rings.
    fn placements(view: &ClusterView) -> Vec<crate::Placement> {
        (0..500u32)
            .map(|k| view.ring().placement(Token::of(&k.to_be_bytes()), 3))
            .collect()
    }

    #[test]
    fn a_view_shares_the_previous_ring_until_the_ring_itself_changes() {
        let three = || vec![peer(1, 1, true), peer(2, 1, true), peer(3, 1, true)];
        let first = ClusterView::from_peers(three());

        // Liveness, load and addresses move; the ring does not.
        let mut moved = three();
        moved[2].alive = false;
        moved[1].gossip.load_bytes = 1 << 30;
        moved[0].gossip.grpc_address = "127.0.0.1:9999".to_owned();
        let next = ClusterView::following(&first, moved.clone(), &[]);
        assert!(next.shares_ring_with(&first));
        assert!(!next.node(&node(3)).expect("n3").alive);
        assert_eq!(next.node(&node(2)).expect("n2").load_bytes, 1 << 30);
        assert_eq!(
            placements(&next),
            placements(&ClusterView::from_peers(moved))
        );

        // A member leaving, one gone, one more, other tokens: a new ring,
        // the one a view built from scratch has.
        let mut leaving = three();
        leaving[2].gossip.state = NodeState::Leaving;
        let mut retokened = three();
        retokened[0].gossip.tokens = tokens_for(&node(7), 16);
        let mut four = three();
        four.push(peer(4, 1, true));
        for peers in [leaving, three()[..2].to_vec(), four, retokened] {
            let next = ClusterView::following(&first, peers.clone(), &[]);
            assert!(!next.shares_ring_with(&first), "{peers:?}");
            assert_eq!(
                placements(&next),
                placements(&ClusterView::from_peers(peers))
            );
        }

        // A member that lost its data keeps its place on the ring.
        let lost = [(node(2), gossip(2).incarnation)];
        let next = ClusterView::following(&first, three(), &lost);
        assert!(next.shares_ring_with(&first));
        assert!(next.node(&node(2)).expect("n2").rejoining);
    }

    #[test]
    fn gossip_round_trips_through_key_values() {
        // With an internal address (3) and without (2: not even published);
        // a rejoin's state is published only once there is one.
        let mut rejoined = gossip(1);
        rejoined.rejoin = Rejoin::Done;
        assert!(
            gossip(1)
                .to_key_values()
                .iter()
                .all(|(k, _)| k != KEY_REJOIN)
        );
        for g in [gossip(3), gossip(2), rejoined] {
            let kvs = g.to_key_values();
            assert_eq!(
                kvs.iter().any(|(k, _)| k == KEY_INTERNAL_ADDRESS),
                !g.internal_address.is_empty()
            );
            let back =
                NodeGossip::from_key_values(kvs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .expect("parses");
            assert_eq!(back, g);
        }
    }

    #[test]
    fn an_unknown_rejoin_state_is_refused() {
        let mut kvs = gossip(2).to_key_values();
        kvs.push((KEY_REJOIN.to_owned(), "half".to_owned()));
        assert_eq!(
            NodeGossip::from_key_values(kvs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            Err(GossipError::Unreadable {
                key: KEY_REJOIN,
                value: "half".to_owned()
            })
        );
    }

    /// `count` departures of the longest ids a node may have.
    fn many_departures(count: usize) -> Vec<Departure> {
        (0..count)
            .map(|i| Departure {
                id: NodeId::new(format!("{i:0>63}")).expect("63 digits"),
                incarnation: u64::MAX - i as u64,
                state: if i % 2 == 0 {
                    NodeState::Left
                } else {
                    NodeState::Leaving
                },
            })
            .collect()
    }

    fn read_back(kvs: &[(String, String)]) -> NodeGossip {
        NodeGossip::from_key_values(kvs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .expect("parses")
    }

    #[test]
    fn thousands_of_departures_travel_in_values_that_each_fit_a_datagram() {
        let mut g = gossip(1);
        g.departures = many_departures(4_000);
        let (values, left_out) = departure_values(&g.departures);
        assert_eq!(left_out, 0);
        assert_eq!(values.len(), DEPARTURE_VALUES);
        let total: usize = values.iter().map(String::len).sum();
        assert!(total > 4 * 65_507, "{total} bytes: far beyond one datagram");
        let kvs = g.to_key_values();
        let departure_kvs: Vec<_> = kvs
            .iter()
            .filter(|(k, _)| k.starts_with(KEY_DEPARTURES))
            .collect();
        assert_eq!(departure_kvs.len(), DEPARTURE_VALUES);
        for (key, value) in &departure_kvs {
            assert!(
                value.len() <= MAX_DEPARTURES_VALUE,
                "{key}: {}",
                value.len()
            );
        }
        let mut back = read_back(&kvs).departures;
        let key = |d: &Departure| d.id.clone();
        back.sort_by_key(key);
        g.departures.sort_by_key(key);
        assert_eq!(back, g.departures, "every departure read back as it was");
        // One more departure changes one value only.
        let mut more = g.departures.clone();
        more.push(Departure {
            id: node(7),
            incarnation: 1,
            state: NodeState::Left,
        });
        let (after, _) = departure_values(&more);
        let changed = values.iter().zip(&after).filter(|(a, b)| a != b).count();
        assert_eq!(changed, 1);
        // Few departures: only the values that hold one are published.
        let few = gossip(2).to_key_values();
        let keys: Vec<_> = few
            .iter()
            .filter(|(k, _)| k.starts_with(KEY_DEPARTURES))
            .collect();
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert_eq!(read_back(&few).departures, gossip(2).departures);
    }

    #[test]
    fn departures_beyond_their_values_are_left_out_not_sent_whole() {
        let departures = many_departures(10_000);
        let (values, left_out) = departure_values(&departures);
        assert!(left_out > 0 && left_out < 10_000, "{left_out}");
        assert!(values.iter().all(|v| v.len() <= MAX_DEPARTURES_VALUE));
        let kept: usize = values.iter().map(|v| v.split(',').count()).sum();
        assert_eq!(kept + left_out, 10_000);
    }

    #[test]
    fn a_single_departures_value_is_still_read() {
        let mut kvs = gossip(2).to_key_values();
        kvs.retain(|(k, _)| !k.starts_with(KEY_DEPARTURES));
        kvs.push((
            KEY_DEPARTURES.to_owned(),
            "n5:a:left,n6:b:leaving".to_owned(),
        ));
        let ids: Vec<_> = read_back(&kvs)
            .departures
            .iter()
            .map(|d| (d.id.to_string(), d.incarnation, d.state))
            .collect();
        assert_eq!(
            ids,
            [
                ("n5".to_owned(), 10, NodeState::Left),
                ("n6".to_owned(), 11, NodeState::Leaving)
            ]
        );
        // A key that only begins like it is someone else's.
        kvs.push((
            "departures_v2".to_owned(),
            "not:a:departure:list".to_owned(),
        ));
        assert_eq!(read_back(&kvs).departures.len(), 2);
    }

    /// A member that lost its data keeps its place among its ranges'
    /// replicas (the next member is not read in its stead) and takes
    /// writes, but is read from only once its ranges are back: while
    /// members have marked it and it still says normal, while it says it
    /// rejoins, not once it says done.
    #[test]
    fn a_member_that_lost_its_data_takes_writes_but_no_reads_until_it_is_back() {
        let members = |lost: Peer| [peer(1, 1, true), peer(2, 1, true), lost, peer(4, 1, true)];
        let intact = ClusterView::from_peers(members(peer(3, 1, true)));
        let rejoins = |gossip: NodeGossip, marked: bool| {
            let lost = Peer {
                gossip,
                ..peer(3, 1, true)
            };
            let marks = if marked {
                vec![(node(3), lost.gossip.incarnation)]
            } else {
                Vec::new()
            };
            ClusterView::with_lost_data(members(lost), &marks)
        };
        let mut running = gossip(3);
        running.rejoin = Rejoin::Running;
        let mut streaming = running.clone();
        streaming.state = NodeState::Joining;
        let mut done = gossip(3);
        done.rejoin = Rejoin::Done;
        let mut tokenless = gossip(3);
        tokenless.tokens.clear();
        tokenless.state = NodeState::Joining;
        for (gossip, marked, expect) in [
            (gossip(3), false, false),
            (gossip(3), true, true),
            (running, false, true),
            (streaming, false, true),
            (done.clone(), false, false),
            (done, true, false),
            (tokenless, true, false),
        ] {
            let view = rejoins(gossip.clone(), marked);
            assert_eq!(
                view.node(&node(3)).map(|n| n.rejoining),
                Some(expect),
                "{gossip:?} marked {marked}"
            );
            if !expect {
                continue;
            }
            for t in (0..64u64).map(|k| Token(k.wrapping_mul(0x9e37_79b9_7f4a_7c15))) {
                let before = intact.ring().placement(t, 3).replicas;
                let reads: Vec<NodeId> =
                    view.read_targets(t, 3).into_iter().map(|r| r.id).collect();
                let writes: Vec<NodeId> =
                    view.write_targets(t, 3).into_iter().map(|r| r.id).collect();
                assert_eq!(writes, before, "{t:?}");
                let others: Vec<NodeId> = before.into_iter().filter(|r| *r != node(3)).collect();
                assert_eq!(reads, others, "{t:?}");
            }
        }
    }

    #[test]
    fn lost_data_marks_round_trip_and_a_damaged_entry_hides_no_other() {
        let marks = vec![(node(1), 0xabc), (node(2), u64::MAX)];
        assert_eq!(parse_lost_data(&format_lost_data(&marks)), marks);
        assert!(parse_lost_data("").is_empty());
        assert_eq!(
            parse_lost_data("n1:zz,,n2,:5,n3:1f:2,n4:1f"),
            vec![(node(4), 0x1f)]
        );
    }

    #[test]
    fn peers_call_the_internal_address_or_the_grpc_one_when_there_is_none() {
        let peer = |i: u8| Peer {
            id: node(i),
            generation: 1,
            gossip: gossip(i),
            alive: true,
        };
        let view = ClusterView::from_peers([peer(1), peer(2)]);
        let one = view.node(&node(1)).expect("n1");
        assert_eq!(one.internal_address, "127.0.0.1:7501");
        assert_eq!(one.grpc_address, "127.0.0.1:7401");
        let two = view.node(&node(2)).expect("n2");
        assert_eq!(two.internal_address, two.grpc_address);
    }

    #[test]
    fn bad_gossip_is_a_specific_error() {
        let missing = NodeGossip::from_key_values([(KEY_GRPC_ADDRESS, "a:1")]);
        assert_eq!(missing, Err(GossipError::Missing(KEY_TOKENS)));
        let bad = NodeGossip::from_key_values([
            (KEY_GRPC_ADDRESS, "a:1"),
            (KEY_TOKENS, "12,zz"),
            (KEY_STATE, "normal"),
        ]);
        assert!(matches!(
            bad,
            Err(GossipError::Unreadable {
                key: KEY_TOKENS,
                ..
            })
        ));
        let state = NodeGossip::from_key_values([
            (KEY_GRPC_ADDRESS, "a:1"),
            (KEY_TOKENS, ""),
            (KEY_STATE, "dancing"),
        ]);
        assert!(matches!(
            state,
            Err(GossipError::Unreadable { key: KEY_STATE, .. })
        ));
        // An address that would break every member's `RING` file.
        for (key, value) in [
            (KEY_GRPC_ADDRESS, "10.0.0.5 fe80::1:7400"),
            (KEY_INTERNAL_ADDRESS, "host\n:7401"),
        ] {
            let mut kvs = vec![
                (KEY_GRPC_ADDRESS, "a:1"),
                (KEY_TOKENS, ""),
                (KEY_STATE, "normal"),
            ];
            kvs.push((key, value));
            let address = NodeGossip::from_key_values(kvs);
            assert!(
                matches!(address, Err(GossipError::Unreadable { key: k, .. }) if k == key),
                "{address:?}"
            );
        }
    }

    #[test]
    fn the_latest_generation_wins_and_liveness_reaches_the_targets() {
        let mut restarted = peer(2, 7, true);
        restarted.gossip.grpc_address = "127.0.0.1:9999".to_owned();
        let view = ClusterView::from_peers([
            peer(1, 1, true),
            peer(2, 3, false),
            restarted,
            peer(3, 1, false),
        ]);
        assert_eq!(view.ring().members().len(), 3);
        let n2 = view.node(&node(2)).expect("n2");
        assert_eq!(
            (n2.grpc_address.as_str(), n2.alive),
            ("127.0.0.1:9999", true)
        );
        let targets = view.write_targets(Token(42), 3);
        assert_eq!(targets.len(), 3);
        for t in &targets {
            assert_eq!(t.alive, t.id != node(3), "{t:?}");
        }
        assert_eq!(view.read_targets(Token(42), 2).len(), 2);
    }

    #[test]
    fn a_live_incarnation_wins_over_a_newer_dead_one() {
        let mut twin = peer(2, 9, false);
        twin.gossip.grpc_address = "127.0.0.1:9999".to_owned();
        let address = |peers: Vec<Peer>| {
            ClusterView::from_peers(peers)
                .node(&node(2))
                .map(|n| (n.grpc_address.clone(), n.alive))
        };
        let running = || ("127.0.0.1:7402".to_owned(), true);
        assert_eq!(
            address(vec![peer(2, 3, true), twin.clone()]),
            Some(running())
        );
        assert_eq!(
            address(vec![twin.clone(), peer(2, 3, true)]),
            Some(running())
        );
        twin.alive = true;
        assert_eq!(
            address(vec![peer(2, 3, true), twin.clone()]),
            Some(("127.0.0.1:9999".to_owned(), true)),
            "both live: the newer"
        );
        twin.alive = false;
        assert_eq!(
            address(vec![peer(2, 3, false), twin]),
            Some(("127.0.0.1:9999".to_owned(), false)),
            "both dead: the newer"
        );
    }

    #[test]
    fn joining_nodes_receive_writes_but_not_reads() {
        let mut joining = peer(4, 1, true);
        joining.gossip.state = NodeState::Joining;
        let view = ClusterView::from_peers([peer(1, 1, true), peer(2, 1, true), joining]);
        // With N = 3 and two normal nodes, the joining node is a pending owner
        // of every key.
        let writes = view.write_targets(Token(7), 3);
        assert!(writes.iter().any(|t| t.id == node(4)));
        assert!(
            view.read_targets(Token(7), 3)
                .iter()
                .all(|t| t.id != node(4))
        );
    }

    #[test]
    fn stand_ins_are_the_next_live_nodes_past_the_replicas() {
        let view = ClusterView::from_peers([
            peer(1, 1, true),
            peer(2, 1, true),
            peer(3, 1, false),
            peer(4, 1, true),
            peer(5, 1, false),
        ]);
        for token in [Token(0), Token(42), Token(u64::MAX / 3), Token(u64::MAX)] {
            let targets = view.write_targets(token, 3);
            let successors = view.ring().successors(token);
            assert_eq!(successors.len(), 5);
            // The replicas are the first three successors.
            assert_eq!(
                successors[..3],
                targets.iter().map(|t| t.id.clone()).collect::<Vec<_>>()[..]
            );
            let stand_ins = view.stand_ins(token, &targets, 3);
            let expected: Vec<NodeId> = successors[3..]
                .iter()
                .filter(|id| view.node(id).is_some_and(|n| n.alive))
                .cloned()
                .collect();
            assert_eq!(stand_ins, expected, "token {token:?}");
            assert!(view.stand_ins(token, &targets, 0).is_empty());
        }
    }
}
