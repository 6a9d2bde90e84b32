//! The reconciler: observe, plan, record, act. One pass per call, level
//! triggered: whatever happened before (an operator restart, a lost watch
//! event), the next pass sees the world as it is and takes the one next
//! step the planner picks. The status is written *before* the step, so the
//! change in flight is never forgotten.
//!
//! Every write is a server-side apply with one field manager, or a delete;
//! owned objects carry an owner reference to the KVCluster (the API
//! server's garbage collector removes them with it) and the finalizer
//! handles volumes per the retention policy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{self, finalizer};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use strata_proto::v1::NodeState;
use tracing::Instrument as _;

use crate::crd::{KVCluster, KVClusterStatus, VolumeRetention};
use crate::metrics::{ClusterLabels, Metrics};
use crate::nodes::Nodes;
use crate::objects::{self, GRPC_PORT};
use crate::observe::{self, ordinal_of};
use crate::plan::{self, Action, Desired};
use crate::status::{self, Inputs, STORAGE_FAILED, change_kind, change_ordinal};

/// The finalizer the operator puts on every KVCluster.
pub const FINALIZER: &str = "strata.dev/cleanup";
/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "strata-operator";

/// Why a reconcile failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The KVCluster is not namespaced (the CRD says it must be).
    #[error("the KVCluster has no namespace")]
    NoNamespace,
    /// Adding or removing the finalizer failed, or the pass failed.
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    /// A status could not be serialized.
    #[error("serializing the status: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// What every reconcile shares.
#[expect(
    missing_debug_implementations,
    reason = "kube's Client and Recorder are not Debug"
)]
pub struct Context {
    /// The API server.
    pub client: Client,
    /// Publishes Events on KVClusters.
    pub recorder: Recorder,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// The nodes' Admin API.
    pub nodes: Nodes,
}

/// How soon to look again while something is moving, and when steady.
const BUSY: Duration = Duration::from_secs(2);
const STEADY: Duration = Duration::from_secs(30);

/// One pass over `cluster`.
///
/// # Errors
/// [`Error`]; the controller retries (see [`error_policy`]).
pub async fn reconcile(cluster: Arc<KVCluster>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let namespace = cluster.namespace().ok_or(Error::NoNamespace)?;
    let name = cluster.name_any();
    let span = tracing::info_span!("reconcile", kvcluster = %name, namespace = %namespace);
    let started = Instant::now();
    let api: Api<KVCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = finalizer(&api, FINALIZER, cluster, |event| async {
        match event {
            finalizer::Event::Apply(cluster) => apply(&cluster, &ctx).await,
            finalizer::Event::Cleanup(cluster) => cleanup(&cluster, &ctx).await,
        }
    })
    .instrument(span.clone())
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.reconciled(result.is_ok(), started.elapsed());
    if let Err(e) = &result {
        span.in_scope(|| tracing::warn!(error = %e, "reconcile failed; retrying"));
    }
    result
}

/// Retry a failed pass after a short pause.
#[must_use]
pub fn error_policy(_cluster: Arc<KVCluster>, _error: &Error, _ctx: Arc<Context>) -> Requeue {
    Requeue::requeue(Duration::from_secs(5))
}

/// The objects of one KVCluster's namespace.
struct Apis {
    clusters: Api<KVCluster>,
    statefulsets: Api<StatefulSet>,
    pods: Api<Pod>,
    claims: Api<PersistentVolumeClaim>,
}

impl Apis {
    fn new(client: &Client, namespace: &str) -> Self {
        Self {
            clusters: Api::namespaced(client.clone(), namespace),
            statefulsets: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client.clone(), namespace),
            claims: Api::namespaced(client.clone(), namespace),
        }
    }
}

