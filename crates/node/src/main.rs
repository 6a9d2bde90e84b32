//! `strata-node`: one Strata storage node.

use anyhow::Context as _;
use clap::Parser;
use std::sync::Arc;

use strata_engine::Durability;
use strata_node::coordinator::{Coordinator, Replicas, Replication};
use strata_node::dots::DotCounter;
use strata_node::metrics::{self, Metrics};
use strata_node::storage::Storage;
use strata_node::{NodeConfig, node_id, server};
use tracing_subscriber::EnvFilter;

// jemalloc: the engine's flush thread frees memtables the request threads
// allocated, which glibc malloc serializes on arena locks (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A Strata storage node.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: NodeConfig,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let Cli { config } = Cli::parse();

    let id = node_id::load_or_init(&config.data_dir, config.node_id.as_deref())?;
    let storage = Storage::open(&config.data_dir.join("engine"), Durability::SyncEachGroup)
        .context("opening the storage engine")?;
    let dots = DotCounter::open(&config.data_dir, id.clone())?;
    let coordinator = Arc::new(Coordinator::new(
        id.clone(),
        Replicas::local_only(&id, config.vnodes, Arc::new(storage)),
        dots,
        Replication {
            factor: config.replication_factor,
            write: config.write_consistency,
            read: config.read_consistency,
        },
        config.max_value_bytes,
    ));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    // One machine-readable line on stdout: harnesses and `strata dev` read
    // the actual address from it when the port was 0.
    println!("strata-node {id} listening on {addr}");
    tracing::info!(%id, %addr, data_dir = %config.data_dir.display(), "node started");

    let metrics = Arc::new(Metrics::new());
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| format!("binding metrics on {}", config.metrics_listen))?;
    tracing::info!(url = %metrics::describe(metrics_listener.local_addr()?), "metrics endpoint");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let scrape = Arc::clone(&coordinator);
    let mut metrics_stopped = stopped.clone();
    let metrics_server = tokio::spawn(metrics::serve(
        metrics_listener,
        Arc::clone(&metrics),
        move || scrape.storage().db().stats(),
        async move {
            let _ = metrics_stopped.wait_for(|s| *s).await;
        },
    ));

    server::serve(id, coordinator, metrics, listener, async move {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C; stopping");
        }
        let _ = stop.send(true);
    })
    .await?;
    drop(stopped);
    metrics_server.await??;
    tracing::info!("node stopped");
    Ok(())
}
