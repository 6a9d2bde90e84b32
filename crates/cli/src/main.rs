//! `strata`: the Strata command-line tool.

mod bench;
mod dev;
mod node_order;
mod output;

// jemalloc, as in `strata-node`: `strata dev` runs whole nodes in this
// process, and glibc malloc serializes their cross-thread frees.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use output::{out, outln};
use strata_client::{Client, parse_consistency, v1, v1::Consistency};

/// Talk to a Strata cluster.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Node to contact (host:port, or host for port 7400); several, separated by commas, are tried
    /// in order and the first that answers is used.
    #[arg(
        long,
        short,
        env = "STRATA_ENDPOINT",
        default_value = "127.0.0.1:7400",
        global = true,
        help_heading = "Connection"
    )]
    endpoint: String,
    /// Send every request through the endpoint node rather than to a
    /// replica of the key: for `kubectl port-forward` and other networks
    /// where only the endpoint is reachable.
    #[arg(
        long,
        env = "STRATA_DIRECT",
        // From the environment: 1/true/yes/on (not 0/false/no/off/empty).
        value_parser = clap::builder::FalseyValueParser::new(),
        global = true,
        help_heading = "Connection"
    )]
    direct: bool,
    /// Send each Get, Put, Delete and Ping as a unary gRPC call instead of
    /// on one stream per node (`KV.Session`); for comparing the two, or a
    /// proxy that does not pass long-lived streams.
    #[arg(
        long,
        env = "STRATA_NO_SESSIONS",
        // From the environment: 1/true/yes/on (not 0/false/no/off/empty).
        value_parser = clap::builder::FalseyValueParser::new(),
        global = true,
        help_heading = "Connection"
    )]
    no_sessions: bool,
    /// Bearer token for a cluster with client authentication (prefer the
    /// environment variable: a flag shows in the process list).
    #[arg(
        long,
        env = "STRATA_TOKEN",
        global = true,
        help_heading = "Connection",
        hide_env_values = true
    )]
    token: Option<String>,
    /// CA certificate (PEM) of nodes that serve TLS: connect with TLS.
    #[arg(long, env = "STRATA_CA", global = true, help_heading = "Connection")]
    ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM), for nodes that require one.
    #[arg(long, env = "STRATA_CERT", global = true, help_heading = "Connection", requires_all = ["cert_key", "ca"])]
    cert: Option<std::path::PathBuf>,
    /// The client certificate's key (PEM).
    // Its own id: `get`, `put` and `delete` have a positional `key`, and a
    // global option of the same id made clap panic parsing them.
    #[arg(
        long = "key",
        id = "cert_key",
        value_name = "KEY",
        env = "STRATA_KEY",
        global = true,
        help_heading = "Connection",
        requires = "cert"
    )]
    cert_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Round trip to a node, without touching storage.
    Ping,
    /// Read a key: every sibling value and the context.
    Get {
        /// The key (UTF-8 text).
        key: String,
        /// Write the value's bytes to stdout and nothing else (no newline,
        /// no context): for binary values and scripts. Fails when the key
        /// is missing, deleted or has several siblings.
        #[arg(long)]
        raw: bool,
        /// one, two, quorum, all or a replica count. Default: the cluster's R.
        #[arg(long, short)]
        consistency: Option<String>,
    },
    /// Write a key.
    Put {
        /// The key (UTF-8 text).
        key: String,
        /// The value (UTF-8 text); or give `--file`.
        #[arg(required_unless_present = "file")]
        value: Option<String>,
        /// Read the value's bytes from this file instead (`-`: stdin).
        #[arg(long, conflicts_with = "value")]
        file: Option<std::path::PathBuf>,
        /// Context from a previous get, in hex, to supersede its siblings.
        #[arg(long)]
        context: Option<String>,
        /// one, two, quorum, all or a replica count. Default: the cluster's W.
        #[arg(long, short)]
        consistency: Option<String>,
    },
    /// Delete a key: every value a get would show (it reads the key's
    /// context first, unless given one).
    Delete {
        key: String,
        /// Context from a previous get, in hex: delete only what that get
        /// saw. Default: the context of a get made now (a delete without
        /// any context would be concurrent with every value, and remove none).
        #[arg(long)]
        context: Option<String>,
        /// one, two, quorum, all or a replica count. Default: the cluster's W.
        #[arg(long, short)]
        consistency: Option<String>,
    },
    /// Show the ring: nodes, states, tokens, load.
    Ring,
    /// Show every node's status.
    Status,
    /// Merkle-tree anti-entropy of every range the endpoint node
    /// replicates, against the other replicas; waits and shows progress.
    Repair {
        /// Start it and return without waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Make the endpoint node join the ring (one started with
    /// `--auto-bootstrap false`); waits and shows progress.
    Join {
        /// Start it and return without waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Stream a node's ranges to their next owners and take it out of the
    /// ring; waits and shows progress.
    Decommission {
        /// The node to decommission (default: the endpoint node).
        #[arg(long)]
        node: Option<String>,
        /// Start it and return without waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Remove a node that is gone for good: its ranges are copied from the
    /// surviving replicas to their new owners (run through any live node).
    Removenode {
        /// The node to remove; it must be down.
        #[arg(required_unless_present = "node_flag", conflicts_with = "node_flag")]
        node: Option<String>,
        /// The same, as a flag (as `decommission` and `progress` take it).
        #[arg(long = "node", id = "node_flag", value_name = "NODE")]
        node_flag: Option<String>,
        /// Start it and return without waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Delete the ranges the endpoint node no longer replicates (nodes also
    /// do this by themselves once a change has settled).
    Cleanup {
        /// Start it and return without waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Topology changes and repairs of a node, running or finished; follows
    /// a running one (a progress bar in a terminal, lines otherwise).
    Progress {
        /// The node to ask (default: the endpoint node).
        #[arg(long)]
        node: Option<String>,
        /// Print the operations once instead of following a running one.
        #[arg(long)]
        once: bool,
    },
    /// YCSB-style benchmark: load records, then run a workload.
    Bench(bench::BenchArgs),
    /// Run a local cluster on 127.0.0.1 until Ctrl-C.
    Dev(dev::DevArgs),
    /// Make a client token: prints the token (give it to the client) and
    /// the line for the nodes' `--auth-tokens-file` (only its hash).
    TokenNew {
        /// read, write or admin.
        #[arg(long, default_value = "read")]
        role: String,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `dev` runs nodes: all cores. Client commands run on one thread, and
    // `bench` on `--client-threads` (default one), leaving the other cores
    // to the nodes they measure.
    let runtime = match &cli.command {
        Command::Dev(_) => strata_node::runtime::build(),
        Command::Bench(args) if args.client_threads > 1 => {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(usize::try_from(args.client_threads).unwrap_or(1))
                .enable_all()
                .build()
        }
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line for the user; no backtrace even if RUST_BACKTRACE is set.
            let e: &(dyn std::error::Error + 'static) = e.as_ref();
            eprintln!("error: {}", strata_node::error_line::error_line(e));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::TokenNew { role } = &cli.command {
        anyhow::ensure!(
            matches!(role.as_str(), "read" | "write" | "admin"),
            "--role {role}: expected read, write or admin"
        );
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| anyhow::anyhow!("no system randomness"))?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        outln!("token: {token}");
        outln!(
            "tokens file line: {role} {}",
            strata_node::auth::hash_token(&token)
        );
        return Ok(());
    }
    if let Command::Dev(args) = cli.command {
        // Node logs: warnings and errors only, unless RUST_LOG says more.
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_writer(std::io::stderr)
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none(),
            )
            .init();
        return dev::run(args).await;
    }
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
    };
    let tls = match &cli.ca {
        Some(ca) => Some(strata_client::TlsOptions {
            ca: read(ca)?,
            identity: match (&cli.cert, &cli.cert_key) {
                (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                _ => None,
            },
        }),
        None => None,
    };
    let options = strata_client::ClientOptions {
        direct: cli.direct,
        token: cli.token.clone().filter(|t| !t.is_empty()),
        tls,
        sessions: !cli.no_sessions,
        ..strata_client::ClientOptions::default()
    };
    let client = Client::connect_with(&cli.endpoint, options).await?;
    match cli.command {
        Command::Ping => {
            let started = std::time::Instant::now();
            let pong = client.ping(Vec::new()).await?;
            outln!("pong from {} in {:?}", pong.node_id, started.elapsed());
        }
        Command::Get {
            key,
            raw,
            consistency,
        } => {
            let response = client
                .get(key.into_bytes(), level(consistency.as_deref())?)
                .await?;
            if raw {
                let value = raw_value(&response.siblings)?;
                output::write_bytes(value);
                return Ok(());
            }
            if response.siblings.is_empty() {
                outln!("(not found)");
            }
            for (i, sibling) in response.siblings.iter().enumerate() {
                let marker = if sibling.tombstone { " (deleted)" } else { "" };
                outln!("sibling {i}: {}{marker}", printable(&sibling.value));
            }
            outln!("context: {}", hex(&response.context));
        }
        Command::Put {
            key,
            value,
            file,
            context,
            consistency,
        } => {
            let context = unhex(context.as_deref())?;
            let value = match (value, file) {
                (Some(value), _) => value.into_bytes(),
                (None, Some(path)) => read_value(&path)?,
                (None, None) => anyhow::bail!("give a value or --file"),
            };
            let response = client
                .put(
                    key.into_bytes(),
                    value,
                    context,
                    level(consistency.as_deref())?,
                )
                .await?;
            outln!(
                "ok ({} replicas), context: {}",
                response.replicas_acked,
                hex(&response.context)
            );
        }
        Command::Delete {
            key,
            context,
            consistency,
        } => {
            let level = level(consistency.as_deref())?;
            let context = match context {
                Some(hex) => unhex(Some(&hex))?,
                None => client
                    .get(key.clone().into_bytes(), level)
                    .await?
                    .context
                    .to_vec(),
            };
            let response = client.delete(key.into_bytes(), context, level).await?;
            outln!("deleted ({} replicas)", response.replicas_acked);
        }
        Command::Ring => print_ring(&client.ring().await?),
        Command::Status => print_status(&client.cluster_status().await?),
        Command::Repair { no_wait } => repair(&client, no_wait).await?,
        Command::Join { no_wait } => {
            let op = client.join().await?;
            started(&op);
            if !no_wait {
                follow(&client, &op.node_id, &op.id).await?;
            }
        }
        Command::Decommission { node, no_wait } => {
            let op = client.decommission(node.as_deref()).await?;
            started(&op);
            if !no_wait {
                follow(&client, &op.node_id, &op.id).await?;
            }
        }
        Command::Removenode {
            node,
            node_flag,
            no_wait,
        } => {
            let node = node
                .or(node_flag)
                .context("removenode needs the node to remove")?;
            let op = client.remove_node(&node).await?;
            started(&op);
            if !no_wait {
                let runner = client.ping(Vec::new()).await?.node_id;
                follow(&client, &runner, &op.id).await?;
            }
        }
        Command::Cleanup { no_wait } => {
            let op = client.cleanup().await?;
            started(&op);
            if !no_wait {
                follow(&client, &op.node_id, &op.id).await?;
            }
        }
        Command::Progress { node, once } => {
            let node = match node {
                Some(node) => node,
                None => client.ping(Vec::new()).await?.node_id,
            };
            let operations = client.progress_of(&node, "").await?;
            if operations.is_empty() {
                outln!("no operations on {node}");
            }
            for op in &operations {
                outln!("{}", describe(op));
            }
            let running = operations.iter().find(|o| {
                o.state == v1::OperationState::Running as i32
                    || o.state == v1::OperationState::Pending as i32
            });
            if let (Some(op), false) = (running, once) {
                follow(&client, &node, &op.id).await?;
            }
        }
        Command::Bench(args) => {
            let report = bench::run(&client, &args).await?;
            out!("{}", report.render(args.json));
        }
        Command::Dev(_) | Command::TokenNew { .. } => unreachable!("handled above"),
    }
    Ok(())
}

fn state_name(state: i32) -> &'static str {
    match v1::NodeState::try_from(state) {
        Ok(v1::NodeState::Joining) => "joining",
        Ok(v1::NodeState::Normal) => "normal",
        Ok(v1::NodeState::Leaving) => "leaving",
        Ok(v1::NodeState::Left) => "left",
        Ok(v1::NodeState::Unspecified) | Err(_) => "unknown",
    }
}

/// "never", or how long ago a wall-clock time in microseconds was.
fn ago(micros: u64) -> String {
    if micros == 0 {
        return "never".to_owned();
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{}s ago", now.saturating_sub(micros / 1_000_000))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn print_ring(ring: &v1::Ring) {
    for line in ring_lines(ring) {
        outln!("{line}");
    }
}

fn ring_lines(ring: &v1::Ring) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(r) = &ring.replication {
        lines.push(format!(
            "N={} W={} R={}{}",
            r.replication_factor,
            r.write_quorum,
            r.read_quorum,
            if r.strict_quorum {
                " (strict quorums)"
            } else {
                ""
            }
        ));
    }
    lines.push(format!(
        "{:<20} {:<22} {:<9} {:>6} {:>10} {:>7} {:>6}",
        "node", "address", "state", "tokens", "load MiB", "owns", "alive"
    ));
    let owns = strata_client::replica_shares(ring);
    let mut nodes: Vec<_> = ring.nodes.iter().collect();
    nodes.sort_by(|a, b| node_order::natural(&a.node_id, &b.node_id));
    for n in nodes {
        lines.push(format!(
            "{:<20} {:<22} {:<9} {:>6} {:>10.1} {:>6.1}% {:>6}",
            n.node_id,
            n.grpc_address,
            // Copying lost data back: written to, not read from.
            if n.rejoining {
                "rejoining"
            } else {
                state_name(n.state)
            },
            n.tokens.len(),
            mib(n.load_bytes),
            owns.get(&n.node_id).copied().unwrap_or(0.0) * 100.0,
            n.alive
        ));
    }
    lines
}

fn print_status(status: &v1::ClusterStatus) {
    for line in status_lines(status) {
        outln!("{line}");
    }
}

fn status_lines(status: &v1::ClusterStatus) -> Vec<String> {
    let mut lines = Vec::new();
    let mut nodes: Vec<_> = status.nodes.iter().collect();
    nodes.sort_by(|a, b| node_order::natural(&a.node_id, &b.node_id));
    for n in nodes {
        let up = if n.alive { "UP" } else { "DOWN" };
        // A node that did not answer the endpoint's status call is known
        // only from gossip: no version, uptime or counters to show.
        if n.version.is_empty() {
            lines.push(format!(
                "{} ({}) {up} {} no answer to the status call (paused, overloaded or unreachable); load {:.1} MiB as gossiped",
                n.node_id,
                n.grpc_address,
                state_name(n.state),
                mib(n.load_bytes),
            ));
            continue;
        }
        lines.push(format!(
            "{} ({}) {up} {} v{} up {}s load {:.1} MiB hints {} last repair {}",
            n.node_id,
            n.grpc_address,
            state_name(n.state),
            n.version,
            n.uptime_seconds,
            mib(n.load_bytes),
            n.hints_pending,
            ago(n.last_repair_micros)
        ));
        if let Some(e) = &n.engine {
            let files: Vec<String> = e.levels.iter().map(|l| l.files.to_string()).collect();
            lines.push(format!(
                "  engine: files per level [{}], write-amp {:.2}, stalled {} ms, cache hit {:.0}%, memtable {:.1} MiB",
                files.join(" "),
                e.write_amplification,
                e.stall_micros / 1000,
                e.block_cache_hit_rate * 100.0,
                mib(e.memtable_bytes)
            ));
            if !e.failure.is_empty() {
                lines.push(format!("  STORAGE FAILED, writes refused: {}", e.failure));
            }
        }
        if n.tombstone_gc_paused {
            lines.push(
                "  tombstone GC paused: deletes are kept until every member is up and this node has repaired its ranges"
                    .to_owned(),
            );
        }
    }
    lines
}

async fn repair(client: &Client, no_wait: bool) -> anyhow::Result<()> {
    let started = client.repair().await?;
    outln!(
        "repair {} started on {}: {} ranges",
        started.id,
        started.node_id,
        started.ranges_total
    );
    if no_wait {
        return Ok(());
    }
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let Some(op) = client.progress(&started.id).await?.into_iter().next() else {
            anyhow::bail!("the node no longer knows repair {}", started.id);
        };
        let elapsed = op.updated_at_micros.saturating_sub(op.started_at_micros) / 1000;
        let line = format!(
            "{}/{} ranges, {} keys merged, {:.1} MiB, {:.1} s",
            op.ranges_done,
            op.ranges_total,
            op.keys_transferred,
            mib(op.bytes_transferred),
            elapsed as f64 / 1000.0
        );
        match v1::OperationState::try_from(op.state) {
            Ok(v1::OperationState::Succeeded) => {
                outln!("done: {line}");
                return Ok(());
            }
            Ok(v1::OperationState::Failed) => {
                anyhow::bail!("repair failed after {line}: {}", op.error);
            }
            _ => outln!("{line}"),
        }
    }
}

fn kind_name(kind: i32) -> &'static str {
    match v1::OperationKind::try_from(kind) {
        Ok(v1::OperationKind::Join) => "join",
        Ok(v1::OperationKind::Decommission) => "decommission",
        Ok(v1::OperationKind::RemoveNode) => "removenode",
        Ok(v1::OperationKind::Repair) => "repair",
        Ok(v1::OperationKind::Cleanup) => "cleanup",
        Ok(v1::OperationKind::Unspecified) | Err(_) => "operation",
    }
}

fn started(op: &v1::Operation) {
    outln!("{} {} started on {}", kind_name(op.kind), op.id, op.node_id);
}

/// One line: kind, id, state, ranges, bytes, rate and ETA.
fn describe(op: &v1::Operation) -> String {
    let seconds = op.updated_at_micros.saturating_sub(op.started_at_micros) as f64 / 1_000_000.0;
    let rate = if seconds > 0.0 {
        mib(op.bytes_transferred) / seconds
    } else {
        0.0
    };
    let streaming = match op.streaming_micros as f64 / 1_000_000.0 {
        s if s > 0.0 => format!(
            " ({:.1} MiB/s over {s:.1} s of streaming)",
            mib(op.bytes_transferred) / s
        ),
        _ => String::new(),
    };
    let left = op.ranges_total.saturating_sub(op.ranges_done);
    let streamed = op.ranges_done.saturating_sub(op.ranges_resumed);
    let eta = if streamed > 0 && left > 0 {
        format!(", ETA {:.0} s", seconds / streamed as f64 * left as f64)
    } else {
        String::new()
    };
    let state = match v1::OperationState::try_from(op.state) {
        Ok(v1::OperationState::Pending) => "pending",
        Ok(v1::OperationState::Running) => "running",
        Ok(v1::OperationState::Succeeded) => "succeeded",
        Ok(v1::OperationState::Failed) => "failed",
        _ => "unknown",
    };
    let note = if op.error.is_empty() {
        String::new()
    } else {
        format!(" ({})", op.error)
    };
    format!(
        "{} {} {state}: {}/{} ranges, {} keys, {:.1} MiB, {rate:.1} MiB/s{streaming}{eta}{note}",
        kind_name(op.kind),
        op.id,
        op.ranges_done,
        op.ranges_total,
        op.keys_transferred,
        mib(op.bytes_transferred),
    )
}

/// Follows operation `id` on node `node` until it ends ([`follow_to_end`]).
/// Ctrl-C stops following, not the operation: it runs on the node, and
/// the message says so and how to follow it again (exit status 130).
async fn follow(client: &Client, node: &str, id: &str) -> anyhow::Result<()> {
    tokio::select! {
        outcome = follow_to_end(client, node, id) => outcome,
        interrupted = tokio::signal::ctrl_c() => {
            if interrupted.is_err() {
                // No handler: Ctrl-C ends the process as by default.
                return follow_to_end(client, node, id).await;
            }
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                outln!();
            }
            eprintln!(
                "stopped following {id}; it goes on on {node} (`strata progress --node {node}` \
                 follows it again)"
            );
            std::process::exit(130);
        }
    }
}

/// Polls operation `id` on node `node` until it ends: a progress bar
/// redrawn in place on a terminal, a line every few seconds otherwise.
async fn follow_to_end(client: &Client, node: &str, id: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let tty = std::io::stdout().is_terminal();
    let mut last_line = std::time::Instant::now();
    loop {
        let ops = client.progress_of(node, id).await.with_context(|| {
            format!(
                "lost contact with {node} while following {id} (a change resumes by itself \
                 when its node restarts: `strata progress --node {node}` follows it again)"
            )
        })?;
        let Some(op) = ops.into_iter().next() else {
            anyhow::bail!("{node} no longer knows operation {id}");
        };
        let done = matches!(
            v1::OperationState::try_from(op.state),
            Ok(v1::OperationState::Succeeded | v1::OperationState::Failed)
        );
        if tty {
            let width = 30u64;
            let filled = (op.ranges_done * width)
                .checked_div(op.ranges_total)
                .unwrap_or(if done { width } else { 0 });
            let bar: String = (0..width)
                .map(|i| if i < filled { '#' } else { '.' })
                .collect();
            out!("\r\x1b[2K[{bar}] {}", describe(&op));
        } else if done || last_line.elapsed() >= std::time::Duration::from_secs(2) {
            outln!("{}", describe(&op));
            last_line = std::time::Instant::now();
        }
        if done {
            if tty {
                outln!();
            }
            if op.state == v1::OperationState::Failed as i32 {
                anyhow::bail!("{} failed: {}", kind_name(op.kind), op.error);
            }
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

fn level(text: Option<&str>) -> anyhow::Result<Option<Consistency>> {
    Ok(text.map(parse_consistency).transpose()?)
}

/// The one live value of a key, for `get --raw`.
fn raw_value(siblings: &[v1::Sibling]) -> anyhow::Result<&[u8]> {
    match siblings {
        [] => anyhow::bail!("not found"),
        [only] if only.tombstone => anyhow::bail!("deleted"),
        [only] => Ok(&only.value),
        many => anyhow::bail!(
            "{} siblings: --raw prints one value; `get` without --raw shows them all (a put with their context resolves them)",
            many.len()
        ),
    }
}

/// A value as `get` shows it: UTF-8 text as is, other bytes as `0x` and
/// hex (so nothing is lost in the output).
fn printable(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("0x{}", hex(value)),
    }
}

/// A value from a file, or from stdin for `-`.
fn read_value(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut value = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut value)
            .map_err(|e| anyhow::anyhow!("reading the value from stdin: {e}"))?;
        Ok(value)
    } else {
        std::fs::read(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: Option<&str>) -> anyhow::Result<Vec<u8>> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    anyhow::ensure!(
        text.len() % 2 == 0,
        "context must be an even number of hex digits"
    );
    // Byte chunks, not string slices: non-ASCII input must be an error, not a panic.
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|digits| u8::from_str_radix(digits, 16).ok())
                .ok_or_else(|| anyhow::anyhow!("context is not hex: {text:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_commands_parse_beside_the_client_certificate_key() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("strata").chain(args.iter().copied()))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        };
        let cli = parse(&["get", "k1", "-c", "one"]);
        assert!(
            matches!(&cli.command, Command::Get { key, consistency, raw: false }
                if key == "k1" && consistency.as_deref() == Some("one")),
            "{cli:?}"
        );
        let cli = parse(&["put", "k2", "v2", "--context", "0a"]);
        assert!(
            matches!(&cli.command, Command::Put { key, value, context, .. }
                if key == "k2" && value.as_deref() == Some("v2") && context.as_deref() == Some("0a")),
            "{cli:?}"
        );
        let cli = parse(&["delete", "k3"]);
        assert!(
            matches!(&cli.command, Command::Delete { key, .. } if key == "k3"),
            "{cli:?}"
        );
        // The certificate's key and the positional key stay apart, before
        // and after the subcommand.
        let cli = parse(&[
            "--ca", "ca.pem", "--cert", "me.pem", "--key", "me.key", "put", "k4", "v4",
        ]);
        assert_eq!(cli.cert_key.as_deref(), Some("me.key".as_ref()));
        assert!(
            matches!(&cli.command, Command::Put { key, .. } if key == "k4"),
            "{cli:?}"
        );
        let cli = parse(&[
            "get", "k5", "--key", "me.key", "--cert", "me.pem", "--ca", "ca.pem",
        ]);
        assert_eq!(cli.cert_key.as_deref(), Some("me.key".as_ref()));
        assert!(
            matches!(&cli.command, Command::Get { key, .. } if key == "k5"),
            "{cli:?}"
        );
        // A certificate without its key is refused, not ignored.
        assert!(Cli::try_parse_from(["strata", "--ca", "a", "--cert", "b", "ping"]).is_err());
    }

    #[test]
    fn removenode_takes_the_node_as_an_argument_or_as_node() {
        for args in [
            ["strata", "removenode", "n5"].as_slice(),
            ["strata", "removenode", "--node", "n5"].as_slice(),
        ] {
            let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let Command::Removenode {
                node, node_flag, ..
            } = cli.command
            else {
                panic!("{args:?} is not removenode");
            };
            assert_eq!(node.or(node_flag).as_deref(), Some("n5"), "{args:?}");
        }
        assert!(Cli::try_parse_from(["strata", "removenode"]).is_err());
        assert!(Cli::try_parse_from(["strata", "removenode", "n5", "--node", "n6"]).is_err());
    }

    #[test]
    fn connection_switches_are_off_unless_given() {
        let cli = Cli::try_parse_from(["strata", "ping"]).expect("parses");
        assert!(!cli.no_sessions && !cli.direct, "{cli:?}");
        let cli =
            Cli::try_parse_from(["strata", "ping", "--no-sessions", "--direct"]).expect("parses");
        assert!(cli.no_sessions && cli.direct, "{cli:?}");
    }

    #[test]
    fn bench_refuses_zero_workers() {
        assert!(Cli::try_parse_from(["strata", "bench", "--threads", "0"]).is_err());
        assert!(Cli::try_parse_from(["strata", "bench", "--threads", "1"]).is_ok());
        let interval = |v: &str| Cli::try_parse_from(["strata", "bench", "--status-interval", v]);
        assert!(interval("0").is_ok() && interval("86400").is_ok());
        assert!(interval("86401").is_err() && interval("-1").is_err());
    }

    #[test]
    fn status_says_which_nodes_did_not_answer() {
        let answered = super::v1::NodeStatus {
            node_id: "n0".into(),
            grpc_address: "127.0.0.1:7400".into(),
            alive: true,
            version: "0.1.0".into(),
            uptime_seconds: 42,
            ..super::v1::NodeStatus::default()
        };
        let silent = super::v1::NodeStatus {
            node_id: "n1".into(),
            grpc_address: "127.0.0.1:7401".into(),
            alive: true,
            ..super::v1::NodeStatus::default()
        };
        let lines = super::status_lines(&super::v1::ClusterStatus {
            nodes: vec![answered, silent],
            ..super::v1::ClusterStatus::default()
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].contains("UP") && lines[0].contains("v0.1.0 up 42s"),
            "{}",
            lines[0]
        );
        assert!(
            lines[1].contains("no answer") && !lines[1].contains(" up 0s"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn status_lists_nodes_by_id_with_numbers_in_order() {
        let node = |id: &str| super::v1::NodeStatus {
            node_id: id.into(),
            alive: true,
            ..super::v1::NodeStatus::default()
        };
        let lines = super::status_lines(&super::v1::ClusterStatus {
            nodes: vec![node("kv-2"), node("kv-10"), node("kv-1")],
            ..super::v1::ClusterStatus::default()
        });
        let ids: Vec<_> = lines
            .iter()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(ids, ["kv-1", "kv-2", "kv-10"], "{lines:?}");
    }

    #[test]
    fn ring_shows_each_node_s_share_of_the_key_space() {
        let node = |i: u32, state: super::v1::NodeState| super::v1::RingNode {
            node_id: format!("kv-{i}"),
            grpc_address: format!("10.0.0.{i}:7400"),
            state: state as i32,
            tokens: strata_cluster::tokens_for(
                &strata_cluster::NodeId::new(format!("kv-{i}")).expect("id"),
                64,
            )
            .into_iter()
            .map(|t| t.0)
            .collect(),
            alive: true,
            ..super::v1::RingNode::default()
        };
        let ring = |n: u32, nodes: Vec<super::v1::RingNode>| super::v1::Ring {
            nodes,
            replication: Some(super::v1::ReplicationSettings {
                replication_factor: n,
                ..super::v1::ReplicationSettings::default()
            }),
            ..super::v1::Ring::default()
        };
        let owns = |lines: &[String]| -> Vec<f64> {
            lines[2..]
                .iter()
                .map(|l| {
                    let column = l.split_whitespace().nth(5).expect("owns column");
                    column.trim_end_matches('%').parse().expect("a percentage")
                })
                .collect()
        };
        use super::v1::NodeState::{Joining, Normal};
        // Three nodes, three replicas: each holds every key.
        let three = super::ring_lines(&ring(3, (0..3).map(|i| node(i, Normal)).collect()));
        assert!(three[1].contains("owns"), "{three:?}");
        assert_eq!(owns(&three), [100.0, 100.0, 100.0], "{three:?}");
        // One replica over four nodes, one of them joining: the other three
        // share the key space, the joiner owns nothing yet.
        let mut four: Vec<_> = (0..3).map(|i| node(i, Normal)).collect();
        four.push(node(3, Joining));
        let shares = owns(&super::ring_lines(&ring(1, four)));
        assert_eq!(shares[3], 0.0);
        let total: f64 = shares.iter().sum();
        assert!((total - 100.0).abs() < 0.5, "{shares:?}");
        assert!(shares[..3].iter().all(|&s| s > 20.0), "{shares:?}");
    }

    #[test]
    fn status_names_a_failed_store() {
        let node = |failure: &str| super::v1::NodeStatus {
            node_id: "n0".into(),
            version: "0.1.0".into(),
            alive: true,
            engine: Some(super::v1::EngineStats {
                failure: failure.into(),
                ..super::v1::EngineStats::default()
            }),
            ..super::v1::NodeStatus::default()
        };
        let lines = super::status_lines(&super::v1::ClusterStatus {
            nodes: vec![node(""), node("io error: No space left on device")],
            ..super::v1::ClusterStatus::default()
        });
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert!(!lines[1].contains("FAILED") && !lines[3].contains("FAILED"));
        assert!(
            lines[4].contains("STORAGE FAILED") && lines[4].contains("No space left on device"),
            "{}",
            lines[4]
        );
    }

    #[test]
    fn status_says_when_tombstone_gc_is_paused() {
        let node = |id: &str, paused: bool| super::v1::NodeStatus {
            node_id: id.into(),
            version: "0.1.0".into(),
            alive: true,
            tombstone_gc_paused: paused,
            ..super::v1::NodeStatus::default()
        };
        let lines = super::status_lines(&super::v1::ClusterStatus {
            nodes: vec![node("n0", false), node("n1", true)],
            ..super::v1::ClusterStatus::default()
        });
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("n0") && lines[1].starts_with("n1"));
        assert!(lines[2].contains("tombstone GC paused"), "{}", lines[2]);
    }
}
