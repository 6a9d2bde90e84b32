//! The `KVCluster` custom resource (`strata.dev/v1alpha1`, namespaced).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a Strata cluster.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "strata.dev",
    version = "v1alpha1",
    kind = "KVCluster",
    plural = "kvclusters",
    shortname = "kvc",
    namespaced,
    status = "KVClusterStatus",
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KVClusterSpec {
    /// Number of storage nodes. Defaults to 3.
    #[serde(default = "default_replicas")]
    pub replicas: u32,
    /// Container image with the `strata-node` binary.
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
}

/// Persistent volume settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Volume size as a Kubernetes quantity. Defaults to "10Gi".
    #[serde(default = "default_storage_size")]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsistencySpec {
    /// N: replicas per key. Defaults to 3.
    #[serde(default = "default_n")]
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
}

impl Default for ConsistencySpec {
    fn default() -> Self {
        Self {
            replication_factor: default_n(),
            write_quorum: default_quorum(),
            read_quorum: default_quorum(),
            last_write_wins: false,
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
    /// Joining, Normal, Leaving or Left.
    pub state: String,
    #[serde(default)]
    pub load_bytes: u64,
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
    #[serde(default)]
    pub ranges_done: u64,
    #[serde(default)]
    pub ranges_total: u64,
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
    }
}
