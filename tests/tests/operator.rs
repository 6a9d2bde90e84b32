//! The operator end to end, no Kubernetes cluster: the real
//! `strata-operator` process against the in-process API server, with the
//! StatefulSet/kubelet stand-in running each pod as a `strata-node`
//! process. A KVCluster is created, scaled 3 -> 5 -> 3 under QUORUM load
//! (the operator is SIGKILLed mid-scale and a second replica takes over
//! through the Lease), and its settings changed (a rolling restart).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use strata_operator::KVCluster;
use strata_operator::crd::KVClusterStatus;
use strata_operator::objects::{CONFIG_HASH_ANNOTATION, GRPC_PORT, INTERNAL_PORT};
use strata_proto::v1::{Consistency, ConsistencyLevel, GetRequest, PutRequest};
use strata_tests::apiserver::ApiServer;
use strata_tests::cluster::{
    damage_tables, final_values_at, hints_pending_at, kv, repair_all_at, stored_versions,
};
use strata_tests::kubelet::Kubelet;
use strata_tests::operator::OperatorProcess;
use strata_tests::scenario::{Clients, endpoints, keys, quorum, report, set};

const NS: &str = "strata-e2e";

/// Test-speed node settings the KVCluster does not expose (the harness's
/// other scenarios use the same).
const NODE_ENV: &[(&str, &str)] = &[
    ("STRATA_GOSSIP_INTERVAL_MS", "100"),
    ("STRATA_REQUEST_TIMEOUT_MS", "2000"),
    ("STRATA_MERKLE_DEPTH", "6"),
];

/// Aborts the stand-in's task (killing its processes) however the test
/// ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The world the test drives.
struct World {
    root: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
    clusters: Api<KVCluster>,
    pods: Api<Pod>,
    claims: Api<PersistentVolumeClaim>,
}

impl World {
    fn operator(&self, identity: &str) -> OperatorProcess {
        OperatorProcess::start(
            &self.kubeconfig,
            NS,
            &self.root.path().join("operator.log"),
            identity,
        )
    }

    fn logs(&self) -> String {
        let operator =
            std::fs::read_to_string(self.root.path().join("operator.log")).unwrap_or_default();
        let tail = |text: &str| {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(60)..].join("\n")
        };
        let mut out = format!("--- operator log (tail)\n{}\n", tail(&operator));
        for i in 0..5 {
            let log = Kubelet::log(self.root.path(), &format!("kv-{i}"));
            if !log.is_empty() {
                out += &format!("--- kv-{i} log (tail)\n{}\n", tail(&log));
            }
        }
        out
    }

    async fn status(&self) -> KVClusterStatus {
        self.clusters
            .get("kv")
            .await
            .ok()
            .and_then(|c| c.status)
            .unwrap_or_default()
    }

    /// Waits (bounded) until the status satisfies `done`.
    async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&KVClusterStatus) -> bool,
    ) -> KVClusterStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status().await;
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; status {status:#?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Deletes pod `name`'s claim, then the pod (a lost volume, or the
    /// rebuild of a damaged one); returns the deleted pod's uid.
    async fn lose_volume(&self, name: &str) -> Option<String> {
        let old_uid = self.pods.get(name).await.expect("pod").uid();
        self.claims
            .delete(&format!("data-{name}"), &DeleteParams::default())
            .await
            .expect("delete the claim");
        self.pods
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete the pod");
        old_uid
    }

    /// `kv-0 .. kv-{n-1}`'s gRPC addresses, once each pod has an IP.
    async fn addresses(&self, n: u32) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for i in 0..n {
            let pod = self.pods.get(&format!("kv-{i}")).await.expect("pod");
            let ip = pod
                .status
                .and_then(|s| s.pod_ip)
                .expect("a running pod has an IP");
            out.push(SocketAddr::new(
                ip.parse().expect("ip"),
                GRPC_PORT.try_into().expect("port"),
            ));
        }
        out
    }
}

/// `n` members, all normal, no change in flight, Ready.
fn settled(status: &KVClusterStatus, n: usize) -> bool {
    let normal = status
        .members
        .iter()
        .filter(|m| m.state == "Normal")
        .count();
    let others_left = status
        .members
        .iter()
        .all(|m| m.state == "Normal" || m.state == "Left");
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    normal == n && others_left && ready && status.topology_change.is_none()
}

