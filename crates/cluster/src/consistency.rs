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

/// Parses `one`, `two`, `quorum`, `all` (any case) or a replica count
/// `>= 1`: the one parser behind node flags, the CLI and the client.
impl std::str::FromStr for ConsistencyLevel {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        match text.to_ascii_lowercase().as_str() {
            "one" => Ok(Self::One),
            "two" => Ok(Self::Two),
            "quorum" => Ok(Self::Quorum),
            "all" => Ok(Self::All),
            other => match other.parse::<u32>() {
                Ok(count) if count > 0 => Ok(Self::Replicas(count)),
                _ => Err(Error::InvalidConsistency {
                    text: text.to_owned(),
                }),
            },
        }
    }
}

impl std::fmt::Display for ConsistencyLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::One => f.write_str("one"),
            Self::Two => f.write_str("two"),
            Self::Quorum => f.write_str("quorum"),
            Self::All => f.write_str("all"),
            Self::Replicas(count) => write!(f, "{count}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_any_case_and_counts_and_prints_them_back() {
        for (text, level) in [
            ("QUORUM", ConsistencyLevel::Quorum),
            ("one", ConsistencyLevel::One),
            ("Two", ConsistencyLevel::Two),
            ("all", ConsistencyLevel::All),
            ("3", ConsistencyLevel::Replicas(3)),
        ] {
            assert_eq!(text.parse::<ConsistencyLevel>(), Ok(level));
            assert_eq!(level.to_string().parse::<ConsistencyLevel>(), Ok(level));
        }
        for bad in ["0", "most", "-1", ""] {
            assert_eq!(
                bad.parse::<ConsistencyLevel>(),
                Err(Error::InvalidConsistency { text: bad.into() })
            );
        }
    }

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
        // The message says what is allowed, for zero as for too many.
        let zero = ConsistencyLevel::Replicas(0).required_acks(3).unwrap_err();
        assert!(
            zero.to_string()
                .contains("must be 1 to the replication factor, 3"),
            "{zero}"
        );
    }
}
