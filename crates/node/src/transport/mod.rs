//! How the coordinator reaches other replicas.
//!
//! [`ReplicaTransport`] is the seam: "send this replica operation to that
//! node". [`Peers`] is the production implementation (one gRPC channel per
//! peer, replica reads and write batches on one long-lived `Replica.Pipe`
//! stream, writes coalesced per peer); `memory.rs` is an in-memory one for
//! tests that can cut, delay or fail links, so quorum, stand-in and
//! read-repair logic is tested in process and deterministically.
//!
//! Files: `channel.rs` (endpoints and clients), `pipe.rs` (both ends of the
//! stream), `batcher.rs` (write coalescing), `peers.rs` (the pool and the
//! gRPC transport), `error.rs` ([`ReplicaError`]). Dependencies run one
//! way: peers -> batcher -> pipe -> channel.

mod batcher;
mod channel;
mod error;
#[cfg(test)]
pub(crate) mod memory;
mod peers;
pub(crate) mod pipe;

use std::time::Duration;

use strata_cluster::{NodeId, Siblings};

pub use batcher::Batcher;
pub use channel::{MAX_MESSAGE_BYTES, replica_client};
pub use error::ReplicaError;
pub use peers::{Peer, Peers};
pub use pipe::{Pipe, PipeHandler, serve as serve_pipe};

/// A replica on another node: its id and the gRPC address gossip
/// published for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteReplica {
    /// The node.
    pub id: NodeId,
    /// Its `host:port`.
    pub address: String,
}

/// Sends replica operations to other nodes.
#[async_trait::async_trait]
pub trait ReplicaTransport: Send + Sync + std::fmt::Debug + 'static {
    /// The replica's sibling set for `key`.
    ///
    /// # Errors
    /// [`ReplicaError`] when the replica cannot be reached, refuses, or
    /// does not answer within `timeout`.
    async fn read(
        &self,
        replica: &RemoteReplica,
        key: &[u8],
        timeout: Duration,
    ) -> Result<Siblings, ReplicaError>;

    /// Merges `siblings` into the replica's set for `key`; `Ok` once it is
    /// durable there. With `hint_for`, the replica is a stand-in and keeps
    /// them as a hint for that node instead.
    ///
    /// # Errors
    /// As [`ReplicaTransport::read`].
    async fn write(
        &self,
        replica: &RemoteReplica,
        key: &[u8],
        siblings: &Siblings,
        hint_for: Option<&NodeId>,
        timeout: Duration,
    ) -> Result<(), ReplicaError>;
}