/// The in-process API server, the kubelet stand-in running pods as node
/// processes, and the test's view of them.
async fn start_world() -> (ApiServer, AbortOnDrop, World) {
    let api = ApiServer::start().await;
    let client = api.client(NS);
    let root = tempfile::tempdir().expect("tempdir");
    let kubeconfig = root.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig, NS);
    let kubelet = AbortOnDrop(Kubelet::new(client.clone(), NS, root.path(), NODE_ENV).spawn());
    let world = World {
        kubeconfig,
        clusters: Api::namespaced(client.clone(), NS),
        pods: Api::namespaced(client.clone(), NS),
        claims: Api::namespaced(client, NS),
        root,
    };
    (api, kubelet, world)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kvcluster_scales_3_5_3_under_load_and_survives_an_operator_restart() {
    let started = Instant::now();
    let (api, _kubelet, world) = start_world().await;
    let client = api.client(NS);
    let mut operator = Some(world.operator("operator-a"));

    // A short manifest: three nodes, volumes deleted with their nodes, a
    // memory limit (the nodes then run with the write budget, memtable and
    // block cache sizes the operator derives from it).
    let manifest: KVCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "strata.dev/v1alpha1",
        "kind": "KVCluster",
        "metadata": { "name": "kv", "namespace": NS },
        "spec": { "image": "strata:test", "replicas": 3, "vnodes": 16,
                  "storage": { "size": "1Gi", "retention": "Delete" },
                  "resources": { "limits": { "memory": "512Mi" } } },
    }))
    .expect("manifest");
    world
        .clusters
        .create(&PostParams::default(), &manifest)
        .await
        .expect("create the KVCluster");
    let status = world
        .wait_for("3 founders normal", Duration::from_secs(90), |s| {
            settled(s, 3)
        })
        .await;
    assert_eq!(status.founders, Some(3));
    assert_eq!(status.ready_replicas, 3);
    let created = world.clusters.get("kv").await.expect("kv");
    assert!(
        created
            .finalizers()
            .iter()
            .any(|f| f == "strata.dev/cleanup"),
        "the operator guards deletion with its finalizer"
    );
    println!("formed in {:.1} s", started.elapsed().as_secs_f64());

    let lists: Vec<_> = (0..3).map(|_| endpoints(&[])).collect();
    let three = world.addresses(3).await;
    for list in &lists {
        set(list, &three);
    }
    let clients = Clients::start(&lists, quorum());
    clients.until_attempted(0, 60).await;

    // 3 -> 5. The operator is SIGKILLed once the second join is recorded;
    // a second replica takes the lease over and finishes the change.
    let scale = |n: u32| serde_json::json!({ "spec": { "replicas": n } });
    world
        .clusters
        .patch("kv", &PatchParams::default(), &Patch::Merge(&scale(5)))
        .await
        .expect("scale to 5");
    world
        .wait_for("the join of kv-4 recorded", Duration::from_secs(120), |s| {
            s.topology_change
                .as_ref()
                .is_some_and(|c| c.node_id == "kv-4")
        })
        .await;
    drop(operator.take());
    println!(
        "operator killed mid-scale at {:.1} s",
        started.elapsed().as_secs_f64()
    );
    operator = Some(world.operator("operator-b"));
    world
        .wait_for("5 nodes normal", Duration::from_secs(120), |s| {
            settled(s, 5)
        })
        .await;
    let five = world.addresses(5).await;
    for list in &lists {
        set(list, &five);
    }
    let before = clients.history.writes().len();
    clients.until_attempted(before, 30).await;
    println!("5 nodes at {:.1} s", started.elapsed().as_secs_f64());

    // kv-4's volume is lost (claim and pod deleted): it comes back empty,
    // waiting tokenless for a join the operator does not ask for outside
    // a change; the other nodes tell it that it owned ranges, and it
    // joins again by itself.
    let old_uid = world.lose_volume("kv-4").await;
    let kv4 = five[4];
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // The new pod's process: a Join it ran by itself, finished.
        let pod = world.pods.get_opt("kv-4").await.expect("get kv-4");
        let joined = if replaced_and_ready(pod.as_ref(), old_uid.as_deref()) {
            match strata_tests::cluster::admin(kv4)
                .await
                .get_progress(strata_proto::v1::GetProgressRequest::default())
                .await
            {
                Ok(progress) => progress.into_inner().operations.into_iter().find(|o| {
                    o.kind == strata_proto::v1::OperationKind::Join as i32
                        && o.state == strata_proto::v1::OperationState::Succeeded as i32
                }),
                Err(_) => None,
            }
        } else {
            None
        };
        if let Some(join) = joined {
            assert!(join.keys_transferred > 0, "{join:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kv-4 did not stream its ranges back; pod {:?}\n{}",
            pod.map(|p| p.uid()),
            world.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    world
        .wait_for("5 nodes normal again", Duration::from_secs(60), |s| {
            settled(s, 5)
        })
        .await;
    println!(
        "kv-4's lost volume refilled at {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 5 -> 3: clients move to the nodes that stay first.
    for list in &lists {
        set(list, &three);
    }
    world
        .clusters
        .patch("kv", &PatchParams::default(), &Patch::Merge(&scale(3)))
        .await
        .expect("scale to 3");
    let status = world
        .wait_for("back to 3 nodes", Duration::from_secs(120), |s| {
            settled(s, 3) && s.members.iter().filter(|m| m.state == "Left").count() == 2
        })
        .await;
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let sts = statefulsets.get("kv").await.expect("sts");
    assert_eq!(sts.spec.and_then(|s| s.replicas), Some(3));
    println!("3 nodes at {:.1} s", started.elapsed().as_secs_f64());

    let history = clients.stop().await;
    let nodes: Vec<(usize, SocketAddr)> = three.iter().copied().enumerate().collect();
    // What each replica stores is read through its internal port.
    let internal: Vec<(usize, SocketAddr)> = three
        .iter()
        .map(|a| SocketAddr::new(a.ip(), INTERNAL_PORT.try_into().expect("port")))
        .enumerate()
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while hints_pending_at(&nodes).await > 0 {
        assert!(Instant::now() < deadline, "hints were not replayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    repair_all_at(&nodes).await;
    let verdict = history.check(&final_values_at(&internal, keys(), 3).await);
    report(
        "operator 3 -> 5 -> 3 with a restart",
        &verdict,
        Duration::ZERO,
    );
    assert_eq!(verdict.stale_reads, [], "stale QUORUM reads");

    // Volumes of the removed nodes went with them (retention Delete).
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let names: BTreeSet<String> = claims
        .list(&ListParams::default())
        .await
        .expect("claims")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["data-kv-0".into(), "data-kv-1".into(), "data-kv-2".into()])
    );

    // The Events tell the story.
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .iter()
        .filter_map(|e| e.reason.clone())
        .collect();
    for expected in [
        "Creating",
        "ScaleUpStarted",
        "JoinRequested",
        "NodeJoined",
        "ScaleDownStarted",
        "DecommissionRequested",
        "NodeDecommissioned",
    ] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "no {expected} event in {reasons:?}"
        );
    }
    let conditions: Vec<(String, String)> = status
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone()))
        .collect();
    assert!(
        conditions.contains(&("Progressing".into(), "False".into())),
        "{conditions:?}"
    );
    assert!(
        conditions.contains(&("Degraded".into(), "False".into())),
        "{conditions:?}"
    );

    // A settings change rolls the pods one at a time, each on the new
    // settings afterwards.
    let old_hash = status.config_hash.clone().expect("hash");
    world
        .clusters
        .patch(
            "kv",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({ "spec": { "hintWindowSeconds": 1200 } })),
        )
        .await
        .expect("change a setting");
    let status = world
        .wait_for(
            "rolled to the new settings",
            Duration::from_secs(120),
            |s| {
                settled(s, 3)
                    && s.config_hash.as_deref().is_some_and(|h| h != old_hash)
                    && s.members
                        .iter()
                        .filter(|m| m.state == "Normal")
                        .all(|m| m.config_hash == s.config_hash)
            },
        )
        .await;
    let new_hash = status.config_hash.expect("hash");
    for i in 0..3 {
        let pod = world.pods.get(&format!("kv-{i}")).await.expect("pod");
        assert_eq!(
            pod.annotations().get(CONFIG_HASH_ANNOTATION),
            Some(&new_hash),
            "kv-{i} runs the new settings"
        );
    }

    // Every request the operator made is allowed by its RBAC rules.
    let rules = strata_operator::rbac::rules();
    for (verb, group, resource, sub) in api.audit() {
        let resource = if sub.is_empty() {
            resource
        } else {
            format!("{resource}/{sub}")
        };
        assert!(
            strata_operator::rbac::allows(&rules, &verb, &group, &resource),
            "the operator's RBAC does not allow {verb} {group}/{resource}"
        );
    }
    drop(operator);
    println!("scenario took {:.1} s", started.elapsed().as_secs_f64());
}

