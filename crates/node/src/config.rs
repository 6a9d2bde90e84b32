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

    /// N: replicas per key (1 to 64).
    #[arg(long, env = "STRATA_REPLICATION_FACTOR", default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(1..=64))]
    pub replication_factor: u32,

    /// W: default write consistency (one, two, quorum, all or a count).
    #[arg(long, env = "STRATA_WRITE_CONSISTENCY", default_value = "quorum")]
    pub write_consistency: ConsistencyLevel,

    /// R: default read consistency (one, two, quorum, all or a count).
    #[arg(long, env = "STRATA_READ_CONSISTENCY", default_value = "quorum")]
    pub read_consistency: ConsistencyLevel,

    /// Virtual nodes (tokens) of this node on the ring (1 to 2048: a node's
    /// tokens travel in one gossip datagram).
    #[arg(long, env = "STRATA_VNODES", default_value_t = 256,
        value_parser = clap::builder::TypedValueParser::map(
            clap::value_parser!(u16).range(1..=i64::from(strata_cluster::MAX_VNODES)),
            usize::from,
        ))]
    pub vnodes: usize,

    /// Address for the Prometheus metrics endpoint (`/metrics`).
    #[arg(long, env = "STRATA_METRICS_LISTEN", default_value = "127.0.0.1:9400")]
    pub metrics_listen: SocketAddr,

    /// Largest value accepted, in bytes.
    #[arg(long, env = "STRATA_MAX_VALUE_BYTES", default_value_t = crate::request::DEFAULT_MAX_VALUE_BYTES)]
    pub max_value_bytes: usize,

    /// Bytes of client writes (Put, Delete, BatchWrite requests) this node
    /// coordinates at once at most; a write beyond is refused at once with
    /// RESOURCE_EXHAUSTED so that many clients writing large values cannot
    /// exhaust the node's memory. A write larger than the limit runs alone.
    /// Every other client message is admitted against as many bytes again
    /// while it arrives.
    #[arg(long, env = "STRATA_MAX_WRITE_BYTES_IN_FLIGHT", default_value_t = 256 << 20,
        value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u32).range(1..), |v| v as usize))]
    pub max_write_bytes_in_flight: usize,

    /// Open gRPC connections (clients and other nodes) at most; one beyond
    /// is closed as soon as it is accepted, and its client tries another
    /// node. Default: the open-file limit (raised to its hard limit at
    /// start) less 1,536 files kept for the store, at least a quarter of
    /// the limit. The client port leaves 256 of them to the internal port
    #[arg(long, env = "STRATA_MAX_CONNECTIONS",
        value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u32).range(1..), |v| v as usize))]
    pub max_connections: Option<usize>,

    /// Size of one memtable in bytes (the engine holds up to three: one
    /// taking writes, two being flushed). Larger memtables mean fewer,
    /// larger flushes; the memory is taken as writes arrive.
    #[arg(long, env = "STRATA_MEMTABLE_BYTES", default_value_t = 64 << 20,
        value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u32).range(1 << 20..=1 << 30), |v| v as usize))]
    pub memtable_bytes: usize,

    /// Capacity of the engine's block cache in bytes (0: no cache).
    #[arg(long, env = "STRATA_BLOCK_CACHE_BYTES", default_value_t = 64 << 20)]
    pub block_cache_bytes: u64,

    /// Gossip addresses (`host:port`, UDP) of nodes to join through,
    /// comma separated. Empty: start a new cluster.
    #[arg(long, env = "STRATA_SEEDS", value_delimiter = ',')]
    pub seeds: Vec<String>,

    /// Address of a second gRPC server for node-to-node traffic only (the
    /// `Replica` service; gossip defaults to its port too), so that a
    /// firewall or NetworkPolicy can let clients reach `--listen` and only
    /// other nodes reach this one. Unset: one server for everything.
    #[arg(long, env = "STRATA_INTERNAL_LISTEN")]
    pub internal_listen: Option<SocketAddr>,

    /// File of client tokens (`<role> <sha256-hex>` per line; roles read,
    /// write, admin; `strata token-new` makes one), re-read when it
    /// changes. Set: every KV and Admin call on the client port needs
    /// `authorization: Bearer <token>` with the role (health stays open);
    /// needs `--internal-listen`, since nodes call each other without
    /// client tokens. Unset: no client authentication.
    #[arg(long, env = "STRATA_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,

    /// File holding the cluster's shared gossip key (at least 16 bytes; from
    /// a Secret). Set: every gossip datagram is authenticated (HMAC-SHA256)
    /// and one without a valid tag is dropped, so a process without the
    /// key can neither join nor mark a node dead. Every node of a cluster
    /// needs the same key. To rotate it, several keys, one per line: the
    /// first seals this node's gossip and any of them opens a peer's. The
    /// file is re-read when it changes.
    #[arg(long, env = "STRATA_GOSSIP_KEY_FILE")]
    pub gossip_key_file: Option<PathBuf>,

    /// This node's TLS certificate chain (PEM), served on both ports and
    /// presented to other nodes; re-read when it changes. With `--tls-key`
    /// and `--tls-ca`; needs `--internal-listen`.
    #[arg(long, env = "STRATA_TLS_CERT", requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,

    /// The private key of `--tls-cert` (PEM), re-read with it.
    #[arg(long, env = "STRATA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// The cluster CA (PEM): the internal port accepts only client
    /// certificates it signed (mutual TLS), and nodes verify each other
    /// against it.
    #[arg(long, env = "STRATA_TLS_CA", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,

    /// A DNS name every node certificate must carry for the internal port
    /// to accept it, e.g. `*.kv-peers.prod.svc` (one label for `*`): signed
    /// by the cluster CA is then not enough. Unset: any certificate the
    /// cluster CA signed.
    #[arg(long, env = "STRATA_TLS_PEER_NAME", requires = "tls_cert")]
    pub tls_peer_name: Option<String>,

    /// A CA (PEM) whose client certificates the client port then requires.
    /// Unset: clients need no certificate (tokens, if any, still apply).
    #[arg(long, env = "STRATA_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// UDP address for gossip. Default: the internal listen address and
    /// port when there is one, else the gRPC listen address and port.
    #[arg(long, env = "STRATA_GOSSIP_LISTEN")]
    pub gossip_listen: Option<SocketAddr>,

    /// Host (IP address or DNS name) other nodes and clients use to reach
    /// this node. Default: the listen IP; required when listening on
    /// 0.0.0.0 (on Kubernetes, the pod IP).
    #[arg(long, env = "STRATA_ADVERTISE_HOST")]
    pub advertise_host: Option<String>,

    /// Cluster name: nodes gossiping under another name are ignored.
    #[arg(long, env = "STRATA_CLUSTER_ID", default_value = "strata")]
    pub cluster_id: String,

    /// Milliseconds between gossip rounds. A silent node is declared down
    /// after about `phi-threshold` rounds.
    #[arg(long, env = "STRATA_GOSSIP_INTERVAL_MS", default_value_t = 500,
        value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub gossip_interval_ms: u64,

    /// Phi-accrual failure detector threshold.
    #[arg(long, env = "STRATA_PHI_THRESHOLD", default_value_t = 8.0)]
    pub phi_threshold: f64,

    /// Milliseconds a request waits for replicas before UNAVAILABLE.
    #[arg(long, env = "STRATA_REQUEST_TIMEOUT_MS", default_value_t = 2000,
        value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub request_timeout_ms: u64,

    /// Milliseconds a read waits for the replicas it asked before it asks
    /// one more (a paused or slow replica then costs a read this, not the
    /// request timeout); 0 turns it off.
    #[arg(long, env = "STRATA_SPECULATIVE_RETRY_MS", default_value_t = 100,
        value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    pub speculative_retry_ms: u64,

    /// Fraction of reads that ask every replica (not just R) and repair
    /// the stale ones; the rest ask R replicas, this node first.
    #[arg(long, env = "STRATA_READ_REPAIR_CHANCE", default_value_t = 0.1)]
    pub read_repair_chance: f64,

    /// Seconds a hint for a down replica is kept; after that anti-entropy
    /// is responsible for what it held.
    #[arg(long, env = "STRATA_HINT_WINDOW_SECS", default_value_t = 3 * 3600)]
    pub hint_window_secs: u64,

    /// Bytes of hints kept for one node at most; past it, writes that
    /// need a hint for that node fail at their consistency level.
    #[arg(long, env = "STRATA_MAX_HINT_BYTES_PER_NODE", default_value_t = 256 << 20)]
    pub max_hint_bytes_per_node: u64,

    /// Bytes of hints kept in total at most.
    #[arg(long, env = "STRATA_MAX_HINT_BYTES", default_value_t = 1 << 30)]
    pub max_hint_bytes: u64,

    /// Hint replay rate limit, bytes per second per target (0: unlimited).
    #[arg(long, env = "STRATA_HINT_REPLAY_BYTES_PER_SEC", default_value_t = 4 << 20)]
    pub hint_replay_bytes_per_sec: u64,

    /// Seconds between scheduled anti-entropy repairs of this node's
    /// primary ranges (of every range it replicates once after a member
    /// was down: tombstone GC waits for that) (0: only on demand,
    /// `strata repair`).
    #[arg(
        long,
        env = "STRATA_ANTI_ENTROPY_INTERVAL_SECS",
        default_value_t = 3600
    )]
    pub anti_entropy_interval_secs: u64,

    /// Merkle tree depth per token range: 2^depth leaves. Deeper trees
    /// exchange fewer keys per difference and cost more hashes.
    #[arg(long, env = "STRATA_MERKLE_DEPTH", default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(0..=i64::from(strata_cluster::MAX_DEPTH)))]
    pub merkle_depth: u32,

    /// Anti-entropy transfer limit, bytes per second (0: unlimited).
    #[arg(long, env = "STRATA_REPAIR_BYTES_PER_SEC", default_value_t = 16 << 20)]
    pub repair_bytes_per_sec: u64,

    /// Seconds a tombstone is kept before compaction may drop it. Must
    /// exceed the anti-entropy interval and the hint window, so every
    /// replica has the tombstone before any forgets it. Tombstones are
    /// also kept while a member is down, and until this node has repaired
    /// its ranges after every member is up again.
    #[arg(long, env = "STRATA_TOMBSTONE_GRACE_SECS", default_value_t = 10 * 24 * 3600)]
    pub tombstone_grace_secs: u64,

    /// What to do with a write-ahead log damaged in the middle (a torn
    /// tail is always recovered): `strict` refuses to start, so nothing
    /// acknowledged is dropped unless you decide so; `truncate` keeps the
    /// records before the damage, renames the log to `*.corrupt` and
    /// starts: anti-entropy repair (`strata repair`) then brings this
    /// replica's later writes back from the other replicas.
    #[arg(
        long,
        env = "STRATA_WAL_RECOVERY",
        value_enum,
        default_value = "strict"
    )]
    pub wal_recovery: WalRecoveryMode,

    /// Testing aid: a file of peer addresses (one per line) whose links to
    /// this node are cut, re-read every 50 ms. See `faults.rs`.
    #[arg(long, env = "STRATA_FAULT_FILE")]
    pub fault_file: Option<PathBuf>,

    /// Resolve concurrent writes by timestamp (last write wins) instead of
    /// returning siblings. Must be the same on every node of a cluster.
    #[arg(long, env = "STRATA_LAST_WRITE_WINS")]
    pub last_write_wins: bool,

    /// Count only a key's own replicas toward W. By default (Dynamo's
    /// sloppy quorum) a down replica's write goes to a stand-in whose ack
    /// counts: writes stay available through a partition, but a QUORUM
    /// read may miss them until the hints arrive. Strict: a write with
    /// fewer than W replicas up fails, and with W + R > N every read sees
    /// every acknowledged write (hints are still kept for down replicas).
    /// Should be the same on every node of a cluster.
    #[arg(long, env = "STRATA_STRICT_QUORUM")]
    pub strict_quorum: bool,

    /// Node ids of a brand-new cluster's founding members, comma separated
    /// (ids only, not etcd's `name=url` pairs: peers are found through
    /// `--seeds`; on Kubernetes, the first pods' names). Founding members
    /// with fresh data directories start as owners without streaming; any
    /// other fresh node joins. Without the list, a node without seeds
    /// founds a cluster alone. Ignored by a node whose data directory
    /// records its state: it restarts as what it was.
    #[arg(long, env = "STRATA_INITIAL_CLUSTER", value_delimiter = ',')]
    pub initial_cluster: Vec<String>,

    /// Whether a fresh node that is not a founding member joins by itself
    /// (`true`) or waits for `Admin.Join` (`false`, for an operator that
    /// wants explicit control).
    #[arg(long, env = "STRATA_AUTO_BOOTSTRAP", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_bootstrap: bool,

    /// Streaming limit for joins, decommissions and removals, bytes per
    /// second (0: unlimited). See docs/benchmarks.md for its effect on
    /// foreground latency.
    #[arg(long, env = "STRATA_STREAM_BYTES_PER_SEC", default_value_t = 32 << 20)]
    pub stream_bytes_per_sec: u64,

    /// Seconds a node copying its lost data back from every other replica
    /// waits for one that is down, once another copy of a range is in,
    /// before it goes on without it (what only that replica holds comes
    /// back by `strata repair` once it is up).
    #[arg(long, env = "STRATA_REJOIN_SOURCE_WAIT_SECS", default_value_t = 60)]
    pub rejoin_source_wait_secs: u64,
}

