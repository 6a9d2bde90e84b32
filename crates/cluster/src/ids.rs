//! Identifiers shared across the cluster.

use std::fmt;

use crate::Error;

/// A node's stable identity: the pod name on Kubernetes, a flag or a
/// persisted file elsewhere. Never an IP address: addresses change, ids do not.
///
/// Valid ids are 1 to 63 characters of lowercase ASCII letters, digits and
/// `-`, starting and ending with a letter or digit (a DNS label), so an id is
/// also safe as a file name and in metrics labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(String);

impl NodeId {
    /// Validates and wraps an id.
    ///
    /// # Errors
    /// [`Error::InvalidNodeId`] when `id` is not a DNS label.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        let reason = if id.is_empty() {
            Some("empty")
        } else if id.len() > 63 {
            Some("longer than 63 characters")
        } else if !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            Some("only lowercase letters, digits and '-' are allowed")
        } else if id.starts_with('-') || id.ends_with('-') {
            Some("must start and end with a letter or digit")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidNodeId { id, reason }),
            None => Ok(Self(id)),
        }
    }

    /// The id as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_pod_names() {
        for id in ["strata-0", "node1", "a", "kv-cluster-12"] {
            assert_eq!(NodeId::new(id).expect(id).as_str(), id);
        }
    }

    #[test]
    fn rejects_ids_that_are_not_dns_labels() {
        for (id, reason) in [
            ("", "empty"),
            ("Node", "only lowercase letters, digits and '-' are allowed"),
            ("a/b", "only lowercase letters, digits and '-' are allowed"),
            ("-a", "must start and end with a letter or digit"),
        ] {
            assert_eq!(
                NodeId::new(id),
                Err(Error::InvalidNodeId {
                    id: id.to_owned(),
                    reason
                })
            );
        }
        assert!(NodeId::new("x".repeat(64)).is_err());
    }
}
