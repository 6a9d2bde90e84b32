//! Constructors for the generated [`Consistency`] message.

use crate::v1::{Consistency, ConsistencyLevel, consistency::Level};

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
}
