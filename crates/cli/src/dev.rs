//! `strata dev`: a local cluster on loopback, every node a task in this
//! process (each with its own data directory, gRPC port, UDP gossip port
//! and metrics port), until Ctrl-C.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::output::outln_lossy;
use anyhow::Context as _;
use strata_cluster::ConsistencyLevel;
use strata_node::NodeConfig;
use strata_node::run::RunningNode;

/// The dev cluster's id: a node started by hand joins it only with this.
const CLUSTER_ID: &str = "strata-dev";

/// Gossip rounds of the dev cluster, in milliseconds.
const GOSSIP_INTERVAL_MS: u64 = 200;

/// Arguments of `strata dev`.
#[derive(Debug, clap::Args)]
pub(crate) struct DevArgs {
    /// Nodes to run.
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Where the nodes keep their data (one subdirectory each); kept after
    /// exit, and reused by the next run. Default: a temporary directory,
    /// removed on exit.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// gRPC port of the first node (UDP gossip uses the same number); node
    /// i uses base + i, and its metrics base + 2000 + i.
    #[arg(long, default_value_t = 7400)]
    base_port: u16,
    /// N. Default: 3, or the node count if smaller.
    #[arg(long)]
    replication_factor: Option<u32>,
    /// Default write consistency W.
    #[arg(long, default_value = "quorum")]
    write_consistency: String,
    /// Default read consistency R.
    #[arg(long, default_value = "quorum")]
    read_consistency: String,
    /// Resolve concurrent writes by timestamp instead of keeping siblings.
    #[arg(long)]
    last_write_wins: bool,
    /// Count only a key's own replicas toward W (no sloppy quorum).
    #[arg(long)]
    strict_quorum: bool,
}

/// Runs the cluster until Ctrl-C.
pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.nodes >= 1, "--nodes must be at least 1");
    let last_port = u32::from(args.base_port) + 2000 + u32::from(args.nodes);
    anyhow::ensure!(
        u16::try_from(last_port).is_ok(),
        "--base-port {} leaves no room for {} nodes",
        args.base_port,
        args.nodes
    );
    let (root, _temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("strata-dev-")
                .tempdir()
                .context("creating a temporary data directory")?;
            (dir.path().to_path_buf(), Some(dir))
        }
    };
    let factor = args
        .replication_factor
        .unwrap_or_else(|| u32::from(args.nodes).min(3));
    let write: ConsistencyLevel = args.write_consistency.parse()?;
    let read: ConsistencyLevel = args.read_consistency.parse()?;
    let seed = format!("127.0.0.1:{}", args.base_port);
    let defaults = NodeConfig::defaults().context("reading strata-node's settings")?;

    let mut nodes: Vec<RunningNode> = Vec::new();
    for i in 0..args.nodes {
        // strata-node's defaults; what makes a loopback cluster set here.
        let config = NodeConfig {
            node_id: Some(format!("node-{i}")),
            listen: ([127, 0, 0, 1], args.base_port + i).into(),
            data_dir: root.join(format!("node-{i}")),
            replication_factor: factor,
            write_consistency: write,
            read_consistency: read,
            metrics_listen: ([127, 0, 0, 1], args.base_port + 2000 + i).into(),
            seeds: if i == 0 {
                Vec::new()
            } else {
                vec![seed.clone()]
            },
            gossip_listen: None,
            internal_listen: None,
            auth_tokens_file: None,
            gossip_key_file: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            tls_client_ca: None,
            tls_peer_name: None,
            advertise_host: None,
            cluster_id: CLUSTER_ID.to_owned(),
            gossip_interval_ms: GOSSIP_INTERVAL_MS,
            last_write_wins: args.last_write_wins,
            strict_quorum: args.strict_quorum,
            // Every dev node founds the cluster: none streams at start.
            initial_cluster: (0..args.nodes).map(|j| format!("node-{j}")).collect(),
            ..defaults.clone()
        };
        match strata_node::run::start(config).await {
            Ok(node) => nodes.push(node),
            Err(e) => {
                stop_all(nodes).await;
                return Err(anyhow::Error::new(e).context(format!(
                    "starting node-{i} (is another cluster using port {}? try --base-port)",
                    args.base_port + i
                )));
            }
        }
    }

    // Wait until every node sees every other alive, so the first request
    // already meets its quorum.
    let started = Instant::now();
    let total = nodes.len();
    while started.elapsed() < Duration::from_secs(20) {
        let converged = nodes.iter().all(|n| {
            n.context()
                .view()
                .nodes()
                .filter(|(_, info)| info.alive)
                .count()
                == total
        });
        if converged {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    outln_lossy!(
        "strata dev: {total} nodes, N={factor} W={} R={}{}{}, data in {}",
        args.write_consistency,
        args.read_consistency,
        if args.last_write_wins {
            ", last write wins"
        } else {
            ""
        },
        if args.strict_quorum {
            ", strict quorums"
        } else {
            ""
        },
        root.display()
    );
    for n in &nodes {
        outln_lossy!(
            "  {:<8} grpc {:<16} gossip {}/udp  metrics http://{}/metrics",
            n.id,
            n.grpc_address,
            n.gossip_address,
            n.metrics_address
        );
    }
    outln_lossy!(
        "try: strata -e {} put hello world && strata -e {} get hello",
        nodes[0].grpc_address,
        nodes[0].grpc_address
    );
    outln_lossy!(
        "add a node: {}",
        grow_command(&args, factor, &nodes[0].gossip_address.to_string())
    );
    outln_lossy!("Ctrl-C stops the cluster.");

    strata_node::signal::shutdown().await;
    outln_lossy!("stopping {total} nodes");
    stop_all(nodes).await;
    if args.data_dir.is_none() {
        outln_lossy!("removed {}", root.display());
    }
    Ok(())
}

/// The `strata-node` command line that adds the next node to this cluster:
/// every setting a member must share with the others (cluster id,
/// replication factor, write policy, consistency defaults), the next ports,
/// and a data directory outside the cluster's, which Ctrl-C removes.
fn grow_command(args: &DevArgs, factor: u32, seed: &str) -> String {
    let i = u32::from(args.nodes);
    let port = |offset: u32| u32::from(args.base_port) + offset + i;
    let data_dir = std::env::temp_dir().join(format!("strata-dev-node-{i}"));
    let mut command = format!(
        "strata-node --node-id node-{i} --listen 127.0.0.1:{} --metrics-listen 127.0.0.1:{} \
         --data-dir {} --seeds {seed} --cluster-id {CLUSTER_ID} --gossip-interval-ms \
         {GOSSIP_INTERVAL_MS} --replication-factor {factor} --write-consistency {} \
         --read-consistency {}",
        port(0),
        port(2000),
        data_dir.display(),
        args.write_consistency,
        args.read_consistency,
    );
    if args.last_write_wins {
        command.push_str(" --last-write-wins");
    }
    if args.strict_quorum {
        command.push_str(" --strict-quorum");
    }
    command
}

/// Stops every node at once (each gives its peers a moment's notice).
async fn stop_all(nodes: Vec<RunningNode>) {
    let stops: Vec<_> = nodes
        .into_iter()
        .map(|node| {
            let id = node.id.clone();
            (id, tokio::spawn(node.stop()))
        })
        .collect();
    for (id, stop) in stops {
        match stop.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("{id} stopped with an error: {e}"),
            Err(e) => eprintln!("{id} stopped with an error: {e}"),
        }
    }
}