async fn apply(cluster: &KVCluster, ctx: &Context) -> Result<Requeue, Error> {
    let namespace = cluster.namespace().ok_or(Error::NoNamespace)?;
    let name = cluster.name_any();
    let apis = Apis::new(&ctx.client, &namespace);
    let previous = cluster.status.clone().unwrap_or_default();
    let problems: Vec<String> = crate::validate_spec(&cluster.spec)
        .iter()
        .map(ToString::to_string)
        .collect();

    let sts = apis.statefulsets.get_opt(&name).await?;
    let selector = selector(cluster);
    let pods = apis
        .pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let claim_prefix = format!("data-{name}-");
    let claims: Vec<PersistentVolumeClaim> = apis
        .claims
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|c| c.name_any().starts_with(&claim_prefix))
        .collect();
    let addresses = ready_addresses(cluster, &pods);
    let ring = ctx.nodes.ring(&addresses).await;
    let observed = observe::observe(
        &name,
        sts.as_ref(),
        &pods,
        &claims,
        ring.as_ref(),
        Some(&previous),
    );

    // A spec the API server should have refused is reported, not acted on.
    let founders = match previous.founders {
        Some(founders) => founders,
        // The status was lost (restored from a backup without it): the
        // ConfigMap still names the initial members.
        None if sts.is_some() => founders_in_config(&ctx.client, &namespace, &name)
            .await?
            .or(observed.statefulset_replicas)
            .unwrap_or(cluster.spec.replicas),
        None => cluster.spec.replicas,
    };
    let action = if problems.is_empty() {
        plan::plan(
            &Desired {
                replicas: cluster.spec.replicas,
                replication_factor: cluster.spec.consistency.replication_factor,
                delete_volumes: cluster.spec.storage.retention == VolumeRetention::Delete,
                volume_bytes: crate::quantity::bytes(&cluster.spec.storage.size),
            },
            &observed,
        )
    } else {
        Action::Wait("the spec is invalid".into())
    };

    // The owned objects, kept as the spec says (the StatefulSet's replicas
    // only move through the planner's actions).
    let config = objects::config_map(cluster, founders);
    if problems.is_empty() {
        let ns = namespace.as_str();
        apply_object(&ctx.client, ns, &objects::peers_service(cluster)).await?;
        apply_object(&ctx.client, ns, &objects::client_service(cluster)).await?;
        apply_object(&ctx.client, ns, &config).await?;
        apply_object(&ctx.client, ns, &objects::disruption_budget(cluster)).await?;
    }
    let desired_sts = |replicas: u32| {
        let mut built = objects::statefulset(cluster, replicas, &config);
        // Claim templates are immutable: keep the existing ones (volumes
        // grow by resizing each claim, below).
        if let (Some(existing), Some(spec)) = (
            sts.as_ref().and_then(|s| s.spec.as_ref()),
            built.spec.as_mut(),
        ) {
            spec.volume_claim_templates
                .clone_from(&existing.volume_claim_templates);
        }
        built
    };
    let template = desired_sts(observed.statefulset_replicas.unwrap_or(founders));
    let desired_hash = objects::desired_config_hash(&template).map(str::to_owned);

    // Progress of the change in flight, from the node that runs it.
    let mut members = Vec::new();
    if let Some(ring) = &ring {
        for node in &ring.nodes {
            if ordinal_of(&name, &node.node_id).is_none() {
                continue;
            }
            let state = NodeState::try_from(node.state).unwrap_or(NodeState::Unspecified);
            if let Some(state) = observe::ring_state(state, !node.tokens.is_empty()) {
                members.push((node.node_id.clone(), state, node.load_bytes, node.alive));
            }
        }
    }
    // Stores that refuse writes, asked only of a cluster whose ring answered.
    let storage = match &ring {
        Some(_) => ctx.nodes.storage(&addresses).await,
        None => Vec::new(),
    };
    let pod_hashes = pods
        .iter()
        .filter_map(|p| {
            let ordinal = ordinal_of(&name, &p.name_any())?;
            Some((ordinal, observe::pod_config_hash(p).map(str::to_owned)))
        })
        .collect();
    let mut next = status::status(&Inputs {
        previous: &previous,
        generation: cluster.metadata.generation,
        action: &action,
        observed: &observed,
        name: &name,
        members,
        pod_hashes,
        config_hash: desired_hash,
        storage,
        spec_problems: problems.clone(),
        now: Timestamp::now(),
    });
    if let Some(change) = next.topology_change.as_mut()
        && let Some(ordinal) = ordinal_of(&name, &change.node_id)
        && let Some(address) = pod_address(cluster, &pods, ordinal)
        && let Some(op) = ctx.nodes.change_progress(&address).await
    {
        change.ranges_done = op.ranges_done;
        change.ranges_total = op.ranges_total;
        change.bytes_transferred = op.bytes_transferred;
    }
    ctx.metrics.change(
        &ClusterLabels {
            namespace: namespace.clone(),
            name: name.clone(),
        },
        next.topology_change
            .as_ref()
            .map(|c| (c.ranges_done, c.ranges_total)),
    );
    if next != previous {
        write_status(&apis.clusters, &name, &next).await?;
    }
    // An Event when a node's store starts refusing writes (once: the
    // member keeps the failure while it lasts).
    for member in &next.members {
        let Some(why) = &member.storage_failure else {
            continue;
        };
        let known = previous
            .members
            .iter()
            .any(|m| m.node_id == member.node_id && m.storage_failure.is_some());
        if !known {
            let note = format!("node {}'s store refuses writes: {why}", member.node_id);
            publish(ctx, cluster, EventType::Warning, STORAGE_FAILED, &note).await;
        }
    }
    tracing::info!(action = ?action, "planned");

    // The pod template is kept current on every pass: with `OnDelete`
    // updates nothing restarts until the planner deletes a pod (which it
    // only does for a pod older than the stored template), and a fix (a
    // new image for a crash-looping pod) must land even mid-change.
    if problems.is_empty()
        && !matches!(action, Action::Create { .. } | Action::Scale { .. })
        && let Some(current) = observed.statefulset_replicas
    {
        apply_object(&ctx.client, &namespace, &desired_sts(current)).await?;
    }

    // The step.
    let busy = match &action {
        Action::Create { replicas } => {
            apply_object(&ctx.client, &namespace, &desired_sts(*replicas)).await?;
            publish(
                ctx,
                cluster,
                EventType::Normal,
                "Creating",
                &status::message(&action, &[]),
            )
            .await;
            true
        }
        Action::Scale { replicas } => {
            apply_object(&ctx.client, &namespace, &desired_sts(*replicas)).await?;
            publish(
                ctx,
                cluster,
                EventType::Normal,
                "Scaling",
                &status::message(&action, &[]),
            )
            .await;
            true
        }
        Action::Record(change) => {
            let reason = if matches!(change, plan::Change::Join { .. }) {
                "ScaleUpStarted"
            } else {
                "ScaleDownStarted"
            };
            publish(
                ctx,
                cluster,
                EventType::Normal,
                reason,
                &status::message(&action, &[]),
            )
            .await;
            true
        }
        Action::Join { ordinal } => {
            let address = pod_address(cluster, &pods, *ordinal);
            match address {
                Some(address) => match ctx.nodes.join(&address).await {
                    Ok(_) => {
                        publish(
                            ctx,
                            cluster,
                            EventType::Normal,
                            "JoinRequested",
                            &format!("node {name}-{ordinal} asked to join"),
                        )
                        .await;
                    }
                    Err(e) => {
                        publish(
                            ctx,
                            cluster,
                            EventType::Warning,
                            "JoinFailed",
                            &e.to_string(),
                        )
                        .await;
                    }
                },
                None => tracing::info!(ordinal, "no address for the joining pod yet"),
            }
            true
        }
        Action::Decommission { ordinal } => {
            let node = format!("{name}-{ordinal}");
            let through = pod_address(cluster, &pods, *ordinal)
                .into_iter()
                .chain(addresses.iter().cloned());
            let mut refused = None;
            let mut asked = false;
            for address in through {
                match ctx.nodes.decommission(&address, &node).await {
                    Ok(_) => {
                        asked = true;
                        break;
                    }
                    Err(e) => refused = Some(e.to_string()),
                }
            }
            if asked {
                publish(
                    ctx,
                    cluster,
                    EventType::Normal,
                    "DecommissionRequested",
                    &format!("node {node} asked to decommission"),
                )
                .await;
            } else if let Some(why) = refused {
                publish(
                    ctx,
                    cluster,
                    EventType::Warning,
                    "DecommissionRefused",
                    &why,
                )
                .await;
            }
            true
        }
        Action::DeleteVolume { ordinal } => {
            let claim = format!("data-{name}-{ordinal}");
            delete_ignoring_absent(&apis.claims, &claim).await?;
            publish(
                ctx,
                cluster,
                EventType::Normal,
                "VolumeDeleted",
                &format!("deleted {claim}"),
            )
            .await;
            true
        }
        Action::Restart { ordinal } => {
            let pod = format!("{name}-{ordinal}");
            delete_ignoring_absent(&apis.pods, &pod).await?;
            publish(
                ctx,
                cluster,
                EventType::Normal,
                "RollingRestart",
                &format!("restarted {pod} for new settings"),
            )
            .await;
            true
        }
        Action::Complete(change) => {
            let reason = if matches!(change, plan::Change::Join { .. }) {
                "NodeJoined"
            } else {
                "NodeDecommissioned"
            };
            let text = format!(
                "node {name}-{} {} complete",
                change_ordinal(*change),
                change_kind(*change).to_lowercase()
            );
            publish(ctx, cluster, EventType::Normal, reason, &text).await;
            true
        }
        Action::Refuse(why) => {
            publish(ctx, cluster, EventType::Warning, "ScaleDownRefused", why).await;
            false
        }
        Action::Degraded(why) => {
            publish(ctx, cluster, EventType::Warning, "ChangePaused", why).await;
            true
        }
        Action::Wait(_) => true,
        Action::Steady => {
            grow_volumes(&apis.claims, cluster, &claims).await?;
            false
        }
    };
    if !problems.is_empty() {
        publish(
            ctx,
            cluster,
            EventType::Warning,
            "InvalidSpec",
            &problems.join("; "),
        )
        .await;
    }
    Ok(Requeue::requeue(if busy { BUSY } else { STEADY }))
}

