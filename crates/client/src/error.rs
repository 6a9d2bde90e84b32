//! The client's error type.

/// What a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint is not a valid URI.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it is invalid.
        reason: String,
    },
    /// No connection could be made.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// The node answered with an error status.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// A benchmark worker task failed.
    #[error("benchmark worker failed: {0}")]
    Worker(String),
    /// A consistency argument that is not a level name or a count.
    #[error("unknown consistency {0:?}: expected one, two, quorum, all or a replica count")]
    InvalidConsistency(String),
}
