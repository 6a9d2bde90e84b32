//! `strata-operator`: reconciles KVClusters into running Strata clusters.
//!
//! Reads the API server address and credentials the usual way (in-cluster
//! service account, or `KUBECONFIG`), serves `/metrics`, `/healthz` and
//! `/readyz`, waits to lead (a Lease) and then runs the controller until
//! SIGTERM or until it loses the lease.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource};
use strata_operator::KVCluster;
use strata_operator::leader::Elector;
use strata_operator::metrics::{self, Metrics};
use strata_operator::nodes::Nodes;
use strata_operator::reconcile::{self, Context};

/// Command-line settings (each also an environment variable).
#[derive(Debug, Parser)]
#[command(name = "strata-operator", version, about)]
struct Args {
    /// Watch KVClusters in this namespace only (empty: every namespace).
    #[arg(long, env = "STRATA_OPERATOR_NAMESPACE", default_value = "")]
    namespace: String,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(
        long,
        env = "STRATA_OPERATOR_METRICS_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    metrics_listen: SocketAddr,
    /// Elect a leader through a Lease (turn off only for a single replica).
    #[arg(long, env = "STRATA_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the Lease.
    #[arg(
        long,
        env = "STRATA_OPERATOR_LEASE_NAME",
        default_value = "strata-operator"
    )]
    lease_name: String,
    /// Namespace of the Lease (on Kubernetes, the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Seconds a leader's lease lasts without renewal.
    #[arg(long, env = "STRATA_OPERATOR_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// This replica's identity in the Lease and in Events (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Deadline of one call to a storage node, in milliseconds.
    #[arg(long, env = "STRATA_OPERATOR_NODE_TIMEOUT_MS", default_value_t = 5000)]
    node_timeout_ms: u64,
    /// An `admin` token for the storage nodes' Admin API, for clusters with
    /// client authentication (mount it from a Secret).
    #[arg(long, env = "STRATA_OPERATOR_NODE_TOKEN", hide_env_values = true)]
    node_token: Option<String>,
    /// The CA (PEM file) of storage nodes that serve TLS.
    #[arg(long, env = "STRATA_OPERATOR_NODE_CA")]
    node_ca: Option<std::path::PathBuf>,
    /// Print the ClusterRole the operator needs (YAML) and exit.
    #[arg(long)]
    print_rbac: bool,
    /// Log format: `text` or `json`.
    #[arg(long, env = "STRATA_OPERATOR_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_rbac {
        print!(
            "{}",
            serde_yaml::to_string(&strata_operator::rbac::cluster_role("strata-operator"))?
        );
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format.as_str() {
        "json" => logs.json().init(),
        "text" => logs
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none(),
            )
            .init(),
        other => anyhow::bail!("--log-format {other}: expected text or json"),
    }
    let identity = args.identity.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "strata-operator".into()),
            std::process::id()
        )
    });

    let metrics = Arc::new(Metrics::new());
    let listener = metrics::bind(args.metrics_listen)
        .await
        .with_context(|| format!("binding {}", args.metrics_listen))?;
    let bound = listener.local_addr()?;
    tokio::spawn(metrics::serve(listener, metrics.clone()));
    println!("strata-operator {identity} serving metrics on {bound}");

    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API server (in-cluster or KUBECONFIG)")?;
    client
        .apiserver_version()
        .await
        .context("reaching the Kubernetes API server")?;
    metrics.set_ready();

    let elector = args.leader_election.then(|| {
        Elector::new(
            Api::<Lease>::namespaced(client.clone(), &args.lease_namespace),
            &args.lease_name,
            &identity,
            Duration::from_secs(args.lease_seconds.max(3)),
        )
    });
    if let Some(elector) = &elector {
        tracing::info!(lease = %args.lease_name, %identity, "waiting to lead");
        elector.acquire().await;
        tracing::info!(%identity, "leading");
    }
    metrics.set_leader(true);

    let node_tls = match &args.node_ca {
        Some(path) => Some(strata_client::TlsOptions {
            ca: std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
            identity: None,
        }),
        None => None,
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "strata-operator".into(),
                instance: Some(identity.clone()),
            },
        ),
        metrics: metrics.clone(),
        nodes: Nodes::new(
            Duration::from_millis(args.node_timeout_ms),
            args.node_token.clone().filter(|t| !t.is_empty()),
            node_tls,
        ),
    });
    let controller = run_controller(&client, &args.namespace, ctx);
    match elector {
        Some(elector) => {
            tokio::select! {
                () = controller => tracing::info!("controller stopped"),
                () = elector.keep() => {
                    metrics.set_leader(false);
                    // Another replica may act now: stop at once.
                    anyhow::bail!("lost the leader lease; exiting so another replica leads");
                }
            }
        }
        None => controller.await,
    }
    Ok(())
}

/// Runs the controller until SIGTERM / Ctrl-C.
async fn run_controller(client: &Client, namespace: &str, ctx: Arc<Context>) {
    fn scoped<K>(client: &Client, namespace: &str) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        if namespace.is_empty() {
            Api::all(client.clone())
        } else {
            Api::namespaced(client.clone(), namespace)
        }
    }
    let managed = watcher::Config::default().labels("app.kubernetes.io/managed-by=strata-operator");
    Controller::new(
        scoped::<KVCluster>(client, namespace),
        watcher::Config::default(),
    )
    .owns(scoped::<StatefulSet>(client, namespace), managed.clone())
    .owns(scoped::<Service>(client, namespace), managed.clone())
    .owns(scoped::<ConfigMap>(client, namespace), managed.clone())
    .owns(
        scoped::<PodDisruptionBudget>(client, namespace),
        managed.clone(),
    )
    // Pods are not owned by the KVCluster (the StatefulSet owns them):
    // map each to its cluster through the instance label.
    .watches(scoped::<Pod>(client, namespace), managed, |pod| {
        let name = pod
            .metadata
            .labels
            .as_ref()?
            .get("app.kubernetes.io/instance")?;
        Some(ObjectRef::<KVCluster>::new(name).within(pod.metadata.namespace.as_deref()?))
    })
    .shutdown_on_signal()
    .run(reconcile::reconcile, reconcile::error_policy, ctx)
    .for_each(|result| async move {
        if let Err(e) = result {
            tracing::debug!(error = %e, "reconcile error");
        }
    })
    .await;
}
