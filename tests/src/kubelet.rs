//! A stand-in for the StatefulSet controller, the kubelet and cluster DNS
//! (test infrastructure): each pod of a StatefulSet becomes a real
//! `strata-node` process.
//!
//! - StatefulSet controller: pods `<sts>-0 .. <sts>-{replicas-1}` from the
//!   current template (a deleted pod is recreated: `OnDelete` updates),
//!   one claim `data-<pod>` per pod from the claim template, pods above
//!   `replicas` deleted (and their claims when `whenScaled: Delete`).
//! - kubelet: a process per pod, with the container's environment
//!   resolved (`env`, `fieldRef`, `envFrom` ConfigMaps, `$(VAR)`), its
//!   data directory the claim's directory, its own loopback IP
//!   (`127.a.b.c`, so every pod listens on the template's fixed ports as
//!   on Kubernetes), `Ready` once its gRPC port accepts connections, a
//!   crash restarted with `CrashLoopBackOff` shown meanwhile.
//! - DNS: seed addresses `<pod>.<service>.<ns>.svc:<port>` are rewritten to
//!   the pod's IP.
//!
//! A claim's directory is removed when the claim is deleted, and a claim
//! deleted and created again (same name, new uid) is a new, empty volume
//! when its pod next starts: a lost disk. Dropping the kubelet kills every
//! process.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::workspace_binary;

/// How often the stand-in looks at the world.
const TICK: Duration = Duration::from_millis(200);
/// Pause before a crashed container is started again.
const BACKOFF: Duration = Duration::from_secs(1);

/// One pod's process.
#[derive(Debug)]
struct Running {
    uid: String,
    child: tokio::process::Child,
    ip: Ipv4Addr,
    ready: bool,
    restarts: i32,
    crashed_at: Option<Instant>,
}

/// The stand-in; [`Kubelet::spawn`] runs it in a task.
#[expect(missing_debug_implementations, reason = "kube's Client is not Debug")]
pub struct Kubelet {
    client: Client,
    namespace: String,
    root: PathBuf,
    extra_env: Vec<(String, String)>,
    prefix: (u8, u8),
    ips: BTreeMap<String, Ipv4Addr>,
    pods: HashMap<String, Running>,
    /// The claim uid each volume directory was made for.
    volumes: HashMap<String, String>,
}

impl Kubelet {
    /// A stand-in for `namespace`, keeping volumes under `root`, adding
    /// `extra_env` to every container (test-speed node settings).
    #[must_use]
    pub fn new(client: Client, namespace: &str, root: &Path, extra_env: &[(&str, &str)]) -> Self {
        // A loopback /16 of its own, so parallel tests never share an IP.
        let seed = std::process::id()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
        let a = u8::try_from(seed % 250).unwrap_or(0) + 2;
        let b = u8::try_from((seed / 250) % 250).unwrap_or(0) + 2;
        Self {
            client,
            namespace: namespace.to_owned(),
            root: root.to_owned(),
            extra_env: extra_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            prefix: (a, b),
            ips: BTreeMap::new(),
            pods: HashMap::new(),
            volumes: HashMap::new(),
        }
    }

