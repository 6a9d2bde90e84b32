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
    /// The node answered with an error status (or none could be reached).
    #[error("{:?}: {}", .0.code(), .0.message())]
    Status(tonic::Status),
    /// A benchmark worker task failed.
    #[error("benchmark worker failed: {0}")]
    Worker(String),
    /// A consistency argument that is not a level name or a count.
    #[error("unknown consistency {0:?}: expected one, two, quorum, all or a replica count")]
    InvalidConsistency(String),
    /// The endpoint did not speak plaintext gRPC: most likely it serves
    /// TLS and the client was given no CA (or it is paused: it accepted the
    /// connection and never answered).
    #[error(
        "{endpoint} does not answer plaintext gRPC ({detail}): does it serve TLS? then pass its CA (--ca); a paused or overloaded node that accepts connections but never answers looks the same"
    )]
    NotGrpc {
        /// The endpoint.
        endpoint: String,
        /// What the transport said.
        detail: String,
    },
    /// The endpoint accepted the connection and then answered nothing,
    /// not even the connection's keep-alive ping: a paused, hung or
    /// badly overloaded process.
    #[error(
        "{endpoint} accepted the connection but did not answer (HTTP/2 keep-alive timed out): is the node paused, hung or overloaded?"
    )]
    Silent {
        /// The endpoint.
        endpoint: String,
    },
    /// The endpoint answers, but not as a Strata node: another gRPC
    /// server (no `strata.v1.Admin`), or HTTP without gRPC (a node's
    /// metrics port answers 404).
    #[error(
        "{endpoint} is not a Strata node's gRPC port ({detail}): a node serves clients on its --listen port (7400 by default), not on its metrics port"
    )]
    NotStrata {
        /// The endpoint.
        endpoint: String,
        /// What it answered.
        detail: String,
    },
    /// A TLS node ended the session of a client that presented no
    /// certificate: most likely it requires one (`--tls-client-ca`).
    #[error(
        "{endpoint} ended the TLS session ({detail}): does it require a client certificate? then pass one its client CA signed (--cert and --key)"
    )]
    NoClientCertificate {
        /// The endpoint.
        endpoint: String,
        /// What the transport said.
        detail: String,
    },
    /// A token that cannot travel in a header (non-ASCII or control
    /// characters). The token itself is not repeated.
    #[error("the token is not valid in an HTTP header (printable ASCII only)")]
    InvalidToken,
    /// Several endpoints were given and none answered (each one's error,
    /// in order).
    #[error("no endpoint answered: {errors}")]
    NoEndpointAnswered {
        /// Each endpoint's error, separated by `; `.
        errors: String,
    },
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Self::Status(status)
    }
}

impl Error {
    /// The gRPC status code, when the error is a status.
    #[must_use]
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Self::Status(status) => Some(status.code()),
            _ => None,
        }
    }
}
