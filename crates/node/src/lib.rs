//! The Strata storage node: the IO shell around `strata-cluster`'s logic.
//!
//! `server` wires the gRPC services (`services/`) onto a listener; `node_id`
//! gives the node a stable identity across restarts; `storage` is the local
//! replica store (sibling sets on the engine, merged without reads);
//! `membership` runs gossip and keeps the cluster view; `coordinator` fans
//! requests out to replicas through `peers`; `hints` holds writes for
//! down replicas and replays them; `repair` runs Merkle-tree anti-entropy.
//! Topology changes land with their issue; until then their RPCs answer
//! `UNIMPLEMENTED` naming what is missing.

pub mod batcher;
pub mod clock;
pub mod config;
pub mod coordinator;
pub mod dots;
pub mod faults;
pub mod hints;
pub mod membership;
pub mod metrics;
pub mod node_id;
pub mod peers;
pub mod pipe;
pub mod repair;
pub mod request;
pub mod run;
pub mod server;
mod services;
mod status;
pub mod storage;
pub mod throttle;

pub use config::NodeConfig;
