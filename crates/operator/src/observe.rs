//! From what the API server and a node report to the planner's
//! [`Observed`]: pure conversions, so the reconciler's IO stays at its edges
//! and every rule here is unit-tested.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use strata_proto::v1::{NodeState, Ring};

use crate::crd::{KVClusterStatus, TopologyChange};
use crate::objects::{CONFIG_HASH_ANNOTATION, desired_config_hash};
use crate::plan::{Change, Observed, PodObservation, RingState};

/// Container waiting reasons that mean the pod is failing, not starting.
const FAILING: [&str; 5] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "InvalidImageName",
];

/// The ordinal of `node_id` (`<cluster>-<ordinal>`), if it is one of this
/// cluster's pods.
#[must_use]
pub fn ordinal_of(cluster: &str, node_id: &str) -> Option<u32> {
    let rest = node_id.strip_prefix(cluster)?.strip_prefix('-')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// The state the planner sees for one ring member: a member that is
/// joining without tokens is waiting for `Admin.Join`.
#[must_use]
pub fn ring_state(state: NodeState, has_tokens: bool) -> Option<RingState> {
    Some(match state {
        NodeState::Joining if !has_tokens => RingState::Waiting,
        NodeState::Joining => RingState::Joining,
        NodeState::Normal => RingState::Normal,
        NodeState::Leaving => RingState::Leaving,
        NodeState::Left => RingState::Left,
        NodeState::Unspecified => return None,
    })
}

/// The planner's name for a state, as the status shows it.
#[must_use]
pub fn state_name(state: RingState) -> &'static str {
    match state {
        RingState::Waiting => "Waiting",
        RingState::Joining => "Joining",
        RingState::Normal => "Normal",
        RingState::Down => "Down",
        RingState::Leaving => "Leaving",
        RingState::Left => "Left",
    }
}

/// Whether `pod` is Ready (and not being deleted).
#[must_use]
pub fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Why `pod` is failing, if it is (crash loop, image pull, phase Failed).
#[must_use]
pub fn pod_failure(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        return Some(status.reason.clone().unwrap_or_else(|| "Failed".into()));
    }
    status.container_statuses.iter().flatten().find_map(|c| {
        let reason = c.state.as_ref()?.waiting.as_ref()?.reason.as_deref()?;
        FAILING.contains(&reason).then(|| reason.to_owned())
    })
}

/// The config hash `pod` runs with.
#[must_use]
pub fn pod_config_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(CONFIG_HASH_ANNOTATION)
        .map(String::as_str)
}

/// The change recorded in the status, in the planner's terms.
#[must_use]
pub fn recorded_change(cluster: &str, change: Option<&TopologyChange>) -> Option<Change> {
    let change = change?;
    let ordinal = ordinal_of(cluster, &change.node_id)?;
    match change.kind.as_str() {
        "Join" => Some(Change::Join { ordinal }),
        "Decommission" => Some(Change::Decommission { ordinal }),
        _ => None,
    }
}

