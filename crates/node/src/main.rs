//! `strata-node`: one Strata storage node.

use clap::Parser;
use strata_node::NodeConfig;
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

fn main() -> anyhow::Result<()> {
    strata_node::runtime::build()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let Cli { config } = Cli::parse();
    let node = strata_node::run::start(config).await?;
    // One machine-readable line on stdout: harnesses read the actual
    // address from it when the port was 0.
    println!("strata-node {} listening on {}", node.id, node.grpc_address);
    node.run_until(strata_node::signal::shutdown()).await?;
    Ok(())
}