/// `--wal-recovery`: the engine's [`strata_engine::WalRecovery`] as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WalRecoveryMode {
    /// Refuse to start on a damaged log.
    Strict,
    /// Keep what precedes the damage and start.
    Truncate,
}

impl From<WalRecoveryMode> for strata_engine::WalRecovery {
    fn from(mode: WalRecoveryMode) -> Self {
        match mode {
            WalRecoveryMode::Strict => Self::Strict,
            WalRecoveryMode::Truncate => Self::TruncateAtCorruption,
        }
    }
}

impl NodeConfig {
    /// The settings `strata-node` runs with when given no flags; its
    /// `STRATA_*` environment variables apply as they would there.
    ///
    /// # Errors
    /// An environment variable that does not parse.
    pub fn defaults() -> Result<Self, clap::Error> {
        use clap::{Args as _, FromArgMatches as _};
        let command = Self::augment_args(clap::Command::new("strata-node"));
        Self::from_arg_matches(&command.try_get_matches_from(["strata-node"])?)
    }

    /// The hint store's bounds and window.
    #[must_use]
    pub fn hint_limits(&self) -> crate::hints::HintLimits {
        crate::hints::HintLimits {
            per_target_bytes: self.max_hint_bytes_per_node,
            total_bytes: self.max_hint_bytes,
            window: std::time::Duration::from_secs(self.hint_window_secs),
            ..crate::hints::HintLimits::default()
        }
    }

