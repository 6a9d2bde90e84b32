//! End-to-end harness: real `strata-node` processes on 127.0.0.1.
//!
//! [`NodeProcess`] starts a node on a free port in its own data directory and
//! kills it when dropped, so a failing test leaves no process behind; temp
//! directories are removed by their [`tempfile::TempDir`] owners.

mod binary;
mod node;

pub use binary::workspace_binary;
pub use node::NodeProcess;
