//! The Strata storage node: the IO shell around `strata-cluster`'s logic.
//!
//! `run` assembles a node and builds its shared [`context::Context`];
//! `server` wires the gRPC services (`services/`) onto a listener; `node_id`
//! gives the node a stable identity across restarts; `storage` is the local
//! replica store (sibling sets on the engine, merged without reads);
//! `membership` runs gossip and keeps the cluster view; `coordinator` fans
//! requests out to replicas through `transport`; `hints` holds writes for
//! down replicas and replays them; `repair` runs Merkle-tree anti-entropy;
//! `changes` runs joins, decommissions, removals and cleanups;
//! `tombstone_gate` pauses tombstone GC while a member is down.

pub mod admission;
pub mod arrival;
pub mod auth;
pub mod background;
pub mod byte_budget;
pub mod changes;
pub mod clock;
pub mod config;
pub mod connections;
pub mod context;
pub mod coordinator;
pub mod dots;
pub mod error_line;
pub mod faults;
pub mod gossip_auth;
pub mod gossip_health;
pub mod gossip_settle;
pub mod hints;
pub mod listeners;
pub mod lost_data;
pub mod membership;
pub mod metrics;
pub mod node_id;
mod parsed_gossip;
pub mod peer_latency;
pub mod repair;
pub mod replication_agreement;
pub mod request;
pub mod ring_file;
pub mod run;
pub mod runtime;
pub mod server;
mod services;
pub mod signal;
mod status;
pub mod storage;
mod storage_health;
#[cfg(test)]
mod testing;
pub mod throttle;
pub mod tls;
pub mod tombstone_gate;
pub mod topology;
pub mod transport;
pub mod twin;

pub use config::NodeConfig;