    /// Settings that work but fail requests until more nodes join: for a
    /// node starting a cluster (no members recorded yet), with fewer
    /// founding members than replicas per key. Logged at start.
    #[must_use]
    pub fn start_warnings(&self) -> Vec<String> {
        let n = self.replication_factor;
        let mut founders: Vec<&str> = self.initial_cluster.iter().map(String::as_str).collect();
        founders.sort_unstable();
        founders.dedup();
        let (members, how) = match founders.len() {
            0 if self.seed_list().is_empty() => (
                1,
                "no --seeds and no --initial-cluster: this node starts a cluster on its own"
                    .to_owned(),
            ),
            0 => return Vec::new(),
            k => (
                u32::try_from(k).unwrap_or(u32::MAX),
                format!(
                    "--initial-cluster names {k} founding member{}",
                    if k == 1 { "" } else { "s" }
                ),
            ),
        };
        if members >= n {
            return Vec::new();
        }
        let mut failing = Vec::new();
        for (flag, level) in [
            ("--write-consistency", self.write_consistency),
            ("--read-consistency", self.read_consistency),
        ] {
            if let Ok(required) = level.required_acks(n)
                && required > members
            {
                failing.push(format!("{flag} {level} needs {required}"));
            }
        }
        let consequence = if failing.is_empty() {
            String::new()
        } else {
            format!(
                "; requests at the default consistency fail until then ({})",
                failing.join(", ")
            )
        };
        let single = if members == 1 {
            " (for a single-node cluster, --replication-factor 1)"
        } else {
            ""
        };
        vec![format!(
            "{how}, with --replication-factor {n}: each key has {members} replica(s) until {} \
             more node(s) join{consequence}{single}",
            n - members
        )]
    }

