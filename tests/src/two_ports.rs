//! Clusters whose nodes serve clients and each other on separate ports
//! (`--internal-listen`), as the security scenarios need: gossip runs on
//! the internal ports, so the seeds are those.

use std::net::SocketAddr;
use std::path::Path;

use crate::NodeProcess;

/// A port free right now on 127.0.0.1 for TCP and UDP (a node binds it
/// for both), below Linux's ephemeral range (32768 and up): a port the OS
/// hands out for "port 0" is also what other tests' outgoing connections
/// draw from, and one of them took such a port before the node bound it
/// ("Address already in use", seen once in CI).
///
/// # Panics
/// When no port can be bound after many tries.
#[must_use]
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher as _, Hasher as _};
    for _ in 0..1000 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let port = 20_000 + u16::try_from(hasher.finish() % 12_000).expect("below 12000");
        let tcp = std::net::TcpListener::bind(("127.0.0.1", port));
        let udp = std::net::UdpSocket::bind(("127.0.0.1", port));
        if tcp.is_ok() && udp.is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32000");
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
