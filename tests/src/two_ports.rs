//! Clusters whose nodes serve clients and each other on separate ports
//! (`--internal-listen`), as the security scenarios need: gossip runs on
//! the internal ports, so the seeds are those.

use std::net::SocketAddr;
use std::path::Path;

use crate::NodeProcess;

/// A port free right now on 127.0.0.1 (TCP; a node also binds it for
/// gossip over UDP).
///
/// # Panics
/// When no port can be bound.
#[must_use]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Nodes `node-0 .. node-{n-1}` founding one cluster (N = 3), each in
/// `<dir>/node-<i>`; dropping it kills them.
#[derive(Debug)]
pub struct TwoPortCluster {
    /// The nodes (their `addr()` is the client port).
    pub nodes: Vec<NodeProcess>,
    /// Each node's internal address.
    pub internal: Vec<SocketAddr>,
}

impl TwoPortCluster {
    /// Starts `n` nodes with 100 ms gossip and, for node `i`, the extra
    /// flags `extra(i)` (certificates, token files...).
    ///
    /// # Panics
    /// When a node does not start.
    pub fn start(dir: &Path, n: usize, extra: impl Fn(usize) -> Vec<String>) -> Self {
        let internal: Vec<SocketAddr> = (0..n)
            .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
            .collect();
        let seeds = internal
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let founders = (0..n)
            .map(|i| format!("node-{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let nodes = (0..n)
            .map(|i| {
                let mut args: Vec<String> = [
                    "--replication-factor",
                    "3",
                    "--gossip-interval-ms",
                    "100",
                    "--initial-cluster",
                    &founders,
                    "--seeds",
                    &seeds,
                    "--internal-listen",
                    &internal[i].to_string(),
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
                args.extend(extra(i));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                NodeProcess::start(
                    &dir.join(format!("node-{i}")),
                    Some(&format!("node-{i}")),
                    &args,
                )
            })
            .collect();
        Self { nodes, internal }
    }
}
