//! Strata's Rust client.
//!
//! [`Client`] talks to one node today; ring-aware routing (send each request
//! to a replica of its key, refresh the ring on routing errors, retry reads)
//! arrives with the cluster request-path issue, behind the same API.
//!
//! **API boundary:** applications program against this crate and the
//! `strata.v1` messages it re-exports, never against the node's internals.

pub mod bench;
mod client;
mod consistency;
mod error;

pub use client::Client;
pub use consistency::parse_consistency;
pub use error::Error;
pub use strata_proto::v1;
