//! Why a replica operation on another node failed.

use std::time::Duration;

/// A failed replica operation. The coordinator counts every variant as a
/// missing acknowledgement (and keeps a hint for a failed write); the
/// variants say why, for logs, metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// No connection could be used: no address known, a malformed one,
    /// connection refused, or the link cut by fault injection. Nothing
    /// reached the replica.
    #[error("replica unreachable: {0}")]
    Unreachable(String),
    /// The operation was sent but not answered in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The replica answered with an error status.
    #[error("replica refused: {code:?}: {message}")]
    Rejected {
        /// The status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// The stream carrying the operation ended before its answer.
    #[error("replica stream closed: {0}")]
    StreamClosed(String),
    /// The replica answered with something that is not a valid answer.
    #[error("unreadable reply from the replica: {0}")]
    BadReply(String),
    /// Not sent: this node already holds as many bytes of writes for the
    /// replica as it may (the replica is slower than the others).
    #[error(
        "not sent: {queued_bytes} bytes of writes already wait for this replica (it is slower than the others)"
    )]
    Overloaded {
        /// Bytes queued for the replica when the write was refused.
        queued_bytes: usize,
    },
}

impl ReplicaError {
    /// The error for a status a unary call or a stream failed with: a
    /// transport failure (no Strata node answered) is
    /// [`ReplicaError::Unreachable`], anything else a refusal.
    #[must_use]
    pub fn from_status(status: &tonic::Status) -> Self {
        if status.code() == tonic::Code::Unavailable
            && !strata_proto::metadata::is_from_a_node(status)
        {
            return Self::Unreachable(status.message().to_owned());
        }
        Self::Rejected {
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_failures_are_unreachable_and_node_answers_are_rejections() {
        let refused = tonic::Status::unavailable("tcp connect error");
        assert!(matches!(
            ReplicaError::from_status(&refused),
            ReplicaError::Unreachable(_)
        ));
        let mut from_node = tonic::Status::unavailable("quorum");
        from_node.metadata_mut().insert(
            strata_proto::metadata::FROM_NODE,
            tonic::metadata::MetadataValue::from_static("1"),
        );
        assert!(matches!(
            ReplicaError::from_status(&from_node),
            ReplicaError::Rejected {
                code: tonic::Code::Unavailable,
                ..
            }
        ));
        assert!(matches!(
            ReplicaError::from_status(&tonic::Status::invalid_argument("bad")),
            ReplicaError::Rejected {
                code: tonic::Code::InvalidArgument,
                ..
            }
        ));
    }
}
