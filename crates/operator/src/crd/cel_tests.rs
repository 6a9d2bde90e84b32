//! The CRD's CEL rules, evaluated offline on the committed
//! `crds/kvcluster.yaml` (what users install) with kube's CEL evaluator,
//! schema defaults applied first as the API server does.

#![allow(
    clippy::needless_pass_by_value,
    reason = "the helpers take json! literals"
)]

use kube::core::cel::{ErrorKind, Validator};
use serde_json::{Value, json};

fn schema() -> Value {
    let crd: Value =
        serde_yaml::from_str(include_str!("../../../../crds/kvcluster.yaml")).expect("CRD parses");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn object(spec: &Value) -> Value {
    json!({
        "apiVersion": "strata.dev/v1alpha1",
        "kind": "KVCluster",
        "metadata": { "name": "kv", "namespace": "default" },
        "spec": spec,
    })
}

/// The messages of the rules `spec` breaks (on update from `old`).
fn broken(spec: Value, old: Option<Value>) -> Vec<String> {
    let old = old.as_ref().map(object);
    match Validator::new().validate(&schema(), &object(&spec), old.as_ref()) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| {
                assert_eq!(
                    e.kind,
                    ErrorKind::ValidationFailure,
                    "a rule failed to evaluate rather than saying no: {e:?}"
                );
                e.message
            })
            .collect(),
    }
}

#[test]
fn the_minimal_manifest_and_a_production_one_are_accepted() {
    assert_eq!(
        broken(json!({ "image": "strata:0.1" }), None),
        Vec::<String>::new()
    );
    let production = json!({
        "image": "ghcr.io/strata-db/strata:0.1.0",
        "replicas": 5,
        "storage": { "size": "100Gi", "storageClassName": "fast", "retention": "Delete" },
        "consistency": { "replicationFactor": 3, "writeQuorum": 2, "readQuorum": 2 },
    });
    assert_eq!(broken(production, None), Vec::<String>::new());
}

#[test]
fn quorums_must_fit_inside_n() {
    let errors = broken(
        json!({ "image": "s", "consistency": { "replicationFactor": 3, "writeQuorum": 4, "readQuorum": 0 } }),
        None,
    );
    assert!(
        errors.iter().any(|m| m.contains("writeQuorum (W)")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|m| m.contains("readQuorum (R)")),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn fewer_nodes_than_n_and_zero_nodes_are_refused() {
    let errors = broken(json!({ "image": "s", "replicas": 2 }), None);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("replicationFactor (N)"), "{errors:?}");
    let errors = broken(
        json!({ "image": "s", "replicas": 0, "consistency": { "replicationFactor": 1, "writeQuorum": 1, "readQuorum": 1 } }),
        None,
    );
    assert!(
        errors.iter().any(|m| m.contains("at least 1")),
        "{errors:?}"
    );
}

#[test]
fn an_empty_image_is_refused() {
    for image in ["", "   "] {
        let errors = broken(json!({ "image": image }), None);
        assert_eq!(errors, vec!["image must name a container image".to_owned()]);
    }
}

#[test]
fn storage_may_grow_but_not_shrink_and_must_be_a_quantity() {
    let old = json!({ "image": "s", "storage": { "size": "10Gi" } });
    assert_eq!(
        broken(
            json!({ "image": "s", "storage": { "size": "20Gi" } }),
            Some(old.clone())
        ),
        Vec::<String>::new()
    );
    let errors = broken(
        json!({ "image": "s", "storage": { "size": "5Gi" } }),
        Some(old),
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("may grow but not shrink"), "{errors:?}");
    let errors = broken(json!({ "image": "s", "storage": { "size": "lots" } }), None);
    assert!(
        errors.iter().any(|m| m.contains("must be a quantity")),
        "{errors:?}"
    );
}

#[test]
fn n_cannot_change_on_a_live_cluster_but_w_and_r_can() {
    let old = json!({ "image": "s", "replicas": 5 });
    let errors = broken(
        json!({ "image": "s", "replicas": 5, "consistency": { "replicationFactor": 5, "writeQuorum": 3, "readQuorum": 3 } }),
        Some(old.clone()),
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("replicationFactor cannot change"),
        "{errors:?}"
    );
    assert_eq!(
        broken(
            json!({ "image": "s", "replicas": 5, "consistency": { "writeQuorum": 3, "readQuorum": 1 } }),
            Some(old)
        ),
        Vec::<String>::new()
    );
}

#[test]
fn tls_needs_the_gossip_key_too() {
    let errors = broken(
        json!({ "image": "s", "security": { "tlsSecret": "kv-tls" } }),
        None,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("gossipKeySecret"), "{errors:?}");
    assert_eq!(
        broken(
            json!({ "image": "s", "security": { "tlsSecret": "kv-tls", "gossipKeySecret": "kv-gossip" } }),
            None
        ),
        Vec::<String>::new()
    );
}

#[test]
fn repair_must_run_within_the_tombstone_grace() {
    let errors = broken(
        json!({ "image": "s", "antiEntropyIntervalSeconds": 864_000 }),
        None,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("tombstone grace"), "{errors:?}");
    assert_eq!(
        broken(
            json!({ "image": "s", "antiEntropyIntervalSeconds": 86_400 }),
            None
        ),
        Vec::<String>::new()
    );
}