    /// `--seeds` without blank entries: `STRATA_SEEDS=""` (or a trailing
    /// comma) means no seed, not a seed named "".
    #[must_use]
    pub fn seed_list(&self) -> Vec<String> {
        self.seeds
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Checks settings that only make sense together.
    ///
    /// # Errors
    /// A message naming the flags that conflict.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.replication_factor;
        for (flag, level) in [
            ("--write-consistency", self.write_consistency),
            ("--read-consistency", self.read_consistency),
        ] {
            if let Err(e) = level.required_acks(n) {
                return Err(format!("{flag} {level} with --replication-factor {n}: {e}"));
            }
        }
        if let Err(reason) = strata_cluster::check_cluster_id(&self.cluster_id) {
            return Err(format!("--cluster-id {:?}: {reason}", self.cluster_id));
        }
        if let Some(host) = self.advertised_host()
            && let Err(reason) = strata_cluster::check_host(&host)
        {
            return Err(format!(
                "--advertise-host {host:?}: {reason}; give one host name or IP address"
            ));
        }
        if !(self.phi_threshold.is_finite() && self.phi_threshold > 0.0) {
            return Err(format!(
                "--phi-threshold must be a positive number, not {}",
                self.phi_threshold
            ));
        }
        for member in &self.initial_cluster {
            if let Err(e) = strata_cluster::NodeId::new(member.as_str()) {
                // etcd's flag of the same name takes `name=url` pairs.
                let hint = if member.contains('=') {
                    " (it takes the founding members' --node-id values, comma separated, \
                     not etcd's name=address pairs: peers are found through --seeds)"
                } else {
                    ""
                };
                return Err(format!("--initial-cluster: {e}{hint}"));
            }
        }
        for seed in &self.seed_list() {
            if strata_cluster::check_address(seed).is_err() {
                return Err(format!(
                    "--seeds: {seed:?} is not host:port (a node's gossip address, UDP, e.g. \
                     10.0.0.1:7400 or kv-0.kv-peers:7401)"
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.read_repair_chance) {
            return Err(format!(
                "--read-repair-chance is a fraction of reads, from 0 to 1, not {}",
                self.read_repair_chance
            ));
        }
        if self.tls_cert.is_some() && self.internal_listen.is_none() {
            return Err(
                "--tls-cert needs --internal-listen: the internal port is the one that requires \
                 node certificates (mutual TLS)"
                    .to_owned(),
            );
        }
        if self.auth_tokens_file.is_some() && self.internal_listen.is_none() {
            return Err(
                "--auth-tokens-file needs --internal-listen: nodes call each other's Replica and \
                 Admin services on the internal port, without client tokens"
                    .to_owned(),
            );
        }
        if self.anti_entropy_interval_secs > 0
            && self.tombstone_grace_secs <= self.anti_entropy_interval_secs
        {
            return Err(format!(
                "--tombstone-grace-secs ({}) must exceed --anti-entropy-interval-secs ({}): \
                 a replica that missed a delete could bring the key back",
                self.tombstone_grace_secs, self.anti_entropy_interval_secs
            ));
        }
        if self.tombstone_grace_secs <= self.hint_window_secs {
            return Err(format!(
                "--tombstone-grace-secs ({}) must exceed --hint-window-secs ({}): \
                 a late hint could bring a deleted key back",
                self.tombstone_grace_secs, self.hint_window_secs
            ));
        }
        Ok(())
    }

    /// Anti-entropy settings.
    #[must_use]
    pub fn repair_settings(&self) -> crate::repair::RepairSettings {
        crate::repair::RepairSettings {
            depth: self.merkle_depth,
            bytes_per_second: self.repair_bytes_per_sec,
            interval: (self.anti_entropy_interval_secs > 0)
                .then(|| std::time::Duration::from_secs(self.anti_entropy_interval_secs)),
            timeout: std::time::Duration::from_millis(self.request_timeout_ms.max(1)) * 5,
        }
    }

    /// How topology changes stream.
    #[must_use]
    pub fn stream_settings(&self) -> crate::changes::StreamSettings {
        crate::changes::StreamSettings {
            bytes_per_second: self.stream_bytes_per_sec,
            batch_bytes: crate::changes::batch_bytes(self.stream_bytes_per_sec),
            timeout: std::time::Duration::from_millis(self.request_timeout_ms.max(1)) * 10,
            vnodes: self.vnodes,
            source_patience: std::time::Duration::from_secs(self.rejoin_source_wait_secs),
        }
    }

    /// `--advertise-host` as the host of an address: an IPv6 address in
    /// brackets.
    #[must_use]
    pub fn advertised_host(&self) -> Option<String> {
        let host = self.advertise_host.as_ref()?;
        Some(
            host.parse()
                .map_or_else(|_| host.clone(), strata_cluster::host_of),
        )
    }

    /// `speculative_retry_ms` as a delay (`None`: off).
    #[must_use]
    pub fn speculative_retry(&self) -> Option<std::time::Duration> {
        (self.speculative_retry_ms > 0)
            .then(|| std::time::Duration::from_millis(self.speculative_retry_ms))
    }

    /// `read_repair_chance` as "every k-th read" (0: never).
    #[must_use]
    pub fn read_repair_period(&self) -> u32 {
        if self.read_repair_chance.is_nan() || self.read_repair_chance <= 0.0 {
            0
        } else {
            let period = (1.0 / self.read_repair_chance.min(1.0)).round();
            // Bounded to 1 ..= 1e6 before the cast.
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "clamped"
            )]
            let period = period.clamp(1.0, 1e6) as u32;
            period
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_take_their_batch_size_from_the_limit() {
        let mut c = NodeConfig::defaults().expect("defaults parse");
        assert_eq!(c.stream_settings().batch_bytes, 128 << 10);
        c.stream_bytes_per_sec = 0;
        assert_eq!(c.stream_settings().batch_bytes, 1 << 20);
    }

    #[test]
    fn seeds_are_host_port_pairs() {
        let mut c = NodeConfig::defaults().expect("defaults parse");
        for good in ["10.0.0.1:7400", "kv-0.kv-peers:7401", "[::1]:7400"] {
            c.seeds = vec![good.to_owned()];
            assert_eq!(c.validate(), Ok(()), "{good}");
        }
        for bad in [
            "garbage:xx",
            "10.0.0.1",
            ":7400",
            "host:0",
            "host:70000",
            "h :1",
        ] {
            c.seeds = vec![bad.to_owned()];
            let e = c.validate().expect_err(bad);
            assert!(e.contains("--seeds") && e.contains("host:port"), "{e}");
        }
        // Blank entries are no seeds.
        c.seeds = vec![String::new(), " 10.0.0.1:7400 ".to_owned(), " ".to_owned()];
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.seed_list(), ["10.0.0.1:7400"]);
    }

    #[test]
    fn cluster_ids_and_advertised_hosts_fit_one_field_of_the_ring_file() {
        let mut c = NodeConfig::defaults().expect("defaults parse");
        for bad in ["", "prod kv", "prod\r"] {
            c.cluster_id = bad.to_owned();
            let e = c.validate().expect_err(bad);
            assert!(e.contains("--cluster-id"), "{e}");
        }
        c.cluster_id = "prod.kv".to_owned();
        // `hostname -i` on a host with two addresses.
        for bad in ["10.0.0.5 fe80::1", "", "host\n", "[oops]"] {
            c.advertise_host = Some(bad.to_owned());
            let e = c.validate().expect_err(bad);
            assert!(e.contains("--advertise-host"), "{e}");
        }
        for (good, host) in [
            ("kv-0.kv-peers.default.svc", "kv-0.kv-peers.default.svc"),
            ("10.0.0.5", "10.0.0.5"),
            ("fe80::1", "[fe80::1]"),
            ("[fe80::1]", "[fe80::1]"),
        ] {
            c.advertise_host = Some(good.to_owned());
            assert_eq!(c.validate(), Ok(()), "{good}");
            assert_eq!(c.advertised_host().as_deref(), Some(host));
        }
    }

    /// The settings `strata-node <flag> <value>` would run with.
    fn parse(flag: &str, value: &str) -> Result<NodeConfig, clap::Error> {
        use clap::{Args as _, FromArgMatches as _};
        let command = NodeConfig::augment_args(clap::Command::new("strata-node"));
        command
            .try_get_matches_from(["strata-node", flag, value])
            .and_then(|m| NodeConfig::from_arg_matches(&m))
    }

    #[test]
    fn levels_parse_through_the_shared_parser() {
        let c = parse("--write-consistency", "ALL").expect("valid");
        assert_eq!(c.write_consistency, ConsistencyLevel::All);
        let c = parse("--read-consistency", "2").expect("valid");
        assert_eq!(c.read_consistency, ConsistencyLevel::Replicas(2));
        assert!(parse("--read-consistency", "0").is_err());
        assert!(parse("--write-consistency", "most").is_err());
    }

    #[test]
    fn tombstone_grace_must_outlast_repair_and_hints() {
        let mut c = NodeConfig::defaults().expect("defaults parse");
        assert_eq!(c.validate(), Ok(()));
        c.tombstone_grace_secs = c.anti_entropy_interval_secs;
        assert!(
            c.validate()
                .expect_err("grace = interval")
                .contains("--anti-entropy-interval-secs")
        );
        c.anti_entropy_interval_secs = 0;
        c.tombstone_grace_secs = c.hint_window_secs;
        assert!(
            c.validate()
                .expect_err("grace = hint window")
                .contains("--hint-window-secs")
        );
        c.tombstone_grace_secs += 1;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn read_repair_chance_becomes_a_period() {
        let config = |chance: f64| {
            let mut c = NodeConfig::defaults().expect("defaults parse");
            c.read_repair_chance = chance;
            c.read_repair_period()
        };
        assert_eq!(config(0.1), 10);
        assert_eq!(config(1.0), 1);
        assert_eq!(config(7.0), 1);
        assert_eq!(config(0.0), 0);
        assert_eq!(config(f64::NAN), 0);
        assert_eq!(config(1e-9), 1_000_000);
    }

    #[test]
    fn settings_that_cannot_work_are_refused_at_start() {
        let ok = NodeConfig::defaults().expect("defaults parse");
        assert_eq!(ok.validate(), Ok(()));
        let refused = |change: fn(&mut NodeConfig), names: &str| {
            let mut c = ok.clone();
            change(&mut c);
            let e = c.validate().expect_err(names);
            assert!(e.contains(names), "{e}");
        };
        refused(
            |c| {
                c.replication_factor = 1;
                c.write_consistency = ConsistencyLevel::Two;
            },
            "--write-consistency",
        );
        refused(
            |c| c.read_consistency = ConsistencyLevel::Replicas(4),
            "--read-consistency",
        );
        refused(|c| c.phi_threshold = 0.0, "--phi-threshold");
        refused(|c| c.phi_threshold = f64::INFINITY, "--phi-threshold");
        refused(|c| c.read_repair_chance = 10.0, "--read-repair-chance");
        refused(|c| c.read_repair_chance = f64::NAN, "--read-repair-chance");
        // Relative levels fit any N.
        let mut c = ok.clone();
        c.replication_factor = 1;
        c.write_consistency = ConsistencyLevel::All;
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn fewer_founders_than_replicas_is_warned_about() {
        let mut c = NodeConfig::defaults().expect("defaults parse");
        // N=3, W=R=QUORUM (2).
        c.initial_cluster = vec!["a".into(), "b".into(), "c".into()];
        assert!(c.start_warnings().is_empty());
        c.initial_cluster = vec!["a".into(), "a".into()];
        let warned = c.start_warnings();
        assert_eq!(warned.len(), 1);
        assert!(
            warned[0].contains("names 1 founding member,")
                && warned[0].contains("--write-consistency quorum needs 2")
                && warned[0].contains("--replication-factor 1"),
            "{warned:?}"
        );
        c.initial_cluster = vec!["a".into(), "b".into()];
        let warned = c.start_warnings();
        assert!(
            warned[0].contains("until 1 more") && !warned[0].contains("fail"),
            "two of three replicas meet QUORUM: {warned:?}"
        );
        // A node that joins through seeds, or a single-node cluster.
        c.initial_cluster.clear();
        c.seeds = vec!["127.0.0.1:7401".into()];
        assert!(c.start_warnings().is_empty());
        c.seeds.clear();
        assert!(c.start_warnings()[0].contains("on its own"));
        c.replication_factor = 1;
        assert!(c.start_warnings().is_empty());
    }

    #[test]
    fn out_of_range_numbers_are_refused_by_the_parser() {
        for (flag, bad, good) in [
            ("--replication-factor", "0", "5"),
            ("--vnodes", "0", "16"),
            ("--vnodes", "2049", "2048"),
            ("--gossip-interval-ms", "0", "100"),
            ("--request-timeout-ms", "0", "1"),
            ("--wal-recovery", "skip", "truncate"),
            ("--memtable-bytes", "4096", "1048576"),
            ("--memtable-bytes", "2147483648", "1073741824"),
            ("--block-cache-bytes", "-1", "0"),
        ] {
            assert!(parse(flag, bad).is_err(), "{flag} {bad}");
            assert!(parse(flag, good).is_ok(), "{flag} {good}");
        }
        assert_eq!(parse("--vnodes", "16").expect("valid").vnodes, 16);
        let sized = parse("--memtable-bytes", "8388608").expect("valid");
        assert_eq!(sized.memtable_bytes, 8 << 20);
        assert_eq!(sized.block_cache_bytes, 64 << 20, "the default");
        let truncate = parse("--wal-recovery", "truncate").expect("valid");
        assert_eq!(
            strata_engine::WalRecovery::from(truncate.wal_recovery),
            strata_engine::WalRecovery::TruncateAtCorruption
        );
    }

    #[test]
    fn initial_cluster_takes_node_ids() {
        let mut c = NodeConfig::defaults().expect("defaults parse");
        c.initial_cluster = vec!["n1".into(), "node-2".into()];
        assert_eq!(c.validate(), Ok(()));
        c.initial_cluster = vec!["n1=127.0.0.1:8011".into()];
        let e = c.validate().expect_err("an etcd-style pair");
        assert!(
            e.contains("--initial-cluster") && e.contains("name=address"),
            "{e}"
        );
        c.initial_cluster = vec!["n1".into(), " n2".into()];
        let e = c.validate().expect_err("a space");
        assert!(
            e.contains("--initial-cluster") && e.contains("\" n2\""),
            "{e}"
        );
    }
}
