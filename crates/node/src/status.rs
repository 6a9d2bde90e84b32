//! The one place that maps the node's errors to gRPC status codes.

use tonic::{Code, Status};

use crate::coordinator::CoordinatorError;
use crate::request::RequestError;
use crate::storage::StorageError;

/// `INVALID_ARGUMENT`: the request itself is wrong; retrying cannot help.
impl From<RequestError> for Status {
    fn from(e: RequestError) -> Self {
        Status::invalid_argument(e.to_string())
    }
}

/// Storage failures: unreadable stored data is `DATA_LOSS` (an operator
/// must look at it); anything else is `INTERNAL`.
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
            _ => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

/// Coordinator failures: bad input is `INVALID_ARGUMENT`, a missed quorum
/// `UNAVAILABLE` (with the ack count in the message).
impl From<CoordinatorError> for Status {
    fn from(e: CoordinatorError) -> Self {
        match e {
            CoordinatorError::Request(e) => e.into(),
            CoordinatorError::Context(_) => Status::invalid_argument(e.to_string()),
            CoordinatorError::Unavailable { .. } => Status::unavailable(e.to_string()),
            CoordinatorError::TooManySiblings { .. } => Status::failed_precondition(e.to_string()),
            CoordinatorError::Storage(e) => e.into(),
            CoordinatorError::Dots(_) => Status::internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::CodecError;

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
        let unavailable = Status::from(CoordinatorError::Unavailable {
            acks: 1,
            required: 2,
        });
        assert_eq!(unavailable.code(), Code::Unavailable);
        assert!(
            unavailable.message().contains("1 answered"),
            "{}",
            unavailable.message()
        );
        let context = Status::from(CoordinatorError::Context("bad".into()));
        assert_eq!(context.code(), Code::InvalidArgument);
    }
}
