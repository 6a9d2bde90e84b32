//! `<data_dir>/RING`: the members this node knows (`KnownMembers`), loaded
//! at boot and rewritten (temp file, fsync, rename, fsync directory)
//! whenever gossip teaches something new, before the view that uses it is
//! published. A restarted node therefore never routes with fewer members
//! than it knew.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use strata_cluster::{KnownMembers, KnownMembersError};

/// The file's name in the data directory.
pub const FILE: &str = "RING";

/// Why the membership file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RingFileError {
    /// Reading or writing it failed.
    #[error("membership file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Its contents are damaged.
    #[error(
        "membership file {path} is damaged ({source}); restore it from a backup, or wipe the \
         data directory and join the node again"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: KnownMembersError,
    },
    /// The data directory belongs to another cluster.
    #[error(
        "{path} belongs to cluster {found:?}, but this node is configured for {expected:?}; \
         nodes of different clusters never merge"
    )]
    OtherCluster {
        /// The file.
        path: PathBuf,
        /// The cluster id in the file.
        found: String,
        /// The configured cluster id.
        expected: String,
    },
}

/// The members known in `data_dir` (none for a new node).
///
/// # Errors
/// [`RingFileError`].
pub fn load(data_dir: &Path, cluster_id: &str) -> Result<KnownMembers, RingFileError> {
    let path = data_dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(KnownMembers::new(cluster_id));
        }
        Err(source) => return Err(RingFileError::Io { path, source }),
    };
    let known = KnownMembers::decode(&bytes).map_err(|source| RingFileError::Damaged {
        path: path.clone(),
        source,
    })?;
    if known.cluster_id() != cluster_id {
        return Err(RingFileError::OtherCluster {
            path,
            found: known.cluster_id().to_owned(),
            expected: cluster_id.to_owned(),
        });
    }
    Ok(known)
}

/// Writes `known` to `data_dir` durably.
///
/// # Errors
/// [`RingFileError::Io`].
pub fn save(data_dir: &Path, known: &KnownMembers) -> Result<(), RingFileError> {
    let path = data_dir.join(FILE);
    let io = |source| RingFileError::Io {
        path: path.clone(),
        source,
    };
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(&known.encode()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_cluster::{NodeGossip, NodeId, NodeState, Peer, tokens_for};

    #[test]
    fn members_survive_a_restart_and_other_clusters_or_damage_refuse() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load(dir.path(), "c").expect("new").is_empty());
        let mut known = KnownMembers::new("c");
        let id = NodeId::new("node-0").expect("id");
        known.observe(&[Peer {
            id: id.clone(),
            generation: 1,
            gossip: NodeGossip {
                grpc_address: "127.0.0.1:7400".into(),
                internal_address: String::new(),
                gossip_address: String::new(),
                tokens: tokens_for(&id, 4),
                state: NodeState::Normal,
                load_bytes: 0,
                incarnation: 1,
                departures: Vec::new(),
                rejoin: strata_cluster::Rejoin::None,
            },
            alive: true,
        }]);
        save(dir.path(), &known).expect("save");
        assert_eq!(load(dir.path(), "c").expect("load"), known);
        assert!(matches!(
            load(dir.path(), "other"),
            Err(RingFileError::OtherCluster { .. })
        ));
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[20] ^= 1;
        std::fs::write(&path, bytes).expect("write");
        assert!(matches!(
            load(dir.path(), "c"),
            Err(RingFileError::Damaged { .. })
        ));
    }
}
