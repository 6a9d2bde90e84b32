//! Constructors for the generated [`Consistency`] message, and its
//! conversions to and from the domain type
//! [`strata_cluster::ConsistencyLevel`].

use crate::v1::{Consistency, ConsistencyLevel, consistency::Level};
use strata_cluster::ConsistencyLevel as Domain;

impl From<Domain> for Consistency {
    fn from(level: Domain) -> Self {
        match level {
            Domain::One => Self::named(ConsistencyLevel::One),
            Domain::Two => Self::named(ConsistencyLevel::Two),
            Domain::Quorum => Self::named(ConsistencyLevel::Quorum),
            Domain::All => Self::named(ConsistencyLevel::All),
            Domain::Replicas(count) => Self::replicas(count),
        }
    }
}

/// A consistency message that names no level this build knows: the raw
/// enum value (`0` for unset or `UNSPECIFIED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownLevel(pub i32);

impl Consistency {
    /// The domain level, `None` when the message leaves it unset.
    ///
    /// # Errors
    /// [`UnknownLevel`] for an `UNSPECIFIED` or unknown named level.
    pub fn to_level(&self) -> Result<Option<Domain>, UnknownLevel> {
        let Some(level) = &self.level else {
            return Ok(None);
        };
        Ok(Some(match level {
            Level::Replicas(count) => Domain::Replicas(*count),
            Level::Named(raw) => match ConsistencyLevel::try_from(*raw) {
                Ok(ConsistencyLevel::One) => Domain::One,
                Ok(ConsistencyLevel::Two) => Domain::Two,
                Ok(ConsistencyLevel::Quorum) => Domain::Quorum,
                Ok(ConsistencyLevel::All) => Domain::All,
                Ok(ConsistencyLevel::Unspecified) | Err(_) => return Err(UnknownLevel(*raw)),
            },
        }))
    }
}

impl Consistency {
    /// A named level (ONE, TWO, QUORUM, ALL).
    #[must_use]
    pub fn named(level: ConsistencyLevel) -> Self {
        Self {
            level: Some(Level::Named(level as i32)),
        }
    }

    /// An explicit number of replicas.
    #[must_use]
    pub fn replicas(count: u32) -> Self {
        Self {
            level: Some(Level::Replicas(count)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_fill_the_oneof() {
        assert_eq!(
            Consistency::named(ConsistencyLevel::All).level,
            Some(Level::Named(4))
        );
        assert_eq!(Consistency::replicas(3).level, Some(Level::Replicas(3)));
    }

    #[test]
    fn domain_levels_round_trip_and_unknown_names_are_errors() {
        for level in [
            Domain::One,
            Domain::Two,
            Domain::Quorum,
            Domain::All,
            Domain::Replicas(5),
        ] {
            assert_eq!(Consistency::from(level).to_level(), Ok(Some(level)));
        }
        assert_eq!(Consistency { level: None }.to_level(), Ok(None));
        let named = |raw| Consistency {
            level: Some(Level::Named(raw)),
        };
        assert_eq!(named(0).to_level(), Err(UnknownLevel(0)));
        assert_eq!(named(42).to_level(), Err(UnknownLevel(42)));
    }
}
