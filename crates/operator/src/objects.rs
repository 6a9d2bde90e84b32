//! The Kubernetes objects a `KVCluster` owns, built as pure functions of
//! the resource: the reconciler applies them (server-side apply) and
//! compares nothing by hand. Names derive from the cluster's name; every
//! object carries the same labels and an owner reference to the cluster.
//!
//! - a headless Service (`<name>-peers`) for peer DNS and gossip seeds,
//!   publishing not-ready addresses so joining pods find each other;
//! - a client Service (`<name>`) for the KV port;
//! - a ConfigMap (`<name>-config`) with every node setting the spec
//!   controls, read as `STRATA_*` environment variables;
//! - a PodDisruptionBudget (`<name>`) that lets no voluntary disruption
//!   take more nodes than QUORUM can spare;
//! - the StatefulSet (`<name>`): pod name = node id, a volume per pod.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar,
    EnvVarSource, GRPCAction, HTTPGetAction, KeyToPath, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::KVCluster;
use crate::crd::VolumeRetention;

/// The node's client gRPC port (`KV`, `Admin`, health).
pub const GRPC_PORT: i32 = 7400;
/// The node's internal port: `Replica` over TCP, gossip over UDP. Only
/// Strata pods need to reach it.
pub const INTERNAL_PORT: i32 = 7401;
/// The node's Prometheus metrics port.
pub const METRICS_PORT: i32 = 9400;
/// Where each pod's volume is mounted (its data directory).
pub const DATA_DIR: &str = "/data";
/// The non-root user the node runs as.
pub const RUN_AS_USER: i64 = 10001;
/// Seconds a stopping pod gets to flush before it is killed.
pub const TERMINATION_GRACE_SECONDS: i64 = 60;
/// Pod template annotation: hash of everything a pod runs with (template
/// and settings). A pod whose value differs from the StatefulSet's is
/// restarted by the operator, one at a time.
pub const CONFIG_HASH_ANNOTATION: &str = "strata.dev/config-hash";

/// Labels every owned object carries, and the pods' selector.
#[must_use]
pub fn labels(cluster: &KVCluster) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "strata".to_owned()),
        ("app.kubernetes.io/instance".to_owned(), name(cluster)),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "strata-operator".to_owned(),
        ),
    ])
}

fn name(cluster: &KVCluster) -> String {
    cluster.metadata.name.clone().unwrap_or_default()
}

