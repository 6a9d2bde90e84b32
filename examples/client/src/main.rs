//! `strata-example-client`: what an application inside the Kubernetes
//! cluster does. It connects through the client Service, prints the ring
//! it discovered, writes `--keys` keys at QUORUM (straight to a replica of
//! each key, not through the Service), reads each back at QUORUM and
//! checks the value. Exit status 0 when every key read back as written.
//!
//! `examples/client/job.yaml` runs it as a Job against the KVCluster `kv`.

use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Parser;
use strata_client::v1::NodeState;
use strata_client::{Client, ClientOptions, parse_consistency};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The client Service (`<kvcluster>.<namespace>.svc:7400`), or any node.
    #[arg(long, env = "STRATA_ENDPOINT", default_value = "kv:7400")]
    endpoint: String,
    /// Keys to write and read back.
    #[arg(long, default_value_t = 100)]
    keys: u32,
    /// Send every request through the endpoint (for a port-forward).
    #[arg(long, env = "STRATA_DIRECT")]
    direct: bool,
    /// Bearer token (`write` role), for a cluster with client
    /// authentication; from a Secret through the environment.
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = ClientOptions {
        direct: args.direct,
        token: args.token.clone().filter(|t| !t.is_empty()),
        ..ClientOptions::default()
    };
    let client = Client::connect_with(&args.endpoint, options)
        .await
        .with_context(|| format!("connecting to {}", args.endpoint))?;
    let ring = client.ring().await?;
    println!("ring (epoch {}):", ring.epoch);
    for node in &ring.nodes {
        let state = NodeState::try_from(node.state).unwrap_or(NodeState::Unspecified);
        println!(
            "  {:<12} {:<28} {:?}{}",
            node.node_id,
            node.grpc_address,
            state,
            if node.alive { "" } else { " (down)" }
        );
    }
    let quorum = Some(parse_consistency("quorum")?);
    // Values unique to this run, so a stale read cannot pass for a fresh one.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos()
        ^ u128::from(std::process::id());
    let started = Instant::now();
    for i in 0..args.keys {
        let key = format!("example/{i}");
        let value = format!("value {i} of run {run:x}");
        client
            .put(
                key.clone().into_bytes(),
                value.into_bytes(),
                Vec::new(),
                quorum,
            )
            .await
            .with_context(|| format!("put {key}"))?;
    }
    let wrote = started.elapsed();
    let mut wrong = 0;
    for i in 0..args.keys {
        let key = format!("example/{i}");
        let expected = format!("value {i} of run {run:x}");
        let got = client
            .get(key.clone().into_bytes(), quorum)
            .await
            .with_context(|| format!("get {key}"))?;
        if !got
            .siblings
            .iter()
            .any(|s| !s.tombstone && s.value.as_ref() == expected.as_bytes())
        {
            eprintln!("{key}: read {:?}, expected {expected:?}", got.siblings);
            wrong += 1;
        }
    }
    println!(
        "wrote {} keys in {:.1} ms, read them back in {:.1} ms",
        args.keys,
        wrote.as_secs_f64() * 1e3,
        (started.elapsed() - wrote).as_secs_f64() * 1e3
    );
    if wrong > 0 {
        bail!("{wrong} of {} keys did not read back as written", args.keys);
    }
    println!("ok: every key read back as written");
    Ok(())
}
