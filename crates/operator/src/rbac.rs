//! The operator's permissions: exactly the verbs on exactly the resources
//! it uses, as a ClusterRole (`strata-operator --print-rbac`). The
//! end-to-end test checks every request the operator makes against
//! [`rules`] with [`allows`], so the list can neither lag behind the code
//! nor grow unnoticed (no wildcards: a unit test says so).

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// `(API group, resources, verbs)` the operator needs.
const NEEDS: &[(&str, &[&str], &[&str])] = &[
    // Its resource: watched, finalizer added and removed, status written.
    (
        "strata.dev",
        &["kvclusters"],
        &["get", "list", "watch", "patch", "update"],
    ),
    (
        "strata.dev",
        &["kvclusters/status"],
        &["get", "patch", "update"],
    ),
    // Owned objects: server-side applied (a create when absent).
    (
        "apps",
        &["statefulsets"],
        &["get", "list", "watch", "create", "patch"],
    ),
    (
        "",
        &["services", "configmaps"],
        &["get", "list", "watch", "create", "patch"],
    ),
    (
        "policy",
        &["poddisruptionbudgets"],
        &["get", "list", "watch", "create", "patch"],
    ),
    // Pods: observed, deleted one at a time for a rolling restart.
    ("", &["pods"], &["get", "list", "watch", "delete"]),
    // Volumes: observed, grown, deleted per the retention policy.
    (
        "",
        &["persistentvolumeclaims"],
        &["get", "list", "watch", "patch", "delete"],
    ),
    // Events on KVClusters.
    ("events.k8s.io", &["events"], &["create", "patch"]),
    // Leader election.
    (
        "coordination.k8s.io",
        &["leases"],
        &["get", "create", "update"],
    ),
];

/// The rules, one per entry of the table above.
#[must_use]
pub fn rules() -> Vec<PolicyRule> {
    NEEDS
        .iter()
        .map(|(group, resources, verbs)| PolicyRule {
            api_groups: Some(vec![(*group).to_owned()]),
            resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
            verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
            ..PolicyRule::default()
        })
        .collect()
}

/// The ClusterRole (bind it cluster-wide, or per namespace with a
/// RoleBinding when the operator runs with `--namespace`).
#[must_use]
pub fn cluster_role(name: &str) -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        rules: Some(rules()),
        ..ClusterRole::default()
    }
}

/// Whether `rules` allow `verb` on `group`/`resource` (`pods`,
/// `kvclusters/status`), as the RBAC authorizer decides (exact names; a
/// `*` would match anything).
#[must_use]
pub fn allows(rules: &[PolicyRule], verb: &str, group: &str, resource: &str) -> bool {
    let hit = |list: &[String], wanted: &str| list.iter().any(|x| x == wanted || x == "*");
    rules.iter().any(|rule| {
        hit(rule.api_groups.as_deref().unwrap_or_default(), group)
            && hit(rule.resources.as_deref().unwrap_or_default(), resource)
            && hit(&rule.verbs, verb)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_privilege_no_wildcards_no_secrets_and_status_apart() {
        let rules = rules();
        for rule in &rules {
            let all = rule
                .api_groups
                .iter()
                .flatten()
                .chain(rule.resources.iter().flatten())
                .chain(&rule.verbs);
            assert!(all.into_iter().all(|x| x != "*"), "{rule:?}");
        }
        assert!(!allows(&rules, "get", "", "secrets"));
        assert!(!allows(&rules, "delete", "strata.dev", "kvclusters"));
        assert!(!allows(&rules, "delete", "apps", "statefulsets"));
        assert!(allows(&rules, "patch", "strata.dev", "kvclusters/status"));
        assert!(allows(&rules, "delete", "", "pods"));
    }
}