/// The KVCluster is being deleted: owned objects go with it (owner
/// references); volumes go only when the retention policy says Delete.
async fn cleanup(cluster: &KVCluster, ctx: &Context) -> Result<Requeue, Error> {
    let namespace = cluster.namespace().ok_or(Error::NoNamespace)?;
    let name = cluster.name_any();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let prefix = format!("data-{name}-");
    let mine: Vec<String> = claims
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .filter(|n| n.starts_with(&prefix))
        .collect();
    match cluster.spec.storage.retention {
        VolumeRetention::Delete => {
            for claim in &mine {
                delete_ignoring_absent(&claims, claim).await?;
            }
            publish(
                ctx,
                cluster,
                EventType::Normal,
                "VolumesDeleted",
                &format!("deleted {} volumes (retention Delete)", mine.len()),
            )
            .await;
        }
        VolumeRetention::Retain => {
            publish(
                ctx,
                cluster,
                EventType::Normal,
                "VolumesRetained",
                &format!(
                    "kept {} volumes (retention Retain): {}",
                    mine.len(),
                    mine.join(", ")
                ),
            )
            .await;
        }
    }
    tracing::info!(volumes = mine.len(), "cleaned up");
    Ok(Requeue::await_change())
}

/// How many initial members the existing ConfigMap names.
async fn founders_in_config(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<u32>, Error> {
    let configs: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), namespace);
    Ok(configs
        .get_opt(&format!("{name}-config"))
        .await?
        .and_then(|c| c.data)
        .and_then(|d| d.get("STRATA_INITIAL_CLUSTER").cloned())
        .and_then(|list| u32::try_from(list.split(',').filter(|s| !s.is_empty()).count()).ok())
        .filter(|&n| n > 0))
}

