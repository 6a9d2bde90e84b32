//! Strata's Rust client.
//!
//! [`Client`] is ring-aware: it sends each request to a replica of its key,
//! keeps its ring fresh and retries what is safe to retry (`client.rs`,
//! `routing.rs`, `retry.rs`), tries nodes that just failed a request last
//! (`suspects.rs`); its Gets, Puts, Deletes and Pings share one stream per
//! node (`lane.rs`, `session.rs`). Settings: `options.rs`.
//!
//! **API boundary:** applications program against this crate and the
//! `strata.v1` messages it re-exports, never against the node's internals.
//!
//! Writes without a context are concurrent with what the key holds, so
//! two of them leave two siblings; a read returns every sibling and one
//! context, and a write carrying that context supersedes them all:
//!
//! ```no_run
//! use strata_client::{Client, parse_consistency};
//!
//! # async fn example() -> Result<(), strata_client::Error> {
//! let client = Client::connect("127.0.0.1:7400").await?;
//! let quorum = Some(parse_consistency("quorum")?);
//! let key = b"cart:42".to_vec();
//! client.put(key.clone(), b"apples".to_vec(), Vec::new(), quorum.clone()).await?;
//! client.put(key.clone(), b"pears".to_vec(), Vec::new(), quorum.clone()).await?;
//!
//! let read = client.get(key.clone(), quorum.clone()).await?;
//! if read.siblings.len() > 1 {
//!     // The application resolves the siblings (tombstones are deletes
//!     // concurrent with the values) and writes the result back.
//!     let values: Vec<&[u8]> = read
//!         .siblings
//!         .iter()
//!         .filter(|s| !s.tombstone)
//!         .map(|s| &s.value[..])
//!         .collect();
//!     let merged = values.join(&b","[..]);
//!     client.put(key, merged, read.context.to_vec(), quorum).await?;
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod consistency;
mod credentials;
mod error;
mod lane;
mod options;
mod retry;
mod routing;
mod session;
mod suspects;
#[cfg(test)]
mod test_server;

pub use client::{Client, new_request_id};
pub use consistency::parse_consistency;
pub use error::Error;
pub use options::{ClientOptions, DEFAULT_PORT, TlsOptions};

/// Each node's effective ownership in a `GetRing` answer, by node id: the
/// fraction of the key space it is a current replica of, with the ring's
/// replication factor (as `nodetool status` shows it; with N replicas the
/// shares sum to N).
#[must_use]
pub fn replica_shares(ring: &v1::Ring) -> std::collections::HashMap<String, f64> {
    routing::Routing::from_ring(ring)
        .replica_shares()
        .into_iter()
        .map(|(id, share)| (id.to_string(), share))
        .collect()
}
pub use strata_proto::v1;