/// `pod` exists, is not the pod `old_uid` was, and is Ready.
fn replaced_and_ready(pod: Option<&Pod>, old_uid: Option<&str>) -> bool {
    pod.is_some_and(|p| {
        p.uid().as_deref() != old_uid
            && p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
}

/// Waits (bounded) until pod `name` is a new pod (not `old_uid`) and Ready.
async fn wait_for_new_pod(world: &World, name: &str, old_uid: Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pod = world.pods.get_opt(name).await.expect("get pod");
        if replaced_and_ready(pod.as_ref(), old_uid.as_deref()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} was not replaced within 60 s\n{}",
            world.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A damaged table on one pod's volume: the KVCluster says which node and
/// what to do (`Degraded`, `StorageFailed`, the member's `storageFailure`,
/// a Warning Event), and doing it (deleting the claim, then the pod)
/// brings the node back with every key, and the status back to normal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_damaged_volume_is_reported_and_a_new_volume_heals_the_node() {
    let (api, _kubelet, world) = start_world().await;
    let client = api.client(NS);
    let operator = world.operator("operator-a");
    let manifest: KVCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "strata.dev/v1alpha1",
        "kind": "KVCluster",
        "metadata": { "name": "kv", "namespace": NS },
        "spec": { "image": "strata:test", "replicas": 3, "vnodes": 16,
                  "storage": { "size": "1Gi", "retention": "Delete" } },
    }))
    .expect("manifest");
    world
        .clusters
        .create(&PostParams::default(), &manifest)
        .await
        .expect("create the KVCluster");
    world
        .wait_for("3 founders normal", Duration::from_secs(90), |s| {
            settled(s, 3)
        })
        .await;
    let nodes = world.addresses(3).await;
    let keys: Vec<String> = (0..300).map(|i| format!("damaged-{i:04}")).collect();
    let all = Some(Consistency::named(ConsistencyLevel::All));
    for key in &keys {
        kv(nodes[0])
            .await
            .put(PutRequest {
                key: key.clone().into_bytes().into(),
                value: key.clone().into_bytes().into(),
                context: Vec::new().into(),
                consistency: all,
                request_id: 0,
            })
            .await
            .expect("put at ALL");
    }

    // kv-2 restarts (its log becomes a table), then a block of each of
    // its tables is damaged on disk, and reads through it meet the damage.
    let old_uid = world.pods.get("kv-2").await.expect("kv-2").uid();
    world
        .pods
        .delete("kv-2", &DeleteParams::default())
        .await
        .expect("delete pod kv-2");
    wait_for_new_pod(&world, "kv-2", old_uid).await;
    world
        .wait_for("kv-2 back", Duration::from_secs(60), |s| settled(s, 3))
        .await;
    let volume = world.root.path().join("data-kv-2");
    assert!(damage_tables(&volume) > 0, "kv-2 has tables");
    let one = Some(Consistency::named(ConsistencyLevel::One));
    for key in &keys {
        // Some fail (the damaged block); that is the point.
        let _ = kv(nodes[2])
            .await
            .get(GetRequest {
                key: key.clone().into_bytes().into(),
                consistency: one,
            })
            .await;
    }
    let status = world
        .wait_for(
            "kv-2's storage failure reported",
            Duration::from_secs(60),
            |s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Degraded" && c.reason == "StorageFailed")
            },
        )
        .await;
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .expect("Degraded");
    assert_eq!(degraded.status, "True");
    assert!(
        degraded.message.contains("kv-2") && degraded.message.contains("corrupt"),
        "{}",
        degraded.message
    );
    let member = status
        .members
        .iter()
        .find(|m| m.node_id == "kv-2")
        .expect("kv-2");
    assert!(
        member
            .storage_failure
            .as_deref()
            .is_some_and(|f| f.contains("delete its data directory")),
        "{member:?}"
    );
    assert!(
        status
            .members
            .iter()
            .all(|m| m.node_id == "kv-2" || m.storage_failure.is_none()),
        "{status:?}"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), NS);
    let warned = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .iter()
        .any(|e| {
            e.reason.as_deref() == Some("StorageFailed")
                && e.note.as_deref().is_some_and(|n| n.contains("kv-2"))
        });
    assert!(warned, "a StorageFailed Event names kv-2");

    // The rebuild docs/operator.md gives: delete the claim, then the pod.
    let old_uid = world.lose_volume("kv-2").await;
    wait_for_new_pod(&world, "kv-2", old_uid).await;
    world
        .wait_for("healed", Duration::from_secs(120), |s| {
            settled(s, 3)
                && s.members.iter().all(|m| m.storage_failure.is_none())
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == "Degraded" && c.status == "False")
        })
        .await;
    // Every key is back on kv-2 (read through its internal port: what it
    // stores itself).
    let internal = SocketAddr::new(nodes[2].ip(), INTERNAL_PORT.try_into().expect("port"));
    let deadline = Instant::now() + Duration::from_secs(60);
    for key in &keys {
        while stored_versions(internal, key).await.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{key} not back on kv-2\n{}",
                world.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    drop(operator);
}