fn meta(cluster: &KVCluster, object: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(object),
        namespace: cluster.metadata.namespace.clone(),
        labels: Some(labels(cluster)),
        owner_references: Some(vec![OwnerReference {
            api_version: "strata.dev/v1alpha1".to_owned(),
            kind: "KVCluster".to_owned(),
            name: name(cluster),
            uid: cluster.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..ObjectMeta::default()
    }
}

/// The headless Service's name.
#[must_use]
pub fn peers_service_name(cluster: &KVCluster) -> String {
    format!("{}-peers", name(cluster))
}

/// Pod `ordinal`'s stable DNS name, through the headless Service.
#[must_use]
pub fn pod_host(cluster: &KVCluster, ordinal: u32) -> String {
    let namespace = cluster.metadata.namespace.as_deref().unwrap_or("default");
    format!(
        "{}-{ordinal}.{}.{namespace}.svc",
        name(cluster),
        peers_service_name(cluster)
    )
}

/// The headless Service: peer DNS names and gossip seeds. Not-ready
/// addresses are published: a joining pod is not Ready until it has joined,
/// and must be reachable before that.
#[must_use]
pub fn peers_service(cluster: &KVCluster) -> Service {
    Service {
        metadata: meta(cluster, peers_service_name(cluster)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(labels(cluster)),
            ports: Some(vec![grpc_service_port(), internal_service_port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The client Service for the KV port.
#[must_use]
pub fn client_service(cluster: &KVCluster) -> Service {
    Service {
        metadata: meta(cluster, name(cluster)),
        spec: Some(ServiceSpec {
            selector: Some(labels(cluster)),
            ports: Some(vec![grpc_service_port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn internal_service_port() -> ServicePort {
    ServicePort {
        name: Some("internal".to_owned()),
        port: INTERNAL_PORT,
        target_port: Some(IntOrString::Int(INTERNAL_PORT)),
        app_protocol: Some("grpc".to_owned()),
        ..ServicePort::default()
    }
}

fn grpc_service_port() -> ServicePort {
    ServicePort {
        name: Some("grpc".to_owned()),
        port: GRPC_PORT,
        target_port: Some(IntOrString::Int(GRPC_PORT)),
        app_protocol: Some("grpc".to_owned()),
        ..ServicePort::default()
    }
}

/// Every node setting the spec controls, as `STRATA_*` variables.
/// `founders` is the number of pods the cluster was created with (kept in
/// the status): they form the initial cluster; later pods join.
#[must_use]
pub fn config_map(cluster: &KVCluster, founders: u32) -> ConfigMap {
    let spec = &cluster.spec;
    let c = &spec.consistency;
    let initial: Vec<String> = (0..founders)
        .map(|i| format!("{}-{i}", name(cluster)))
        .collect();
    let seeds: Vec<String> = (0..founders)
        .map(|i| format!("{}:{INTERNAL_PORT}", pod_host(cluster, i)))
        .collect();
    let data = BTreeMap::from([
        ("STRATA_CLUSTER_ID".to_owned(), cluster_id(cluster)),
        ("STRATA_DATA_DIR".to_owned(), DATA_DIR.to_owned()),
        ("STRATA_LISTEN".to_owned(), format!("0.0.0.0:{GRPC_PORT}")),
        (
            "STRATA_INTERNAL_LISTEN".to_owned(),
            format!("0.0.0.0:{INTERNAL_PORT}"),
        ),
        (
            "STRATA_METRICS_LISTEN".to_owned(),
            format!("0.0.0.0:{METRICS_PORT}"),
        ),
        (
            "STRATA_REPLICATION_FACTOR".to_owned(),
            c.replication_factor.to_string(),
        ),
        (
            "STRATA_WRITE_CONSISTENCY".to_owned(),
            c.write_quorum.to_string(),
        ),
        (
            "STRATA_READ_CONSISTENCY".to_owned(),
            c.read_quorum.to_string(),
        ),
        (
            "STRATA_LAST_WRITE_WINS".to_owned(),
            c.last_write_wins.to_string(),
        ),
        (
            "STRATA_STRICT_QUORUM".to_owned(),
            c.strict_quorum.to_string(),
        ),
        ("STRATA_VNODES".to_owned(), spec.vnodes.to_string()),
        (
            "STRATA_HINT_WINDOW_SECS".to_owned(),
            spec.hint_window_seconds.to_string(),
        ),
        (
            "STRATA_ANTI_ENTROPY_INTERVAL_SECS".to_owned(),
            spec.anti_entropy_interval_seconds.to_string(),
        ),
        ("STRATA_INITIAL_CLUSTER".to_owned(), initial.join(",")),
        ("STRATA_SEEDS".to_owned(), seeds.join(",")),
        // The operator decides when a pod joins (Admin.Join).
        ("STRATA_AUTO_BOOTSTRAP".to_owned(), "false".to_owned()),
    ]);
    let mut data = data;
    for (name, bytes) in memory_settings(spec) {
        data.insert(name.to_owned(), bytes.to_string());
    }
    ConfigMap {
        metadata: meta(cluster, format!("{}-config", name(cluster))),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// The node's memory settings from the pods' memory limit `L`, so that a
/// node stays inside it (none without a limit: the node's defaults apply):
/// - client write bytes in flight: L/8 (a node's peak under a burst of
///   large writes was ~6x the bytes admitted, docs/failures.md), 16 MiB to
///   4 GiB;
/// - one memtable: L/32 (the engine holds up to three), 2 MiB to 64 MiB
///   (the node's default);
/// - the block cache: L/16, 4 MiB to 8 GiB.
fn memory_settings(spec: &crate::crd::KVClusterSpec) -> Vec<(&'static str, u64)> {
    let Some(limit) = spec
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .and_then(|l| l.get("memory"))
        .and_then(|q| crate::quantity::bytes(&q.0))
    else {
        return Vec::new();
    };
    vec![
        (
            "STRATA_MAX_WRITE_BYTES_IN_FLIGHT",
            (limit / 8).clamp(16 << 20, u64::from(u32::MAX)),
        ),
        (
            "STRATA_MEMTABLE_BYTES",
            (limit / 32).clamp(2 << 20, 64 << 20),
        ),
        (
            "STRATA_BLOCK_CACHE_BYTES",
            (limit / 16).clamp(4 << 20, 8 << 30),
        ),
    ]
}

/// The gossip cluster id: namespace and name, so two KVClusters never
/// merge even if their pods can reach each other.
#[must_use]
pub fn cluster_id(cluster: &KVCluster) -> String {
    format!(
        "{}.{}",
        cluster.metadata.namespace.as_deref().unwrap_or("default"),
        name(cluster)
    )
}

/// How many nodes a voluntary disruption may take at once: as many as
/// leave every key W and R replicas (N − max(W, R)), at least zero.
#[must_use]
pub fn max_unavailable(cluster: &KVCluster) -> i32 {
    let c = &cluster.spec.consistency;
    let spare = c
        .replication_factor
        .saturating_sub(c.write_quorum.max(c.read_quorum));
    i32::try_from(spare).unwrap_or(0)
}

/// The PodDisruptionBudget: no voluntary disruption may break QUORUM.
#[must_use]
pub fn disruption_budget(cluster: &KVCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(cluster, name(cluster)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(max_unavailable(cluster))),
            selector: Some(LabelSelector {
                match_labels: Some(labels(cluster)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// The StatefulSet with `replicas` pods (the planner's count, not
/// necessarily the spec's). Its pod template carries a hash of the
/// template and of `config` (the ConfigMap's data), so any change to what
/// a pod runs with is visible on each pod; the update strategy is
/// `OnDelete` because the operator, not the StatefulSet controller, rolls
/// pods (in ordinal order, each ready and normal on the ring first).
#[must_use]
pub fn statefulset(cluster: &KVCluster, replicas: u32, config: &ConfigMap) -> StatefulSet {
    let mut sts = statefulset_without_hash(cluster, replicas);
    let template = &mut sts.spec.as_mut().expect("built with a spec").template;
    let hash = config_hash(template, config);
    template
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONFIG_HASH_ANNOTATION.to_owned(), hash);
    sts
}

/// The config hash a StatefulSet's pods should carry.
#[must_use]
pub fn desired_config_hash(sts: &StatefulSet) -> Option<&str> {
    sts.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(CONFIG_HASH_ANNOTATION)
        .map(String::as_str)
}

fn config_hash(template: &PodTemplateSpec, config: &ConfigMap) -> String {
    let text = serde_json::to_string(&(template, &config.data)).unwrap_or_default();
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

fn statefulset_without_hash(cluster: &KVCluster, replicas: u32) -> StatefulSet {
    let spec = &cluster.spec;
    let retention = match spec.storage.retention {
        VolumeRetention::Retain => "Retain",
        VolumeRetention::Delete => "Delete",
    };
    let (secret_volumes, secret_mounts, secret_env) = security(cluster);
    let mut env = vec![
        field_env("STRATA_NODE_ID", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        EnvVar {
            name: "STRATA_ADVERTISE_HOST".to_owned(),
            value: Some(format!(
                "$(STRATA_NODE_ID).{}.$(POD_NAMESPACE).svc",
                peers_service_name(cluster)
            )),
            ..EnvVar::default()
        },
    ];
    env.extend(secret_env);
    // A kubelet's gRPC probe cannot speak TLS: with TLS, the node's
    // plaintext metrics port answers `/healthz` instead.
    let tls = spec.security.tls_secret.is_some();
    // Readiness asks the server as a whole (NOT_SERVING while the store
    // refuses writes); liveness its own check, which fails only when a
    // restart can cure the node (a full volume, not damage).
    let probe = |initial_delay: i32, liveness: bool| Probe {
        grpc: (!tls).then(|| GRPCAction {
            port: GRPC_PORT,
            service: liveness.then(|| strata_proto::health::LIVENESS.to_owned()),
        }),
        http_get: tls.then(|| HTTPGetAction {
            path: Some(
                if liveness {
                    strata_proto::health::LIVE_PATH
                } else {
                    strata_proto::health::READY_PATH
                }
                .to_owned(),
            ),
            port: IntOrString::Int(METRICS_PORT),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(5),
        ..Probe::default()
    };
    let container = Container {
        name: "strata".to_owned(),
        image: Some(spec.image.clone()),
        command: Some(vec!["/usr/local/bin/strata-node".to_owned()]),
        env: Some(env),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: format!("{}-config", name(cluster)),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        ports: Some(vec![
            ContainerPort {
                name: Some("grpc".to_owned()),
                container_port: GRPC_PORT,
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("internal".to_owned()),
                container_port: INTERNAL_PORT,
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("gossip".to_owned()),
                container_port: INTERNAL_PORT,
                protocol: Some("UDP".to_owned()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("metrics".to_owned()),
                container_port: METRICS_PORT,
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(probe(2, false)),
        liveness_probe: Some(Probe {
            failure_threshold: Some(6),
            ..probe(20, true)
        }),
        resources: spec.resources.clone(),
        volume_mounts: Some(
            std::iter::once(VolumeMount {
                name: "data".to_owned(),
                mount_path: DATA_DIR.to_owned(),
                ..VolumeMount::default()
            })
            .chain(secret_mounts)
            .collect(),
        ),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    let placement = &spec.placement;
    StatefulSet {
        metadata: meta(cluster, name(cluster)),
        spec: Some(StatefulSetSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            service_name: Some(peers_service_name(cluster)),
            // Pods start in parallel; joins are ordered by the operator.
            pod_management_policy: Some("Parallel".to_owned()),
            // The operator rolls pods itself (see above).
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                rolling_update: None,
            }),
            selector: LabelSelector {
                match_labels: Some(labels(cluster)),
                ..LabelSelector::default()
            },
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some(retention.to_owned()),
                    when_scaled: Some(retention.to_owned()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(cluster)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: (!secret_volumes.is_empty()).then_some(secret_volumes),
                    termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(RUN_AS_USER),
                        fs_group: Some(RUN_AS_USER),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    affinity: placement.affinity.clone(),
                    tolerations: (!placement.tolerations.is_empty())
                        .then(|| placement.tolerations.clone()),
                    topology_spread_constraints: (!placement
                        .topology_spread_constraints
                        .is_empty())
                    .then(|| placement.topology_spread_constraints.clone()),
                    node_selector: (!placement.node_selector.is_empty())
                        .then(|| placement.node_selector.clone()),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".to_owned()),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                    storage_class_name: spec.storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_owned(),
                            Quantity(spec.storage.size.clone()),
                        )])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// Where the security Secrets are mounted in a node's container.
pub const AUTH_DIR: &str = "/etc/strata/auth";
/// Where the gossip key Secret is mounted.
pub const GOSSIP_KEY_DIR: &str = "/etc/strata/gossip";
/// Where the TLS Secret is mounted.
pub const TLS_DIR: &str = "/etc/strata/tls";

/// The Secret volumes, their mounts and the variables pointing the node
/// at them, for `spec.security`.
fn security(cluster: &KVCluster) -> (Vec<Volume>, Vec<VolumeMount>, Vec<EnvVar>) {
    let security = &cluster.spec.security;
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for (secret, volume, dir, key, variable) in [
        (
            security.auth_secret.as_ref(),
            "auth-tokens",
            AUTH_DIR,
            "tokens",
            "STRATA_AUTH_TOKENS_FILE",
        ),
        (
            security.gossip_key_secret.as_ref(),
            "gossip-key",
            GOSSIP_KEY_DIR,
            "key",
            "STRATA_GOSSIP_KEY_FILE",
        ),
    ] {
        let Some(secret) = secret else { continue };
        out.0.push(secret_volume(volume, secret, &[key]));
        out.1.push(VolumeMount {
            name: volume.to_owned(),
            mount_path: dir.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        out.2.push(EnvVar {
            name: variable.to_owned(),
            value: Some(format!("{dir}/{key}")),
            ..EnvVar::default()
        });
    }
    if let Some(secret) = &security.tls_secret {
        let keys = ["tls.crt", "tls.key", "ca.crt"];
        out.0.push(secret_volume("tls", secret, &keys));
        out.1.push(VolumeMount {
            name: "tls".to_owned(),
            mount_path: TLS_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        for (variable, key) in [
            ("STRATA_TLS_CERT", "tls.crt"),
            ("STRATA_TLS_KEY", "tls.key"),
            ("STRATA_TLS_CA", "ca.crt"),
        ] {
            out.2.push(EnvVar {
                name: variable.to_owned(),
                value: Some(format!("{TLS_DIR}/{key}")),
                ..EnvVar::default()
            });
        }
        // Only this cluster's pods are nodes: their certificates carry
        // the headless Service's names.
        let namespace = cluster.metadata.namespace.as_deref().unwrap_or("default");
        out.2.push(EnvVar {
            name: "STRATA_TLS_PEER_NAME".to_owned(),
            value: Some(format!("*.{}.{namespace}.svc", peers_service_name(cluster))),
            ..EnvVar::default()
        });
    }
    out
}

/// A read-only volume of `keys` from Secret `secret`.
fn secret_volume(volume: &str, secret: &str, keys: &[&str]) -> Volume {
    Volume {
        name: volume.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items: Some(
                keys.iter()
                    .map(|k| KeyToPath {
                        key: (*k).to_owned(),
                        path: (*k).to_owned(),
                        mode: None,
                    })
                    .collect(),
            ),
            default_mode: Some(0o440),
            optional: Some(false),
        }),
        ..Volume::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KVClusterSpec;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn minimal() -> KVCluster {
        let spec: KVClusterSpec =
            serde_json::from_value(serde_json::json!({ "image": "strata:0.1" })).expect("spec");
        let mut cluster = KVCluster::new("kv", spec);
        cluster.metadata.namespace = Some("prod".to_owned());
        cluster.metadata.uid = Some("uid-1".to_owned());
        cluster
    }

    #[test]
    fn a_memory_limit_sizes_the_nodes_memory_settings() {
        let settings = |memory: Option<&str>| {
            let mut cluster = minimal();
            if let Some(memory) = memory {
                cluster.spec.resources = Some(ResourceRequirements {
                    limits: Some(BTreeMap::from([(
                        "memory".to_owned(),
                        Quantity(memory.to_owned()),
                    )])),
                    ..ResourceRequirements::default()
                });
            }
            let data = config_map(&cluster, 3).data.expect("data");
            [
                "STRATA_MAX_WRITE_BYTES_IN_FLIGHT",
                "STRATA_MEMTABLE_BYTES",
                "STRATA_BLOCK_CACHE_BYTES",
            ]
            .map(|name| data.get(name).map(|v| v.parse::<u64>().expect("a number")))
        };
        const MIB: u64 = 1 << 20;
        assert_eq!(settings(None), [None; 3], "no limit: the node's defaults");
        assert_eq!(
            settings(Some("2Gi")),
            [Some(256 * MIB), Some(64 * MIB), Some(128 * MIB)]
        );
        assert_eq!(
            settings(Some("512Mi")),
            [Some(64 * MIB), Some(16 * MIB), Some(32 * MIB)]
        );
        assert_eq!(
            settings(Some("64Mi")),
            [Some(16 * MIB), Some(2 * MIB), Some(4 * MIB)],
            "floors"
        );
        assert_eq!(
            settings(Some("1Ti")),
            [Some(u64::from(u32::MAX)), Some(64 * MIB), Some(8192 * MIB)],
            "ceilings"
        );
    }

    #[test]
    fn the_consistency_settings_reach_every_node() {
        let settings = |strict: bool| {
            let mut cluster = minimal();
            cluster.spec.consistency.strict_quorum = strict;
            cluster.spec.consistency.write_quorum = 3;
            let data = config_map(&cluster, 3).data.expect("data");
            ["STRATA_STRICT_QUORUM", "STRATA_WRITE_CONSISTENCY"]
                .map(|name| data.get(name).cloned().unwrap_or_default())
        };
        assert_eq!(settings(false), ["false", "3"]);
        assert_eq!(settings(true), ["true", "3"]);
    }

    #[test]
    fn the_statefulset_runs_restricted_non_root_pods_named_as_node_ids() {
        let cluster = minimal();
        let sts = statefulset(&cluster, 3, &config_map(&cluster, 3));
        let spec = sts.spec.expect("spec");
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("kv-peers"));
        let pod = spec.template.spec.expect("pod");
        let container = &pod.containers[0];
        let env = container.env.as_ref().expect("env");
        assert!(env.iter().any(|e| {
            e.name == "STRATA_NODE_ID"
                && e.value_from
                    .as_ref()
                    .and_then(|v| v.field_ref.as_ref())
                    .map(|f| f.field_path.as_str())
                    == Some("metadata.name")
        }));
        let security = container.security_context.as_ref().expect("security");
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(
            pod.security_context.as_ref().and_then(|s| s.run_as_user),
            Some(RUN_AS_USER)
        );
        assert_eq!(
            container
                .readiness_probe
                .as_ref()
                .and_then(|p| p.grpc.as_ref())
                .map(|g| (g.port, g.service.clone())),
            Some((GRPC_PORT, None))
        );
        // Liveness asks the check a damaged store does not fail.
        assert_eq!(
            container
                .liveness_probe
                .as_ref()
                .and_then(|p| p.grpc.as_ref())
                .map(|g| (g.port, g.service.clone())),
            Some((GRPC_PORT, Some("strata.liveness".to_owned())))
        );
        let claim = &spec.volume_claim_templates.expect("claims")[0];
        let size = claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone());
        assert_eq!(size.as_deref(), Some("10Gi"));
        assert_eq!(
            spec.persistent_volume_claim_retention_policy
                .and_then(|p| p.when_scaled),
            Some("Retain".to_owned())
        );
        let owner = &sts.metadata.owner_references.expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("KVCluster", "uid-1")
        );
    }

    #[test]
    fn any_change_to_what_a_pod_runs_changes_the_config_hash() {
        let cluster = minimal();
        let hash = |c: &KVCluster| {
            let sts = statefulset(c, 3, &config_map(c, 3));
            desired_config_hash(&sts).expect("hash").to_owned()
        };
        let base = hash(&cluster);
        assert_eq!(base, hash(&cluster), "deterministic");
        let mut w = cluster.clone();
        w.spec.consistency.write_quorum = 3;
        let mut image = cluster.clone();
        image.spec.image = "strata:0.2".to_owned();
        let mut scaled = cluster.clone();
        scaled.spec.replicas = 7;
        assert_ne!(base, hash(&w), "a setting");
        assert_ne!(base, hash(&image), "the image");
        assert_eq!(base, hash(&scaled), "replicas alone restart nothing");
        let sts = statefulset(&cluster, 4, &config_map(&cluster, 3));
        assert_eq!(desired_config_hash(&sts), Some(base.as_str()));
    }

    #[test]
    fn security_secrets_are_mounted_read_only_and_named_to_the_node() {
        let mut cluster = minimal();
        let plain = desired_config_hash(&statefulset(&cluster, 3, &config_map(&cluster, 3)))
            .expect("hash")
            .to_owned();
        cluster.spec.security.auth_secret = Some("kv-tokens".into());
        cluster.spec.security.gossip_key_secret = Some("kv-gossip".into());
        cluster.spec.security.tls_secret = Some("kv-tls".into());
        let sts = statefulset(&cluster, 3, &config_map(&cluster, 3));
        assert_ne!(
            desired_config_hash(&sts),
            Some(plain.as_str()),
            "rolls the pods"
        );
        let pod = sts.spec.expect("spec").template.spec.expect("pod");
        let container = &pod.containers[0];
        let env: Vec<(String, String)> = container
            .env
            .iter()
            .flatten()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect();
        assert!(env.contains(&(
            "STRATA_AUTH_TOKENS_FILE".into(),
            "/etc/strata/auth/tokens".into()
        )));
        assert!(env.contains(&(
            "STRATA_GOSSIP_KEY_FILE".into(),
            "/etc/strata/gossip/key".into()
        )));
        let mounts = container.volume_mounts.as_ref().expect("mounts");
        assert!(
            mounts
                .iter()
                .filter(|m| m.name != "data")
                .all(|m| m.read_only == Some(true))
        );
        let secrets: Vec<String> = pod
            .volumes
            .iter()
            .flatten()
            .filter_map(|v| v.secret.as_ref()?.secret_name.clone())
            .collect();
        assert_eq!(secrets, ["kv-tokens", "kv-gossip", "kv-tls"]);
        assert!(env.contains(&("STRATA_TLS_CA".into(), "/etc/strata/tls/ca.crt".into())));
        assert!(env.contains(&("STRATA_TLS_PEER_NAME".into(), "*.kv-peers.prod.svc".into())));
        // Probes cannot speak TLS: the plaintext metrics port answers.
        let readiness = container.readiness_probe.as_ref().expect("probe");
        assert!(readiness.grpc.is_none());
        assert_eq!(
            readiness
                .http_get
                .as_ref()
                .map(|h| (h.port.clone(), h.path.clone())),
            Some((IntOrString::Int(METRICS_PORT), Some("/healthz".to_owned())))
        );
        let liveness = container.liveness_probe.as_ref().expect("probe");
        assert!(liveness.grpc.is_none());
        assert_eq!(
            liveness.http_get.as_ref().and_then(|h| h.path.clone()),
            Some("/livez".to_owned())
        );
    }

    #[test]
    fn founders_form_the_initial_cluster_and_later_pods_join() {
        let config = config_map(&minimal(), 3);
        let data = config.data.expect("data");
        assert_eq!(data["STRATA_INITIAL_CLUSTER"], "kv-0,kv-1,kv-2");
        assert_eq!(
            data["STRATA_SEEDS"],
            "kv-0.kv-peers.prod.svc:7401,kv-1.kv-peers.prod.svc:7401,kv-2.kv-peers.prod.svc:7401"
        );
        assert_eq!(data["STRATA_AUTO_BOOTSTRAP"], "false");
        assert_eq!(data["STRATA_CLUSTER_ID"], "prod.kv");
        assert_eq!(data["STRATA_REPLICATION_FACTOR"], "3");
    }

    #[test]
    fn the_budget_never_lets_a_disruption_break_quorum() {
        let mut cluster = minimal();
        assert_eq!(max_unavailable(&cluster), 1, "N=3, W=R=2");
        cluster.spec.consistency.write_quorum = 3;
        assert_eq!(max_unavailable(&cluster), 0, "W=3 spares no node");
        cluster.spec.consistency.replication_factor = 5;
        cluster.spec.consistency.write_quorum = 3;
        cluster.spec.consistency.read_quorum = 3;
        assert_eq!(max_unavailable(&cluster), 2);
    }

    #[test]
    fn the_headless_service_publishes_not_ready_pods() {
        let service = peers_service(&minimal());
        let spec = service.spec.expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(
            client_service(&minimal()).metadata.name.as_deref(),
            Some("kv")
        );
    }
}