/// Everything the planner needs, from the objects and the ring.
#[must_use]
pub fn observe(
    cluster: &str,
    sts: Option<&StatefulSet>,
    pods: &[Pod],
    claims: &[PersistentVolumeClaim],
    ring: Option<&Ring>,
    status: Option<&KVClusterStatus>,
) -> Observed {
    let desired_hash = sts.and_then(desired_config_hash);
    let pods = pods
        .iter()
        .filter_map(|pod| {
            let ordinal = ordinal_of(cluster, pod.metadata.name.as_deref()?)?;
            Some(PodObservation {
                ordinal,
                ready: pod_ready(pod),
                failed: pod_failure(pod).is_some(),
                current_config: desired_hash.is_none() || pod_config_hash(pod) == desired_hash,
            })
        })
        .collect();
    let claim_prefix = format!("data-{cluster}-");
    let volumes = claims
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter_map(|c| {
            let name = c.metadata.name.as_deref()?;
            let ordinal = name.strip_prefix(&claim_prefix)?;
            ordinal_of(cluster, &format!("{cluster}-{ordinal}"))
        })
        .collect();
    let load_bytes = ring.map_or(0, |r| {
        r.nodes
            .iter()
            .filter(|n| n.state != NodeState::Left as i32)
            .map(|n| n.load_bytes)
            .sum()
    });
    let ring = ring.map(|ring| {
        ring.nodes
            .iter()
            .filter_map(|node| {
                let ordinal = ordinal_of(cluster, &node.node_id)?;
                let state = match ring_state(
                    NodeState::try_from(node.state).unwrap_or(NodeState::Unspecified),
                    !node.tokens.is_empty(),
                )? {
                    RingState::Normal if !node.alive => RingState::Down,
                    state => state,
                };
                Some((ordinal, state))
            })
            .collect()
    });
    Observed {
        statefulset_replicas: sts
            .and_then(|s| s.spec.as_ref())
            .map(|s| u32::try_from(s.replicas.unwrap_or(1)).unwrap_or(0)),
        pods,
        ring,
        change: recorded_change(cluster, status.and_then(|s| s.topology_change.as_ref())),
        volumes,
        load_bytes,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use strata_proto::v1::RingNode;

    use super::*;

    fn pod(name: &str, ready: bool, waiting: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                container_statuses: waiting.map(|reason| {
                    vec![ContainerStatus {
                        name: "strata".into(),
                        state: Some(ContainerState {
                            waiting: Some(ContainerStateWaiting {
                                reason: Some(reason.into()),
                                message: None,
                            }),
                            ..ContainerState::default()
                        }),
                        ..ContainerStatus::default()
                    }]
                }),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn ordinals_belong_to_this_cluster_only() {
        assert_eq!(ordinal_of("kv", "kv-3"), Some(3));
        assert_eq!(ordinal_of("kv", "kv-"), None);
        assert_eq!(ordinal_of("kv", "kv-x"), None);
        assert_eq!(ordinal_of("kv", "kvx-1"), None);
        assert_eq!(ordinal_of("kv", "kv-other-1"), None);
        assert_eq!(ordinal_of("kv", "kv-99999999999"), None, "overflows u32");
    }

    #[test]
    fn pods_ring_and_volumes_become_the_planners_view() {
        let pods = [
            pod("kv-0", true, None),
            pod("kv-1", false, Some("CrashLoopBackOff")),
            pod("kv-2", false, Some("ContainerCreating")),
            pod("other-0", true, None),
        ];
        let claims = ["data-kv-0", "data-kv-2", "data-other-0"].map(|name| PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..PersistentVolumeClaim::default()
        });
        let node = |id: &str, state: NodeState, tokens: Vec<u64>| RingNode {
            node_id: id.into(),
            state: state as i32,
            tokens,
            alive: true,
            ..RingNode::default()
        };
        let ring = Ring {
            nodes: vec![
                node("kv-0", NodeState::Normal, vec![1]),
                node("kv-1", NodeState::Joining, vec![2]),
                node("kv-2", NodeState::Joining, vec![]),
                node("kv-3", NodeState::Left, vec![]),
                RingNode {
                    alive: false,
                    ..node("kv-4", NodeState::Normal, vec![5])
                },
            ],
            ..Ring::default()
        };
        let status = KVClusterStatus {
            topology_change: Some(TopologyChange {
                kind: "Join".into(),
                node_id: "kv-2".into(),
                started_at: String::new(),
                ranges_done: 0,
                ranges_total: 0,
                bytes_transferred: 0,
            }),
            ..KVClusterStatus::default()
        };
        let observed = observe("kv", None, &pods, &claims, Some(&ring), Some(&status));
        assert_eq!(observed.statefulset_replicas, None);
        let summary: Vec<_> = observed
            .pods
            .iter()
            .map(|p| (p.ordinal, p.ready, p.failed))
            .collect();
        assert_eq!(
            summary,
            [(0, true, false), (1, false, true), (2, false, false)]
        );
        assert_eq!(observed.volumes, [0, 2]);
        assert_eq!(
            observed.ring,
            Some(vec![
                (0, RingState::Normal),
                (1, RingState::Joining),
                (2, RingState::Waiting),
                (3, RingState::Left),
                (4, RingState::Down)
            ])
        );
        assert_eq!(observed.change, Some(Change::Join { ordinal: 2 }));
    }
}
