//! The `KVCluster` custom resource (`strata.dev/v1alpha1`, namespaced).

// The KubeSchema derive re-declares these structs in a private module to
// derive their JSON schema, which trips `unreachable_pub` on the copies.
#![allow(
    unreachable_pub,
    reason = "false positive on KubeSchema-generated copies"
)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// The API server enforces the `x_kube` rules (CEL `x-kubernetes-validations`,
// no webhook); `crate::validate_spec` repeats the creation rules so the
// reconciler never acts on a spec that slipped past an older CRD.
/// Desired state of a Strata cluster.
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "strata.dev",
    version = "v1alpha1",
    kind = "KVCluster",
    plural = "kvclusters",
    shortname = "kvc",
    namespaced,
    status = "KVClusterStatus",
    // `kubectl scale kvcluster kv --replicas 5`: the same field an edit of
    // the spec changes, so the same rules and the same one-node-at-a-time
    // scaling apply.
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.readyReplicas"
    ),
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    // `kubectl get kvc -o wide`: what the operator is doing or waiting for.
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message","priority":1}"#
)]
#[x_kube(
    validation = Rule::new("self.replicas >= 1").message("replicas must be at least 1"),
    validation = Rule::new("self.replicas >= self.consistency.replicationFactor")
        .message("replicas must be at least consistency.replicationFactor (N): every key needs N nodes"),
    validation = Rule::new("self.consistency.writeQuorum >= 1 && self.consistency.writeQuorum <= self.consistency.replicationFactor")
        .message("consistency.writeQuorum (W) must be between 1 and replicationFactor (N)"),
    validation = Rule::new("self.consistency.readQuorum >= 1 && self.consistency.readQuorum <= self.consistency.replicationFactor")
        .message("consistency.readQuorum (R) must be between 1 and replicationFactor (N)"),
    validation = Rule::new("self.vnodes >= 1 && self.vnodes <= 1024").message("vnodes must be between 1 and 1024"),
    validation = Rule::new("!has(self.security) || !has(self.security.tlsSecret) || has(self.security.gossipKeySecret)")
        .message("security.tlsSecret needs security.gossipKeySecret: TLS does not cover gossip, and without the key a stranger could join the ring"),
    validation = Rule::new("self.antiEntropyIntervalSeconds >= 1 && self.antiEntropyIntervalSeconds < 864000")
        .message("antiEntropyIntervalSeconds must be between 1 and 863999: repair must run within the 10-day tombstone grace, or a replica that missed a delete could bring the key back"),
)]
#[serde(rename_all = "camelCase")]
pub struct KVClusterSpec {
    /// Number of storage nodes. Defaults to 3. The operator adds or removes
    /// one node at a time, streaming data before a node counts or leaves.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Container image with the `strata-node` binary.
    #[x_kube(validation = Rule::new("!self.matches('^\\\\s*$')").message("image must name a container image"))]
    pub image: String,
    /// Persistent storage for each node.
    #[serde(default)]
    pub storage: StorageSpec,
    /// CPU and memory for each node's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Replication and default quorums.
    #[serde(default)]
    pub consistency: ConsistencySpec,
    /// Virtual nodes (tokens) per node. Defaults to 64.
    #[serde(default = "default_vnodes")]
    pub vnodes: u32,
    /// How long hints are kept for a down node before anti-entropy takes
    /// over, in seconds. Defaults to 10800 (3 hours).
    #[serde(default = "default_hint_window_seconds")]
    pub hint_window_seconds: u64,
    /// Interval between scheduled anti-entropy repairs, in seconds.
    /// Defaults to 3600 (1 hour).
    #[serde(default = "default_anti_entropy_interval_seconds")]
    pub anti_entropy_interval_seconds: u64,
    /// Where pods may run.
    #[serde(default)]
    pub placement: PlacementSpec,
    /// Client tokens and gossip authentication (docs/security.md).
    #[serde(default)]
    pub security: SecuritySpec,
}

/// Secrets the nodes mount. Changing either restarts the pods one at a
/// time (a changed Secret's contents are re-read without a restart).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecuritySpec {
    /// Secret with key `tokens`: the client tokens file (`<role>
    /// <sha256>` lines; `strata token-new` makes them). Set: every client
    /// call needs a bearer token; include the hash of the operator's
    /// `admin` token (its `--node-token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret: Option<String>,
    /// Secret with key `key`: the shared gossip key (at least 16 bytes).
    /// Set: gossip from anything without the key is ignored. During a
    /// rotation, several keys, one per line: the first seals, any opens;
    /// nodes re-read the Secret when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gossip_key_secret: Option<String>,
    /// TLS Secret with keys `tls.crt`, `tls.key` and `ca.crt` (what
    /// cert-manager writes for a Certificate). Set: both ports serve TLS
    /// and the internal port requires certificates from that CA. The
    /// certificate needs the DNS names `*.<name>-peers.<namespace>.svc` and
    /// `<name>.<namespace>.svc`. Rotated in place, it is picked up
    /// without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
}

/// Persistent volume settings.
#[derive(KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("!has(oldSelf.size) || quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0")
    .message("storage.size may grow but not shrink (a volume cannot be made smaller)"))]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Volume size as a Kubernetes quantity. Defaults to "10Gi". May grow
    /// (when the storage class allows expansion), never shrink.
    #[serde(default = "default_storage_size")]
    #[x_kube(validation = Rule::new("isQuantity(self)").message("storage.size must be a quantity such as 10Gi"))]
    pub size: String,
    /// Storage class; unset uses the cluster default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// What happens to a node's volume when the cluster is deleted or scaled
    /// down. Defaults to Retain.
    #[serde(default)]
    pub retention: VolumeRetention,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
            retention: VolumeRetention::default(),
        }
    }
}

