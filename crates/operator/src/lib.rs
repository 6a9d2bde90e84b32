//! Kubernetes operator for Strata.
//!
//! `crd` defines the `KVCluster` custom resource as Rust types (the YAML in
//! `crds/` is generated from them by the `crdgen` binary). `validate` holds
//! the spec's admission rules as a pure function; `plan` is scaling as a
//! pure level-triggered state machine (spec and observations in, the one
//! next action out); `objects` builds the owned Kubernetes objects (the
//! StatefulSet, Services, ConfigMap, PodDisruptionBudget) from the
//! resource. The reconciler, which observes the cluster, performs
//! those actions and writes the status, lands with the operator issue.
//!
//! **Architecture invariant:** planning is pure (spec and observed state in,
//! actions out); only the reconciler's edges talk to the API server.

pub mod crd;
pub mod leader;
pub mod metrics;
pub mod nodes;
pub mod objects;
pub mod observe;
pub mod plan;
pub mod quantity;
pub mod rbac;
pub mod reconcile;
pub mod status;
mod validate;

pub use crd::{KVCluster, KVClusterSpec, KVClusterStatus};
pub use validate::{SpecProblem, validate_spec};

/// The CRD manifest as YAML, exactly as committed in `crds/kvcluster.yaml`.
///
/// # Errors
/// Serialization failure (not expected for a well-formed CRD).
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt as _;
    serde_yaml::to_string(&KVCluster::crd())
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_crd_matches_the_rust_types() {
        let committed = include_str!("../../../crds/kvcluster.yaml");
        let generated = super::crd_yaml().expect("serializes");
        assert!(
            committed == generated,
            "crds/kvcluster.yaml is stale: run `cargo run -p strata-operator --bin crdgen > crds/kvcluster.yaml`"
        );
    }
}
