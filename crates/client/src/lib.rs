//! Strata's Rust client.
//!
//! [`Client`] is ring-aware: it sends each request to a replica of its key,
//! keeps its ring fresh and retries reads (`client.rs`, `routing.rs`),
//! tries nodes that just failed a request last (`suspects.rs`); its Gets,
//! Puts, Deletes and Pings share one stream per node (`session.rs`).
//!
//! **API boundary:** applications program against this crate and the
//! `strata.v1` messages it re-exports, never against the node's internals.

mod client;
mod consistency;
mod error;
mod routing;
mod session;
mod suspects;

pub use client::{Client, ClientOptions, DEFAULT_PORT, TlsOptions, new_request_id};
pub use consistency::parse_consistency;
pub use error::Error;
pub use strata_proto::v1;
