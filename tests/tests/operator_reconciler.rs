//! The reconciler, one pass at a time, against the in-process API server
//! (no nodes): the exact objects a minimal manifest creates, what a spec
//! change updates, the status and conditions written, an invalid spec
//! refused without acting, and the finalizer's cleanup.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client, ResourceExt};
use strata_operator::KVCluster;
use strata_operator::crd::{ClusterPhase, KVClusterStatus};
use strata_operator::metrics::Metrics;
use strata_operator::nodes::Nodes;
use strata_operator::objects::CONFIG_HASH_ANNOTATION;
use strata_operator::reconcile::{Context, FINALIZER, reconcile};
use strata_tests::apiserver::ApiServer;

const NS: &str = "reconciler";

async fn pass(client: &Client, ctx: &Arc<Context>) -> KVCluster {
    let clusters: Api<KVCluster> = Api::namespaced(client.clone(), NS);
    let current = clusters.get("kv").await.expect("kv");
    reconcile(Arc::new(current), Arc::clone(ctx))
        .await
        .expect("reconcile");
    clusters.get("kv").await.expect("kv")
}

fn condition(status: &KVClusterStatus, type_: &str) -> (String, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:#?}"));
    (c.status.clone(), c.reason.clone())
}

#[tokio::test]
async fn the_reconciler_creates_updates_reports_and_cleans_up() {
    let api = ApiServer::start().await;
    let client = api.client(NS);
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "strata-operator".into(),
                instance: None,
            },
        ),
        metrics: Arc::new(Metrics::new()),
        nodes: Nodes::new(Duration::from_millis(200), None, None),
    });
    let clusters: Api<KVCluster> = Api::namespaced(client.clone(), NS);
    let manifest: KVCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "KVCluster",
        "metadata": { "name": "kv", "namespace": NS },
        "spec": { "image": "strata:0.1", "storage": { "retention": "Delete" } },
    }))
    .expect("manifest");
    clusters
        .create(&PostParams::default(), &manifest)
        .await
        .expect("create");

    // First pass: the finalizer, nothing else.
    let kv = pass(&client, &ctx).await;
    assert_eq!(kv.finalizers(), [FINALIZER.to_owned()]);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    assert!(statefulsets.get_opt("kv").await.expect("get").is_none());

    // Second pass: the cluster is created with three founders.
    let kv = pass(&client, &ctx).await;
    let status = kv.status.clone().expect("status");
    assert_eq!(status.founders, Some(3));
    assert_eq!(status.phase, Some(ClusterPhase::Pending));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        condition(&status, "Ready"),
        ("False".into(), "NodesNotReady".into())
    );
    assert_eq!(
        condition(&status, "Progressing"),
        ("True".into(), "Creating".into())
    );
    assert_eq!(
        condition(&status, "Degraded"),
        ("False".into(), "AsExpected".into())
    );
    let uid = kv.uid().expect("uid");
    let owned = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.owner_references
            .as_ref()
            .is_some_and(|o| o.len() == 1 && o[0].uid == uid && o[0].controller == Some(true))
    };
    let sts = statefulsets.get("kv").await.expect("statefulset");
    assert!(owned(&sts.metadata));
    let spec = sts.spec.clone().expect("spec");
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("kv-peers"));
    assert_eq!(
        spec.update_strategy.and_then(|u| u.type_).as_deref(),
        Some("OnDelete")
    );
    let hash = |sts: &StatefulSet| {
        sts.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(CONFIG_HASH_ANNOTATION))
            .cloned()
            .expect("config hash")
    };
    let first_hash = hash(&sts);
    assert_eq!(status.config_hash.as_deref(), Some(first_hash.as_str()));
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    let peers = services.get("kv-peers").await.expect("peers service");
    assert!(owned(&peers.metadata));
    assert_eq!(
        peers.spec.and_then(|s| s.publish_not_ready_addresses),
        Some(true)
    );
    assert!(owned(
        &services.get("kv").await.expect("client service").metadata
    ));
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let data = |c: ConfigMap| c.data.unwrap_or_default();
    let config = data(configs.get("kv-config").await.expect("config"));
    assert_eq!(config["STRATA_INITIAL_CLUSTER"], "kv-0,kv-1,kv-2");
    assert_eq!(config["STRATA_WRITE_CONSISTENCY"], "2");
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), NS);
    let budget = |b: PodDisruptionBudget| b.spec.and_then(|s| s.max_unavailable);
    assert_eq!(
        budget(budgets.get("kv").await.expect("pdb")),
        Some(IntOrString::Int(1))
    );

    // No pod answers: the operator waits and says so.
    let kv = pass(&client, &ctx).await;
    let status = kv.status.expect("status");
    assert_eq!(
        condition(&status, "Progressing"),
        ("True".into(), "WaitingForNodes".into())
    );
    assert_eq!(
        status.message.as_deref(),
        Some("waiting for pod 0 to be ready"),
        "says why it waits"
    );

    // W = 3: the settings, the budget and the pod template follow.
    clusters
        .patch(
            "kv",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "spec": { "consistency": { "writeQuorum": 3 } } })),
        )
        .await
        .expect("edit");
    let kv = pass(&client, &ctx).await;
    assert_eq!(
        kv.status.as_ref().and_then(|s| s.observed_generation),
        Some(2)
    );
    let config = data(configs.get("kv-config").await.expect("config"));
    assert_eq!(config["STRATA_WRITE_CONSISTENCY"], "3");
    assert_eq!(
        budget(budgets.get("kv").await.expect("pdb")),
        Some(IntOrString::Int(0)),
        "W = N spares no node"
    );
    assert_ne!(
        hash(&statefulsets.get("kv").await.expect("sts")),
        first_hash
    );

    // A spec that slipped past validation is reported, not acted on.
    clusters
        .patch(
            "kv",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "spec": { "replicas": 2 } })),
        )
        .await
        .expect("edit");
    let kv = pass(&client, &ctx).await;
    let status = kv.status.expect("status");
    assert_eq!(
        condition(&status, "Degraded"),
        ("True".into(), "InvalidSpec".into())
    );
    assert_eq!(status.phase, Some(ClusterPhase::Degraded));
    assert_eq!(
        statefulsets
            .get("kv")
            .await
            .expect("sts")
            .spec
            .and_then(|s| s.replicas),
        Some(3),
        "nothing scaled"
    );

    // Deletion: the finalizer deletes the volumes (retention Delete),
    // then lets go; owned objects go with the cluster.
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    for i in 0..3 {
        let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
            "metadata": { "name": format!("data-kv-{i}"), "labels": BTreeMap::<String, String>::new() },
        }))
        .expect("claim");
        claims
            .create(&PostParams::default(), &claim)
            .await
            .expect("claim");
    }
    clusters
        .delete("kv", &DeleteParams::default())
        .await
        .expect("delete");
    let deleting = clusters.get("kv").await.expect("held by the finalizer");
    assert!(deleting.metadata.deletion_timestamp.is_some());
    reconcile(Arc::new(deleting), Arc::clone(&ctx))
        .await
        .expect("cleanup");
    assert!(
        clusters.get_opt("kv").await.expect("get").is_none(),
        "released"
    );
    for i in 0..3 {
        assert!(
            claims
                .get_opt(&format!("data-kv-{i}"))
                .await
                .expect("get")
                .is_none()
        );
    }
    assert!(statefulsets.get_opt("kv").await.expect("get").is_none());
    assert!(configs.get_opt("kv-config").await.expect("get").is_none());
}
