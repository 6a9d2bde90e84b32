//! Parsing consistency levels as users type them.

use strata_proto::v1::Consistency;

use crate::Error;

/// Parses `one`, `two`, `quorum`, `all` (any case) or a replica count.
///
/// # Errors
/// [`Error::InvalidConsistency`] for anything else, including `0`.
pub fn parse_consistency(text: &str) -> Result<Consistency, Error> {
    text.parse::<strata_cluster::ConsistencyLevel>()
        .map(Consistency::from)
        .map_err(|_| Error::InvalidConsistency(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_proto::v1::ConsistencyLevel;

    #[test]
    fn parses_names_and_counts() {
        assert_eq!(
            parse_consistency("QUORUM").expect("valid"),
            Consistency::named(ConsistencyLevel::Quorum)
        );
        assert_eq!(
            parse_consistency("one").expect("valid"),
            Consistency::named(ConsistencyLevel::One)
        );
        assert_eq!(
            parse_consistency("3").expect("valid"),
            Consistency::replicas(3)
        );
    }

    #[test]
    fn rejects_zero_and_unknown_names() {
        for bad in ["0", "most", "-1", ""] {
            assert!(
                matches!(parse_consistency(bad), Err(Error::InvalidConsistency(t)) if t == bad),
                "{bad:?} should be rejected"
            );
        }
    }
}
