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
    /// Log format on stderr: `text` (colored only on a terminal; `NO_COLOR`
    /// turns color off) or `json` (one object per line, for log
    /// collectors). `RUST_LOG` sets the level (default `info`)
    #[arg(long, env = "STRATA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> std::process::ExitCode {
    let outcome = match strata_node::runtime::build() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with its causes, and no backtrace even under
            // RUST_BACKTRACE: a refusal to start is a message for the
            // operator, not a crash.
            let e: &(dyn std::error::Error + 'static) = e.as_ref();
            eprintln!("error: {}", strata_node::error_line::error_line(e));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let Cli { config, log_format } = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr);
    match log_format {
        // Escape codes only where a terminal renders them, not in files or
        // a pod's log.
        LogFormat::Text => logs
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none(),
            )
            .init(),
        LogFormat::Json => logs.json().init(),
    }
    let node = strata_node::run::start(config).await?;
    // One machine-readable line on stdout: harnesses read the actual
    // address from it when the port was 0.
    println!("strata-node {} listening on {}", node.id, node.grpc_address);
    node.run_until(strata_node::signal::shutdown()).await?;
    Ok(())
}
