//! Consistency levels and how many acknowledgements each requires.

use crate::Error;

/// How many replicas must acknowledge a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsistencyLevel {
    /// One replica.
    One,
    /// Two replicas.
    Two,
    /// A majority: `N / 2 + 1`.
    Quorum,
    /// Every replica.
    All,
    /// An explicit count, `1 ..= N`.
    Replicas(u32),
}

impl ConsistencyLevel {
    /// Acknowledgements required with replication factor `n`.
    ///
    /// # Errors
    /// [`Error::ConsistencyOutOfRange`] when the level needs zero replicas or
    /// more than `n`: such a request can never succeed, so it is rejected
    /// before any replica is contacted.
    pub fn required_acks(self, n: u32) -> Result<u32, Error> {
        let requested = match self {
            Self::One => 1,
            Self::Two => 2,
            Self::Quorum => n / 2 + 1,
            Self::All => n,
            Self::Replicas(count) => count,
        };
        if requested == 0 || requested > n {
            return Err(Error::ConsistencyOutOfRange {
                requested,
                replication_factor: n,
            });
        }
        Ok(requested)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_a_majority() {
        let quorum = |n| ConsistencyLevel::Quorum.required_acks(n).expect("valid");
        assert_eq!(
            [quorum(1), quorum(2), quorum(3), quorum(4), quorum(5)],
            [1, 2, 2, 3, 3]
        );
    }

    #[test]
    fn named_levels_resolve_against_n() {
        assert_eq!(ConsistencyLevel::One.required_acks(3), Ok(1));
        assert_eq!(ConsistencyLevel::Two.required_acks(3), Ok(2));
        assert_eq!(ConsistencyLevel::All.required_acks(5), Ok(5));
        assert_eq!(ConsistencyLevel::Replicas(3).required_acks(3), Ok(3));
    }

    #[test]
    fn impossible_levels_are_rejected() {
        assert_eq!(
            ConsistencyLevel::Two.required_acks(1),
            Err(Error::ConsistencyOutOfRange {
                requested: 2,
                replication_factor: 1
            })
        );
        assert_eq!(
            ConsistencyLevel::Replicas(0).required_acks(3),
            Err(Error::ConsistencyOutOfRange {
                requested: 0,
                replication_factor: 3
            })
        );
        assert!(ConsistencyLevel::Replicas(4).required_acks(3).is_err());
    }
}
