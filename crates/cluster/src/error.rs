//! The cluster crate's error type.

/// Everything the cluster logic can reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A consistency level that asks for more replicas than exist, or none.
    #[error(
        "consistency asks for {requested} replicas; it must be 1 to the replication factor, {replication_factor}"
    )]
    ConsistencyOutOfRange {
        /// Replicas the request asked for.
        requested: u32,
        /// N, the cluster's replication factor.
        replication_factor: u32,
    },
    /// Text that is not a consistency level.
    #[error("unknown consistency {text:?}: expected one, two, quorum, all or a replica count")]
    InvalidConsistency {
        /// The text as given.
        text: String,
    },
    /// An engine key shorter than its 8-byte token prefix.
    #[error("engine key is {len} bytes, shorter than the 8-byte token prefix")]
    EngineKeyTooShort {
        /// Length of the key that was given.
        len: usize,
    },
    /// A node id that is empty or not usable as a DNS label and file name.
    #[error("invalid node id {id:?}: {reason}")]
    InvalidNodeId {
        /// The rejected id.
        id: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A client context claims a dot of this node that the node never
    /// issued: forged, corrupted, or from another cluster.
    #[error(
        "context claims counter {claimed} for node {node}, which has issued only up to {issued}; \
         use a context returned by this cluster"
    )]
    ContextAhead {
        /// The node the claim is about.
        node: crate::NodeId,
        /// The counter the context claims.
        claimed: u64,
        /// The highest counter the node has issued.
        issued: u64,
    },
    /// A node's 64-bit dot counter is used up.
    #[error("node {node} has issued every dot counter")]
    CounterExhausted {
        /// The node.
        node: crate::NodeId,
    },
}