    /// Runs until the returned handle is aborted or the runtime ends
    /// (processes are killed when the task is dropped).
    #[must_use]
    pub fn spawn(mut self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(e) = self.tick().await {
                    eprintln!("kubelet stand-in: {e}");
                }
                tokio::time::sleep(TICK).await;
            }
        })
    }

    /// The IP of pod `name` (allocated on first use).
    fn ip(&mut self, name: &str) -> Ipv4Addr {
        let next = u8::try_from(self.ips.len() % 250).unwrap_or(0) + 2;
        let (a, b) = self.prefix;
        *self
            .ips
            .entry(name.to_owned())
            .or_insert(Ipv4Addr::new(127, a, b, next))
    }

    fn volume(&self, claim: &str) -> PathBuf {
        self.root.join(claim)
    }

    async fn tick(&mut self) -> Result<(), kube::Error> {
        let sets: Api<StatefulSet> = Api::namespaced(self.client.clone(), &self.namespace);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &self.namespace);
        for sts in sets.list(&ListParams::default()).await?.items {
            self.statefulset(&sts, &pods, &claims).await?;
        }
        // Volumes whose claim is gone are removed.
        let live: Vec<String> = claims
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        if let Ok(dirs) = std::fs::read_dir(&self.root) {
            for dir in dirs.flatten() {
                let name = dir.file_name().to_string_lossy().into_owned();
                if name.starts_with("data-") && dir.path().is_dir() && !live.contains(&name) {
                    let _ = std::fs::remove_dir_all(dir.path());
                }
            }
        }
        // Processes of pods that are gone (or replaced) are killed.
        let current: HashMap<String, Pod> = pods
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .map(|p| (p.name_any(), p))
            .collect();
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(name, run)| {
                current.get(*name).is_none_or(|p| {
                    p.uid().as_deref() != Some(run.uid.as_str())
                        || p.metadata.deletion_timestamp.is_some()
                })
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(mut run) = self.pods.remove(&name) {
                let _ = run.child.kill().await;
            }
        }
        for pod in current.values() {
            if pod.metadata.deletion_timestamp.is_none() {
                self.kubelet(pod, &pods).await?;
            }
        }
        Ok(())
    }

    async fn statefulset(
        &mut self,
        sts: &StatefulSet,
        pods: &Api<Pod>,
        claims: &Api<PersistentVolumeClaim>,
    ) -> Result<(), kube::Error> {
        let name = sts.name_any();
        let Some(spec) = &sts.spec else {
            return Ok(());
        };
        let replicas = u32::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
        let delete_on_scale = spec
            .persistent_volume_claim_retention_policy
            .as_ref()
            .and_then(|p| p.when_scaled.as_deref())
            == Some("Delete");
        let existing: Vec<String> = pods
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        for ordinal in 0..replicas {
            let pod_name = format!("{name}-{ordinal}");
            let claim_name = format!("data-{pod_name}");
            if claims.get_opt(&claim_name).await?.is_none() {
                let template = spec
                    .volume_claim_templates
                    .as_ref()
                    .and_then(|t| t.first())
                    .cloned()
                    .unwrap_or_default();
                let claim = PersistentVolumeClaim {
                    metadata: ObjectMeta {
                        name: Some(claim_name.clone()),
                        labels: spec.selector.match_labels.clone(),
                        ..ObjectMeta::default()
                    },
                    spec: template.spec,
                    ..PersistentVolumeClaim::default()
                };
                claims.create(&PostParams::default(), &claim).await?;
            }
            if !existing.contains(&pod_name) {
                let template = &spec.template;
                let mut meta = template.metadata.clone().unwrap_or_default();
                meta.name = Some(pod_name.clone());
                meta.owner_references = Some(vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "StatefulSet".into(),
                    name: name.clone(),
                    uid: sts.uid().unwrap_or_default(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]);
                let pod = Pod {
                    metadata: meta,
                    spec: template.spec.clone(),
                    status: None,
                };
                pods.create(&PostParams::default(), &pod).await?;
            }
        }
        for pod_name in &existing {
            let Some(ordinal) = pod_name
                .strip_prefix(&format!("{name}-"))
                .and_then(|o| o.parse::<u32>().ok())
            else {
                continue;
            };
            if ordinal >= replicas {
                let _ = pods.delete(pod_name, &DeleteParams::default()).await;
                if delete_on_scale {
                    let _ = claims
                        .delete(&format!("data-{pod_name}"), &DeleteParams::default())
                        .await;
                }
            }
        }
        Ok(())
    }

    async fn kubelet(&mut self, pod: &Pod, pods: &Api<Pod>) -> Result<(), kube::Error> {
        let name = pod.name_any();
        let uid = pod.uid().unwrap_or_default();
        if !self.pods.contains_key(&name) {
            let ip = self.ip(&name);
            let child = self.start(pod, ip).await?;
            self.pods.insert(
                name.clone(),
                Running {
                    uid,
                    child,
                    ip,
                    ready: false,
                    restarts: 0,
                    crashed_at: None,
                },
            );
        }
        let run = self.pods.get_mut(&name).expect("inserted");
        let mut waiting = None;
        if let Some(crashed) = run.crashed_at {
            if crashed.elapsed() >= BACKOFF {
                run.crashed_at = None;
                let ip = run.ip;
                let child = self.start(pod, ip).await?;
                let run = self.pods.get_mut(&name).expect("inserted");
                run.child = child;
            } else {
                waiting = Some("CrashLoopBackOff");
            }
        } else if run.child.try_wait().ok().flatten().is_some() {
            run.restarts += 1;
            run.crashed_at = Some(Instant::now());
            run.ready = false;
            waiting = Some("CrashLoopBackOff");
        }
        let run = self.pods.get_mut(&name).expect("inserted");
        if waiting.is_none() {
            let port = grpc_port(pod);
            run.ready = tokio::time::timeout(
                Duration::from_millis(300),
                tokio::net::TcpStream::connect((run.ip, port)),
            )
            .await
            .is_ok_and(|c| c.is_ok());
        }
        let state = match waiting {
            Some(reason) => json!({ "waiting": { "reason": reason } }),
            None => json!({ "running": {} }),
        };
        let status = json!({ "status": {
            "phase": "Running",
            "podIP": run.ip.to_string(),
            "conditions": [{ "type": "Ready", "status": if run.ready { "True" } else { "False" } }],
            "containerStatuses": [{
                "name": "strata", "image": "", "imageID": "", "ready": run.ready,
                "restartCount": run.restarts, "state": state,
            }],
        }});
        let current = serde_json::to_value(&pod.status).unwrap_or_default();
        if current != status["status"] {
            pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await?;
        }
        Ok(())
    }

    /// Starts the pod's container as a `strata-node` process.
    async fn start(
        &mut self,
        pod: &Pod,
        ip: Ipv4Addr,
    ) -> Result<tokio::process::Child, kube::Error> {
        let name = pod.name_any();
        let namespace = &self.namespace;
        let container = pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .cloned()
            .unwrap_or_default();
        let mut env: Vec<(String, String)> = Vec::new();
        let configs: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        for source in container.env_from.iter().flatten() {
            if let Some(reference) = &source.config_map_ref
                && let Some(config) = configs.get_opt(&reference.name).await?
            {
                env.extend(config.data.unwrap_or_default());
            }
        }
        for var in container.env.iter().flatten() {
            let value =
                if let Some(field) = var.value_from.as_ref().and_then(|v| v.field_ref.as_ref()) {
                    match field.field_path.as_str() {
                        "metadata.name" => name.clone(),
                        "metadata.namespace" => namespace.clone(),
                        "status.podIP" => ip.to_string(),
                        _ => String::new(),
                    }
                } else {
                    expand(var.value.as_deref().unwrap_or_default(), &env)
                };
            env.push((var.name.clone(), value));
        }
        // What the cluster network and DNS would provide.
        let mut resolved: Vec<(String, String)> = Vec::new();
        for (k, v) in env {
            let v = match k.as_str() {
                "STRATA_SEEDS" => v
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|seed| {
                        let (host, port) = seed.rsplit_once(':').unwrap_or((seed, "7400"));
                        let pod = host.split('.').next().unwrap_or(host).to_owned();
                        format!("{}:{port}", self.ip(&pod))
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                "STRATA_LISTEN" | "STRATA_INTERNAL_LISTEN" | "STRATA_METRICS_LISTEN" => {
                    let port = v.rsplit_once(':').map_or("0", |(_, p)| p).to_owned();
                    format!("{ip}:{port}")
                }
                "STRATA_ADVERTISE_HOST" => ip.to_string(),
                _ => v,
            };
            resolved.push((k, v));
        }
        let claim = format!("data-{name}");
        let data_dir = self.volume(&claim);
        let claims: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let claim_uid = claims
            .get_opt(&claim)
            .await?
            .and_then(|c| c.uid())
            .unwrap_or_default();
        if self
            .volumes
            .insert(claim.clone(), claim_uid.clone())
            .is_some_and(|before| before != claim_uid)
        {
            // Another claim under the same name: a new volume.
            let _ = std::fs::remove_dir_all(&data_dir);
        }
        std::fs::create_dir_all(&data_dir).expect("volume directory");
        resolved.push(("STRATA_DATA_DIR".into(), data_dir.display().to_string()));
        resolved.extend(self.extra_env.iter().cloned());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(format!("{name}.log")))
            .expect("pod log");
        let binary = container
            .command
            .as_ref()
            .and_then(|c| c.first())
            .and_then(|c| Path::new(c).file_name())
            .map_or_else(
                || "strata-node".to_owned(),
                |f| f.to_string_lossy().into_owned(),
            );
        let child = tokio::process::Command::new(workspace_binary(&binary))
            .env_clear()
            .env("RUST_LOG", "info")
            .envs(resolved)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start the pod's process");
        Ok(child)
    }

    /// The log of pod `name`'s processes.
    #[must_use]
    pub fn log(root: &Path, name: &str) -> String {
        std::fs::read_to_string(root.join(format!("{name}.log"))).unwrap_or_default()
    }
}

/// `$(VAR)` references to earlier variables, as Kubernetes expands them.
fn expand(value: &str, env: &[(String, String)]) -> String {
    let mut out = value.to_owned();
    for (k, v) in env.iter().rev() {
        out = out.replace(&format!("$({k})"), v);
    }
    out
}

fn grpc_port(pod: &Pod) -> u16 {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.ports.as_ref())
        .and_then(|p| p.iter().find(|p| p.name.as_deref() == Some("grpc")))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(7400)
}

#[cfg(test)]
mod tests {
    #[test]
    fn variables_expand_from_earlier_ones() {
        let env = vec![
            ("STRATA_NODE_ID".to_owned(), "kv-0".to_owned()),
            ("POD_NAMESPACE".to_owned(), "prod".to_owned()),
        ];
        assert_eq!(
            super::expand("$(STRATA_NODE_ID).kv-peers.$(POD_NAMESPACE).svc", &env),
            "kv-0.kv-peers.prod.svc"
        );
    }
}