/// PersistentVolumeClaim retention policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VolumeRetention {
    /// Keep volumes (data survives deleting the cluster).
    #[default]
    Retain,
    /// Delete volumes with their pods.
    Delete,
}

/// Replication factor N and default quorums W and R.
#[derive(KubeSchema, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistencySpec {
    /// N: replicas per key. Defaults to 3. Fixed when the cluster is
    /// created: changing it would need every key re-replicated (see
    /// docs/operator.md); create a new cluster instead.
    #[serde(default = "default_n")]
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("replicationFactor cannot change on a live cluster; create a new KVCluster and copy the data"))]
    pub replication_factor: u32,
    /// W: acknowledgements a write waits for by default. Defaults to 2.
    #[serde(default = "default_quorum")]
    pub write_quorum: u32,
    /// R: replicas a read waits for by default. Defaults to 2.
    #[serde(default = "default_quorum")]
    pub read_quorum: u32,
    /// Resolve concurrent writes by timestamp instead of keeping siblings.
    /// Defaults to false.
    #[serde(default)]
    pub last_write_wins: bool,
    /// Count only a key's own replicas toward W (no sloppy-quorum
    /// stand-ins): writes fail with fewer than W replicas up, and with
    /// W + R > N every read sees every acknowledged write. Defaults to
    /// false.
    #[serde(default)]
    pub strict_quorum: bool,
}

impl Default for ConsistencySpec {
    fn default() -> Self {
        Self {
            replication_factor: default_n(),
            write_quorum: default_quorum(),
            read_quorum: default_quorum(),
            last_write_wins: false,
            strict_quorum: false,
        }
    }
}

/// Pod placement constraints, passed through to the StatefulSet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
}

/// Observed state of a Strata cluster, written by the operator.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KVClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ClusterPhase>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub ready_replicas: u32,
    /// Ring members and their states.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<RingMember>,
    /// Ready, Progressing and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The topology change in progress, if any (one at a time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_change: Option<TopologyChange>,
    /// How many pods formed the cluster (its initial members). Set once,
    /// before the StatefulSet is created; later pods join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub founders: Option<u32>,
    /// Hash of the node settings the spec asks for; pods whose
    /// `strata.dev/config-hash` differs are restarted one at a time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// What the operator is doing or waiting for, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Coarse lifecycle of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ClusterPhase {
    Pending,
    Running,
    Scaling,
    Degraded,
    Failed,
}

/// One node on the ring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RingMember {
    /// Stable node id: the pod name.
    pub node_id: String,
    /// Waiting, Joining, Normal, Leaving or Left.
    pub state: String,
    /// Bytes stored, as the node reports them.
    #[serde(default)]
    pub load_bytes: u64,
    /// Whether the node is heard from (gossip).
    #[serde(default)]
    pub alive: bool,
    /// The settings hash its pod runs with (compare `status.configHash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Why the node's store refuses writes (a full volume, an IO error,
    /// damage), with what to do; absent while it takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_failure: Option<String>,
}

/// A join or decommission the operator is driving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopologyChange {
    /// Join or Decommission.
    pub kind: String,
    pub node_id: String,
    /// RFC 3339 time the change started.
    pub started_at: String,
    /// Ranges streamed so far.
    #[serde(default)]
    pub ranges_done: u64,
    /// Ranges to stream.
    #[serde(default)]
    pub ranges_total: u64,
    /// Bytes streamed so far.
    #[serde(default)]
    pub bytes_transferred: u64,
}

fn default_replicas() -> u32 {
    3
}
fn default_vnodes() -> u32 {
    64
}
fn default_hint_window_seconds() -> u64 {
    3 * 3600
}
fn default_anti_entropy_interval_seconds() -> u64 {
    3600
}
fn default_storage_size() -> String {
    "10Gi".to_owned()
}
fn default_n() -> u32 {
    3
}
fn default_quorum() -> u32 {
    2
}

#[cfg(test)]
mod cel_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_manifest_gets_the_documented_defaults() {
        let spec: KVClusterSpec =
            serde_json::from_value(serde_json::json!({ "image": "strata:0.1" })).expect("parses");
        assert_eq!(spec.replicas, 3);
        assert_eq!(spec.vnodes, 64);
        assert_eq!(spec.hint_window_seconds, 10_800);
        assert_eq!(spec.anti_entropy_interval_seconds, 3_600);
        assert_eq!(spec.storage.size, "10Gi");
        assert_eq!(spec.storage.retention, VolumeRetention::Retain);
        assert_eq!(
            (
                spec.consistency.replication_factor,
                spec.consistency.write_quorum,
                spec.consistency.read_quorum
            ),
            (3, 2, 2)
        );
        assert!(!spec.consistency.last_write_wins);
        assert!(!spec.consistency.strict_quorum, "sloppy quorums by default");
    }

    #[test]
    fn kubectl_scale_changes_the_spec_replicas() {
        use kube::CustomResourceExt as _;
        let crd = KVCluster::crd();
        let scale = crd.spec.versions[0]
            .subresources
            .as_ref()
            .and_then(|s| s.scale.as_ref())
            .expect("a scale subresource");
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        assert_eq!(scale.status_replicas_path, ".status.readyReplicas");
        // The paths name the fields the types serialize.
        let spec: KVClusterSpec =
            serde_json::from_value(serde_json::json!({ "image": "i", "replicas": 5 }))
                .expect("parses");
        assert_eq!(spec.replicas, 5);
        let status = serde_json::to_value(KVClusterStatus {
            ready_replicas: 4,
            ..KVClusterStatus::default()
        })
        .expect("serializes");
        assert_eq!(status["readyReplicas"], 4);
    }
}
