//! Node configuration, from command-line flags (and their environment
//! variables, for Kubernetes).

use std::net::SocketAddr;
use std::path::PathBuf;

use strata_cluster::ConsistencyLevel;

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

    /// N: replicas per key.
    #[arg(long, env = "STRATA_REPLICATION_FACTOR", default_value_t = 3)]
    pub replication_factor: u32,

    /// W: default write consistency (one, two, quorum, all or a count).
    #[arg(long, env = "STRATA_WRITE_CONSISTENCY", default_value = "quorum", value_parser = parse_level)]
    pub write_consistency: ConsistencyLevel,

    /// R: default read consistency (one, two, quorum, all or a count).
    #[arg(long, env = "STRATA_READ_CONSISTENCY", default_value = "quorum", value_parser = parse_level)]
    pub read_consistency: ConsistencyLevel,

    /// Virtual nodes (tokens) of this node on the ring.
    #[arg(long, env = "STRATA_VNODES", default_value_t = 256)]
    pub vnodes: usize,

    /// Address for the Prometheus metrics endpoint (`/metrics`).
    #[arg(long, env = "STRATA_METRICS_LISTEN", default_value = "127.0.0.1:9400")]
    pub metrics_listen: SocketAddr,

    /// Largest value accepted, in bytes.
    #[arg(long, env = "STRATA_MAX_VALUE_BYTES", default_value_t = crate::request::DEFAULT_MAX_VALUE_BYTES)]
    pub max_value_bytes: usize,
}

/// Parses a consistency level as typed on the command line.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_level(text: &str) -> Result<ConsistencyLevel, String> {
    match text.to_ascii_lowercase().as_str() {
        "one" => Ok(ConsistencyLevel::One),
        "two" => Ok(ConsistencyLevel::Two),
        "quorum" => Ok(ConsistencyLevel::Quorum),
        "all" => Ok(ConsistencyLevel::All),
        other => match other.parse::<u32>() {
            Ok(n) if n > 0 => Ok(ConsistencyLevel::Replicas(n)),
            _ => Err(format!(
                "{text:?}: expected one, two, quorum, all or a replica count"
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_by_name_or_count() {
        assert_eq!(parse_level("QUORUM"), Ok(ConsistencyLevel::Quorum));
        assert_eq!(parse_level("2"), Ok(ConsistencyLevel::Replicas(2)));
        assert!(parse_level("0").is_err());
        assert!(parse_level("most").is_err());
    }
}
