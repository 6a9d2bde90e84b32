//! End-to-end harness: real `strata-node` processes on 127.0.0.1.
//!
//! [`NodeProcess`] starts a node on a free port in its own data directory and
//! kills it when dropped; [`Cluster`] runs several that gossip with
//! each other, kills and restarts them, so a failing test leaves no process behind; temp
//! directories are removed by their [`tempfile::TempDir`] owners.
//!
//! Fault injection: [`Cluster`] also pauses (SIGSTOP) and resumes nodes,
//! wipes data directories and cuts links (`--fault-file`); `workload`
//! runs clients that record a [`history::History`], whose checker proves
//! no acknowledged write was lost.
//!
//! Kubernetes without a cluster: [`apiserver::ApiServer`] is a small
//! in-process API server, [`kubelet::Kubelet`] turns its StatefulSets'
//! pods into `strata-node` processes, and [`operator::OperatorProcess`]
//! runs the real operator against them.

pub mod apiserver;
mod binary;
pub mod cluster;
pub mod history;
pub mod interrupt;
pub mod kubelet;
mod node;
pub mod operator;
pub mod pki;
pub mod scenario;
pub mod two_ports;
pub mod workload;

pub use binary::workspace_binary;
pub use cluster::Cluster;
pub use node::NodeProcess;
