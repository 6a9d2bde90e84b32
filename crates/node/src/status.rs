//! The one place that maps the node's errors to gRPC status codes.

use tonic::{Code, Status};

use strata_proto::metadata::{ACKS, FROM_NODE, REFUSED, REQUIRED};

use crate::admission::Overloaded;
use crate::arrival::ReceivingOverloaded;
use crate::changes::ChangeError;
use crate::coordinator::CoordinatorError;
use crate::dots::DotError;
use crate::hints::HintError;
use crate::repair::RepairError;
use crate::request::RequestError;
use crate::storage::StorageError;

/// `INVALID_ARGUMENT`: the request itself is wrong; retrying cannot help.
impl From<RequestError> for Status {
    fn from(e: RequestError) -> Self {
        Status::invalid_argument(e.to_string())
    }
}

/// Storage failures: unreadable stored data is `DATA_LOSS` (an operator
/// must look at it); too many range scans at once `RESOURCE_EXHAUSTED`;
/// anything else is `INTERNAL`.
impl From<StorageError> for Status {
    fn from(e: StorageError) -> Self {
        let code = match &e {
            StorageError::Codec(_)
            | StorageError::Engine(
                strata_engine::Error::Corruption { .. }
                | strata_engine::Error::WalCorruption { .. },
            ) => Code::DataLoss,
            StorageError::Engine(strata_engine::Error::WriteTooLarge { .. }) => {
                Code::InvalidArgument
            }
            StorageError::Background(crate::background::BackgroundError::Busy(_)) => {
                Code::ResourceExhausted
            }
            _ => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

/// A stand-in that cannot hold a hint: full or overloaded is
/// `RESOURCE_EXHAUSTED` (the coordinator keeps the hint itself or fails the
/// write at its level), a stopped or failing store `UNAVAILABLE`.
impl From<HintError> for Status {
    fn from(e: HintError) -> Self {
        match e {
            HintError::Full { .. } | HintError::Overloaded => {
                Status::resource_exhausted(e.to_string())
            }
            HintError::Stopped | HintError::Io(_) => Status::unavailable(e.to_string()),
        }
    }
}

/// A topology change the cluster's state forbids: `FAILED_PRECONDITION`
/// with the reason.
impl From<ChangeError> for Status {
    fn from(e: ChangeError) -> Self {
        Status::failed_precondition(e.to_string())
    }
}

/// A repair that cannot start now: `FAILED_PRECONDITION`.
impl From<RepairError> for Status {
    fn from(e: RepairError) -> Self {
        Status::failed_precondition(e.to_string())
    }
}

/// `UNAVAILABLE` with the ack counts in metadata, for clients to read.
fn unavailable(e: &CoordinatorError, acks: u32, required: u32) -> Status {
    let mut status = Status::unavailable(e.to_string());
    let metadata = status.metadata_mut();
    metadata.insert(ACKS, acks.into());
    metadata.insert(REQUIRED, required.into());
    status
}

/// `RESOURCE_EXHAUSTED`: the bytes of messages arriving at once are at
/// their bound; nothing was done, the client should back off. Marked as a
/// node's answer, as [`Overloaded`].
impl From<ReceivingOverloaded> for Status {
    fn from(e: ReceivingOverloaded) -> Self {
        busy(&e)
    }
}

/// `RESOURCE_EXHAUSTED` with `message`, marked as a node's answer.
fn busy(message: &impl std::fmt::Display) -> Status {
    let mut status = Status::resource_exhausted(message.to_string());
    status
        .metadata_mut()
        .insert(FROM_NODE, tonic::metadata::MetadataValue::from_static("1"));
    status
}

/// `RESOURCE_EXHAUSTED`: the node's write budget is spent; nothing was
/// written, the client should back off. Marked as a node's answer: the
/// cluster is busy, so forwarders and clients do not try it elsewhere.
impl From<Overloaded> for Status {
    fn from(e: Overloaded) -> Self {
        busy(&e)
    }
}

/// Coordinator failures: bad input is `INVALID_ARGUMENT`, a missed quorum
/// `UNAVAILABLE` (with the ack count in the message and in metadata).
impl From<CoordinatorError> for Status {
    fn from(e: CoordinatorError) -> Self {
        // Refused before anything was written (as after a transport
        // failure), or a forward no replica took: without FROM_NODE,
        // forwarders and clients try the next replica (a write under its
        // request id). Too few replicas up is such a refusal: another
        // coordinator may see more of them (this one may have just
        // restarted and not heard from its peers yet).
        let from_node = !matches!(
            e,
            CoordinatorError::StoreRefusesWrites
                | CoordinatorError::StoreFailed(_)
                | CoordinatorError::NotReplica
                | CoordinatorError::NoReplicaTook { .. }
                | CoordinatorError::ReplicasDown { .. }
        );
        let mut status = match e {
            CoordinatorError::Request(e) => e.into(),
            CoordinatorError::Context(_) => Status::invalid_argument(e.to_string()),
            CoordinatorError::Unavailable { acks, required, .. } => unavailable(&e, acks, required),
            CoordinatorError::ReplicasDown { required, .. }
            | CoordinatorError::NoReplicaTook { required, .. } => unavailable(&e, 0, required),
            CoordinatorError::NotReplica
            | CoordinatorError::StoreRefusesWrites
            | CoordinatorError::StoreFailed(_) => Status::unavailable(e.to_string()),
            CoordinatorError::Forwarded(status) => status,
            CoordinatorError::TooManySiblings { .. } => Status::failed_precondition(e.to_string()),
            CoordinatorError::Storage(e) => e.into(),
            CoordinatorError::Dots(DotError::Refused(strata_cluster::Error::ContextAhead {
                ..
            })) => Status::invalid_argument(e.to_string()),
            CoordinatorError::Dots(_) => Status::internal(e.to_string()),
        };
        let marker = if from_node { FROM_NODE } else { REFUSED };
        status
            .metadata_mut()
            .insert(marker, tonic::metadata::MetadataValue::from_static("1"));
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::CodecError;
    use strata_proto::metadata::{is_from_a_node, is_refusal, is_transport_failure};

    #[test]
    fn errors_map_to_specific_codes() {
        assert_eq!(
            Status::from(RequestError::EmptyKey).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            Status::from(RequestError::UnknownConsistency(9)).code(),
            Code::InvalidArgument
        );
        let quarantined = StorageError::Codec(CodecError::Quarantined { parts: 2 });
        assert_eq!(Status::from(quarantined).code(), Code::DataLoss);
        let corrupt = StorageError::Engine(strata_engine::Error::Corruption {
            path: "x.sst".into(),
            offset: 0,
            reason: "bad".into(),
        });
        let status = Status::from(corrupt);
        assert_eq!(status.code(), Code::DataLoss);
        assert!(status.message().contains("x.sst"), "{}", status.message());
        let closing = StorageError::Engine(strata_engine::Error::Background("closing".into()));
        assert_eq!(Status::from(closing).code(), Code::Internal);
        let busy = StorageError::Background(crate::background::BackgroundError::Busy(64));
        assert_eq!(Status::from(busy).code(), Code::ResourceExhausted);
        let unavailable = Status::from(CoordinatorError::Unavailable {
            acks: 1,
            required: 2,
            why: Some("node-3: no answer within 2s".into()),
        });
        assert!(
            unavailable
                .message()
                .ends_with("1 answered; node-3: no answer within 2s"),
            "{}",
            unavailable.message()
        );
        assert_eq!(unavailable.code(), Code::Unavailable);
        assert!(is_from_a_node(&unavailable));
        // Nothing written: retried elsewhere like a transport failure.
        for refusing in [
            CoordinatorError::StoreRefusesWrites,
            CoordinatorError::StoreFailed("disk full".into()),
            CoordinatorError::NotReplica,
            CoordinatorError::NoReplicaTook {
                tried: 2,
                required: 2,
            },
            CoordinatorError::ReplicasDown {
                up: 1,
                replicas: 3,
                required: 2,
            },
        ] {
            let refusing = Status::from(refusing);
            assert_eq!(refusing.code(), Code::Unavailable);
            assert!(!is_from_a_node(&refusing), "{refusing}");
            assert!(is_transport_failure(&refusing), "retried: {refusing}");
            assert!(is_refusal(&refusing), "but the node answered: {refusing}");
        }
        assert!(!is_refusal(&unavailable));
        // Too few replicas up, or too few members for N: each says which.
        let down = |up, replicas| {
            CoordinatorError::ReplicasDown {
                up,
                replicas,
                required: 2,
            }
            .to_string()
        };
        assert!(down(1, 3).contains("only 1 of the key's 3 are up"));
        assert!(down(1, 1).contains("fewer members than the replication factor"));
        assert_eq!(
            unavailable
                .metadata()
                .get(ACKS)
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );
        assert!(
            unavailable.message().contains("1 answered"),
            "{}",
            unavailable.message()
        );
        let context = Status::from(CoordinatorError::Context("bad".into()));
        assert_eq!(context.code(), Code::InvalidArgument);
        assert_eq!(
            Status::from(HintError::Overloaded).code(),
            Code::ResourceExhausted
        );
        assert_eq!(Status::from(HintError::Stopped).code(), Code::Unavailable);
        assert_eq!(
            Status::from(RepairError::Running("r1".into())).code(),
            Code::FailedPrecondition
        );
    }
}
