//! Node configuration, from command-line flags (and their environment
//! variables, for Kubernetes).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Settings for one storage node.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeConfig {
    /// Stable node id (a DNS label, e.g. the pod name). Persisted in the data
    /// directory on first start; later starts may omit it.
    #[arg(long, env = "STRATA_NODE_ID")]
    pub node_id: Option<String>,

    /// Address for the gRPC server. Port 0 picks a free port.
    #[arg(long, env = "STRATA_LISTEN", default_value = "127.0.0.1:7400")]
    pub listen: SocketAddr,

    /// Directory for the node's data, created if missing.
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./strata-data")]
    pub data_dir: PathBuf,
}
