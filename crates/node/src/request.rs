//! Validation of client requests, before any replica is contacted.
//!
//! Limits: keys are 1 byte to 64 KiB; values at most the node's value limit
//! (4 MiB by default); batches at most 1000 items; a consistency level is a
//! known name or a count in `1..=N`. Each violation is a specific [`RequestError`], answered with
//! `INVALID_ARGUMENT` (see `status.rs`).

use strata_cluster::ConsistencyLevel;
use strata_proto::UnknownLevel;
use strata_proto::v1;

/// Largest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 64 << 10;
/// Default largest value accepted, in bytes (configurable per node).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 4 << 20;
/// Most items one `BatchGet` or `BatchWrite` may carry (the contract's
/// limit, which the codec also checks before decoding a batch).
pub use strata_proto::MAX_BATCH_ITEMS;

/// A request the node refuses as malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The key is empty.
    #[error("key must not be empty")]
    EmptyKey,
    /// The key is longer than [`MAX_KEY_BYTES`].
    #[error("key is {len} bytes; the limit is {MAX_KEY_BYTES}")]
    KeyTooLarge {
        /// Its length.
        len: usize,
    },
    /// The value is longer than the node's limit.
    #[error("value is {len} bytes; the limit is {limit}")]
    ValueTooLarge {
        /// Its length.
        len: usize,
        /// The node's limit.
        limit: usize,
    },
    /// A batch with more items than [`MAX_BATCH_ITEMS`].
    #[error("batch has {items} items; the limit is {MAX_BATCH_ITEMS}: split it")]
    BatchTooLarge {
        /// Items in the batch.
        items: usize,
    },
    /// A gRPC message longer than the node reads at all (refused as its
    /// header arrives, before its body).
    #[error(
        "request message is {len} bytes; the node reads at most {limit}: split the batch, and keep each value within --max-value-bytes"
    )]
    MessageTooLarge {
        /// The length its header announced.
        len: usize,
        /// The node's largest message.
        limit: usize,
    },
    /// A consistency level this node does not know.
    #[error("unknown consistency level {0}; expected ONE, TWO, QUORUM, ALL or a replica count")]
    UnknownConsistency(i32),
    /// A consistency that needs more replicas than exist, or none.
    #[error(transparent)]
    Consistency(#[from] strata_cluster::Error),
}

/// Checks a key against the limits.
///
/// # Errors
/// [`RequestError::EmptyKey`] or [`RequestError::KeyTooLarge`].
pub fn validate_key(key: &[u8]) -> Result<(), RequestError> {
    match key.len() {
        0 => Err(RequestError::EmptyKey),
        len if len > MAX_KEY_BYTES => Err(RequestError::KeyTooLarge { len }),
        _ => Ok(()),
    }
}

/// Checks a batch's item count against [`MAX_BATCH_ITEMS`].
///
/// # Errors
/// [`RequestError::BatchTooLarge`].
pub fn validate_batch(items: usize) -> Result<(), RequestError> {
    if items > MAX_BATCH_ITEMS {
        return Err(RequestError::BatchTooLarge { items });
    }
    Ok(())
}

/// Checks a value against the node's limit.
///
/// # Errors
/// [`RequestError::ValueTooLarge`].
pub fn validate_value(value: &[u8], limit: usize) -> Result<(), RequestError> {
    if value.len() > limit {
        return Err(RequestError::ValueTooLarge {
            len: value.len(),
            limit,
        });
    }
    Ok(())
}

/// The domain level a request's consistency message names (`None`: unset,
/// use the cluster default). Called at the service edge.
///
/// # Errors
/// [`RequestError::UnknownConsistency`] for an unset or unknown named level.
pub fn level_of(
    consistency: Option<&v1::Consistency>,
) -> Result<Option<ConsistencyLevel>, RequestError> {
    consistency.map_or(Ok(None), |c| {
        c.to_level()
            .map_err(|UnknownLevel(raw)| RequestError::UnknownConsistency(raw))
    })
}

/// The acks a request needs: its `level`, or `default` when unset,
/// resolved against replication factor `n`.
///
/// # Errors
/// [`RequestError::Consistency`] when the level needs no replica or more
/// than `n`.
pub fn required_acks(
    level: Option<ConsistencyLevel>,
    default: ConsistencyLevel,
    n: u32,
) -> Result<u32, RequestError> {
    Ok(level.unwrap_or(default).required_acks(n)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_non_empty_and_at_most_64_kib() {
        assert_eq!(validate_key(b""), Err(RequestError::EmptyKey));
        assert_eq!(validate_key(&[0; MAX_KEY_BYTES]), Ok(()));
        assert_eq!(
            validate_key(&[0; MAX_KEY_BYTES + 1]),
            Err(RequestError::KeyTooLarge {
                len: MAX_KEY_BYTES + 1
            })
        );
    }

    #[test]
    fn batches_hold_at_most_the_item_limit() {
        assert_eq!(validate_batch(MAX_BATCH_ITEMS), Ok(()));
        assert_eq!(
            validate_batch(MAX_BATCH_ITEMS + 1),
            Err(RequestError::BatchTooLarge {
                items: MAX_BATCH_ITEMS + 1
            })
        );
    }

    #[test]
    fn values_respect_the_configured_limit() {
        assert_eq!(validate_value(&[0; 10], 10), Ok(()));
        assert_eq!(
            validate_value(&[0; 11], 10),
            Err(RequestError::ValueTooLarge { len: 11, limit: 10 })
        );
    }

    #[test]
    fn consistency_is_converted_at_the_edge_and_resolved_against_n() {
        let named = |l: v1::ConsistencyLevel| Some(v1::Consistency::named(l));
        assert_eq!(level_of(None), Ok(None));
        assert_eq!(
            level_of(named(v1::ConsistencyLevel::All).as_ref()),
            Ok(Some(ConsistencyLevel::All))
        );
        assert_eq!(
            level_of(Some(&v1::Consistency {
                level: Some(v1::consistency::Level::Named(42))
            })),
            Err(RequestError::UnknownConsistency(42))
        );
        assert_eq!(
            level_of(named(v1::ConsistencyLevel::Unspecified).as_ref()),
            Err(RequestError::UnknownConsistency(0))
        );
        assert_eq!(required_acks(None, ConsistencyLevel::Quorum, 3), Ok(2));
        assert_eq!(
            required_acks(
                Some(ConsistencyLevel::Replicas(2)),
                ConsistencyLevel::One,
                3
            ),
            Ok(2)
        );
        assert_eq!(
            required_acks(
                Some(ConsistencyLevel::Replicas(4)),
                ConsistencyLevel::One,
                3
            ),
            Err(RequestError::Consistency(
                strata_cluster::Error::ConsistencyOutOfRange {
                    requested: 4,
                    replication_factor: 3
                }
            ))
        );
    }
}