/// Resizes claims smaller than `spec.storage.size` (the CRD lets it only
/// grow; the storage class must allow expansion).
async fn grow_volumes(
    api: &Api<PersistentVolumeClaim>,
    cluster: &KVCluster,
    claims: &[PersistentVolumeClaim],
) -> Result<(), Error> {
    let size = &cluster.spec.storage.size;
    for claim in claims {
        let requested = claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.as_str());
        if requested.is_some_and(|r| r != size) {
            let patch = serde_json::json!({
                "spec": { "resources": { "requests": { "storage": size } } }
            });
            api.patch(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        }
    }
    Ok(())
}

/// `app.kubernetes.io/instance=<name>,...`: the pods of this cluster.
fn selector(cluster: &KVCluster) -> String {
    objects::labels(cluster)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Where to dial pod `ordinal`: its IP, or with TLS its DNS name (what
/// its certificate names), once it has an IP.
fn pod_address(cluster: &KVCluster, pods: &[Pod], ordinal: u32) -> Option<String> {
    let name = cluster.name_any();
    let ip = pods
        .iter()
        .find(|p| ordinal_of(&name, &p.name_any()) == Some(ordinal))
        .and_then(|p| p.status.as_ref()?.pod_ip.clone())?;
    Some(if cluster.spec.security.tls_secret.is_some() {
        format!("{}:{GRPC_PORT}", objects::pod_host(cluster, ordinal))
    } else {
        format!("{ip}:{GRPC_PORT}")
    })
}

/// Addresses of the ready pods, lowest ordinal first (the founders know
/// the ring best).
fn ready_addresses(cluster: &KVCluster, pods: &[Pod]) -> Vec<String> {
    let name = cluster.name_any();
    let mut ready: Vec<u32> = pods
        .iter()
        .filter(|p| observe::pod_ready(p))
        .filter_map(|p| ordinal_of(&name, &p.name_any()))
        .collect();
    ready.sort_unstable();
    ready
        .into_iter()
        .filter_map(|o| pod_address(cluster, pods, o))
        .collect()
}

/// Server-side apply of `object` with the operator's field manager.
async fn apply_object<K>(client: &Client, namespace: &str, object: &K) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
    Ok(())
}

/// Writes the whole status (absent optional fields are cleared).
async fn write_status(
    api: &Api<KVCluster>,
    name: &str,
    status: &KVClusterStatus,
) -> Result<(), Error> {
    let patch = serde_json::json!({ "status": status_with_nulls(status)? });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// The status as a merge patch: optional fields that are `None` become
/// `null`, so a merge removes them (a cleared topology change).
fn status_with_nulls(status: &KVClusterStatus) -> Result<Value, serde_json::Error> {
    let mut value = serde_json::to_value(status)?;
    if let Value::Object(map) = &mut value {
        for field in [
            "phase",
            "observedGeneration",
            "topologyChange",
            "founders",
            "configHash",
            "message",
        ] {
            map.entry(field).or_insert(Value::Null);
        }
        for list in ["members", "conditions"] {
            map.entry(list).or_insert(Value::Array(Vec::new()));
        }
    }
    Ok(value)
}

async fn delete_ignoring_absent<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Publishes an Event on the KVCluster; a failure is logged, never fatal.
async fn publish(ctx: &Context, cluster: &KVCluster, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    match type_ {
        EventType::Warning => tracing::warn!(reason, note, "event"),
        EventType::Normal => tracing::info!(reason, note, "event"),
    }
    if let Err(e) = ctx.recorder.publish(&event, &cluster.object_ref(&())).await {
        tracing::warn!(error = %e, "could not publish an event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cleared_change_is_sent_as_null_so_the_merge_removes_it() {
        let value = status_with_nulls(&KVClusterStatus::default()).expect("serializes");
        assert_eq!(value["topologyChange"], Value::Null);
        assert!(
            value
                .as_object()
                .expect("object")
                .contains_key("topologyChange")
        );
        assert_eq!(value["members"], Value::Array(Vec::new()));
    }
}
