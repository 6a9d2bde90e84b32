//! Admission rules for a `KVClusterSpec`: a pure function, so the reconciler
//! can refuse a bad spec with a clear status condition instead of acting on it.

use std::fmt;

use crate::KVClusterSpec;

/// The nodes' tombstone grace (`--tombstone-grace-secs` default, 10 days):
/// a node refuses to start with an anti-entropy interval at or above it.
pub(crate) const TOMBSTONE_GRACE_SECONDS: u64 = 10 * 24 * 3600;

/// One reason a spec cannot be reconciled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// JSON path of the offending field, e.g. `spec.consistency.writeQuorum`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem with `spec`; empty when it is valid.
#[must_use]
pub fn validate_spec(spec: &KVClusterSpec) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    let mut problem = |field, message: String| problems.push(SpecProblem { field, message });
    let c = &spec.consistency;
    if c.replication_factor == 0 {
        problem(
            "spec.consistency.replicationFactor",
            "must be at least 1".into(),
        );
    }
    if spec.replicas < c.replication_factor {
        problem(
            "spec.replicas",
            format!(
                "{} nodes cannot hold {} replicas of each key",
                spec.replicas, c.replication_factor
            ),
        );
    }
    for (field, quorum) in [
        ("spec.consistency.writeQuorum", c.write_quorum),
        ("spec.consistency.readQuorum", c.read_quorum),
    ] {
        if quorum == 0 || quorum > c.replication_factor {
            problem(
                field,
                format!("{quorum} is outside 1..={}", c.replication_factor),
            );
        }
    }
    if spec.vnodes == 0 || spec.vnodes > 1024 {
        problem(
            "spec.vnodes",
            format!("{} is outside 1..=1024", spec.vnodes),
        );
    }
    if spec.security.tls_secret.is_some() && spec.security.gossip_key_secret.is_none() {
        problem(
            "spec.security.gossipKeySecret",
            "needed with tlsSecret: TLS does not cover gossip".into(),
        );
    }
    if spec.image.trim().is_empty() {
        problem("spec.image", "must name a container image".into());
    }
    if spec.anti_entropy_interval_seconds == 0
        || spec.anti_entropy_interval_seconds >= TOMBSTONE_GRACE_SECONDS
    {
        problem(
            "spec.antiEntropyIntervalSeconds",
            format!(
                "{} is outside 1..{TOMBSTONE_GRACE_SECONDS}: repair must run within the nodes' \
                 tombstone grace",
                spec.anti_entropy_interval_seconds
            ),
        );
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> KVClusterSpec {
        serde_json::from_value(json).expect("parses")
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(
            validate_spec(&spec(serde_json::json!({ "image": "strata:0.1" }))),
            vec![]
        );
    }

    #[test]
    fn quorums_above_n_and_too_few_nodes_are_reported_by_field() {
        let bad = spec(serde_json::json!({
            "image": "strata:0.1",
            "replicas": 2,
            "consistency": { "replicationFactor": 3, "writeQuorum": 4, "readQuorum": 0 }
        }));
        let fields: Vec<_> = validate_spec(&bad).into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "spec.replicas",
                "spec.consistency.writeQuorum",
                "spec.consistency.readQuorum"
            ]
        );
    }
}
