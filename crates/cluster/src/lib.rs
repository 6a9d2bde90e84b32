//! Strata's deterministic cluster logic.
//!
//! Pure functions and plain data: token hashing and the engine key layout,
//! consistency levels and the acknowledgements they require, and causality
//! (`versions/`: dotted version vectors and sibling sets). Later modules
//! follow the same rule. `ring.rs` is the
//! consistent-hash ring with virtual nodes, node states and pending owners;
//! `membership.rs` turns gossiped node state into a routable `ClusterView`;
//! `known.rs` is the durable member list that view is completed with;
//! `merkle.rs` builds and compares Merkle trees over token ranges.
//!
//! **Architecture invariant:** no sockets, no threads, no clock of its own.
//! Time and transport are passed in by the caller (`strata-node`), so every
//! decision here is unit tested without a network.

mod address;
mod boot;
mod change;
mod consistency;
mod error;
mod ids;
mod known;
mod latency;
mod membership;
mod merkle;
mod quorum;
mod ring;
mod token;
mod versions;

pub use address::{MAX_CLUSTER_ID_LEN, check_address, check_cluster_id, check_host, host_of};
pub use boot::{Boot, BootFacts, boot};
pub use change::{Transfer, completed, foreign_ranges, rejoin_transfers, transfers};
pub use consistency::ConsistencyLevel;
pub use error::Error;
pub use ids::NodeId;
pub use known::{KnownMembers, KnownMembersError, MemberRecord};
pub use latency::{LatencyMeans, SLOW_FACTOR, SLOW_MARGIN, slow_ones_last};
pub use membership::{
    ClusterView, DEPARTURE_VALUES, Departure, GossipError, KEY_DEPARTURES, KEY_GRPC_ADDRESS,
    KEY_INCARNATION, KEY_INTERNAL_ADDRESS, KEY_LOAD, KEY_LOST_DATA, KEY_REJOIN,
    KEY_REPLICATION_FACTOR, KEY_STATE, KEY_STOPPING, KEY_TOKENS, KEY_WRITE_POLICY,
    MAX_DEPARTURES_VALUE, MAX_VNODES, NodeGossip, NodeInfo, Peer, Rejoin, ReplicaTarget,
    departure_values, departures_key, format_lost_data, parse_lost_data, parse_rejoin, rejoin_name,
    rejoining, state_name,
};
pub use merkle::{Hash, MAX_DEPTH, MerkleTree, differing_children, key_hash};
pub use quorum::{Progress, ReadQuorum, ReadResolution, WriteQuorum, write_acknowledged};
pub use ring::{Member, NodeState, Placement, Ring, tokens_for};
pub use token::{ENGINE_KEY_PREFIX_LEN, Token, TokenRange, decode_engine_key, encode_engine_key};
pub use versions::{
    Dot, PrunePolicy, Siblings, Version, VersionVector, admitted_context, next_counter,
};
