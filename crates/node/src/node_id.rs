//! A node's stable identity, persisted in its data directory.
//!
//! The first start records the id in `<data_dir>/NODE_ID`; later starts read
//! it back, so a restarted node keeps its place on the ring. A flag that
//! contradicts the recorded id is an error, not a silent rename: the data on
//! disk belongs to the recorded node.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use strata_cluster::NodeId;

/// File in the data directory that records the node id.
pub const NODE_ID_FILE: &str = "NODE_ID";

/// Why a node id could not be settled.
#[derive(Debug, thiserror::Error)]
pub enum NodeIdError {
    /// Neither a flag nor a recorded id.
    #[error("no node id: pass --node-id (or STRATA_NODE_ID) on the first start of {dir}")]
    Missing {
        /// The data directory that holds no id.
        dir: PathBuf,
    },
    /// The flag names another node than the one whose data this is.
    #[error("data directory {dir} belongs to node {recorded:?}, but --node-id is {given:?}")]
    Mismatch {
        /// The data directory.
        dir: PathBuf,
        /// The id recorded in it.
        recorded: String,
        /// The id that was passed.
        given: String,
    },
    /// The id is not a valid node id.
    #[error(transparent)]
    Invalid(#[from] strata_cluster::Error),
    /// Reading or writing the id or incarnation file failed.
    #[error("identity file {path}: {source}")]
    Io {
        /// The id or incarnation file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// Returns the node's id: the recorded one, or `given` recorded durably.
///
/// # Errors
/// See [`NodeIdError`].
pub fn load_or_init(data_dir: &Path, given: Option<&str>) -> Result<NodeId, NodeIdError> {
    let path = data_dir.join(NODE_ID_FILE);
    let io = |source| NodeIdError::Io {
        path: path.clone(),
        source,
    };
    match fs::read_to_string(&path) {
        Ok(recorded) => {
            let recorded = recorded.trim().to_owned();
            if let Some(given) = given.filter(|g| *g != recorded) {
                return Err(NodeIdError::Mismatch {
                    dir: data_dir.to_owned(),
                    recorded,
                    given: given.to_owned(),
                });
            }
            Ok(NodeId::new(recorded)?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let Some(given) = given else {
                return Err(NodeIdError::Missing {
                    dir: data_dir.to_owned(),
                });
            };
            let id = NodeId::new(given)?;
            fs::create_dir_all(data_dir).map_err(io)?;
            write_durably(data_dir, NODE_ID_FILE, id.as_str()).map_err(io)?;
            Ok(id)
        }
        Err(e) => Err(io(e)),
    }
}

/// Writes `contents` to `<data_dir>/<name>`: write a temporary file,
/// fsync, rename, fsync the directory, so a crash leaves either the old
/// file (or none) or the complete new one.
fn write_durably(data_dir: &Path, name: &str, contents: &str) -> std::io::Result<()> {
    let tmp = data_dir.join(format!("{name}.tmp"));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, data_dir.join(name))?;
    fs::File::open(data_dir)?.sync_all()
}

/// File holding the data directory's incarnation.
pub const INCARNATION_FILE: &str = "INCARNATION";

/// This data directory's incarnation: a random number made when the
/// directory is first used, kept for its life. A node wiped and started
/// again under the same id is a new incarnation, which the cluster tells
/// apart from the removed one.
///
/// # Errors
/// [`NodeIdError::Io`] when the file cannot be read or written.
pub fn incarnation(data_dir: &Path) -> Result<u64, NodeIdError> {
    use std::hash::{BuildHasher as _, Hasher as _};
    let path = data_dir.join(INCARNATION_FILE);
    let io = |source| NodeIdError::Io {
        path: path.clone(),
        source,
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            if let Ok(value) = u64::from_str_radix(text.trim(), 16) {
                return Ok(value);
            }
            return Err(NodeIdError::Io {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not a hexadecimal incarnation",
                ),
            });
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let value = hasher.finish().max(1);
    write_durably(data_dir, INCARNATION_FILE, &format!("{value:x}\n")).map_err(io)?;
    Ok(value)
}

/// File holding the gossip generation of this data directory's last start.
pub const GENERATION_FILE: &str = "GENERATION";

/// The gossip generation of this start: the wall clock in microseconds,
/// but always above the generation recorded by the previous start, which
/// is recorded durably before this one is returned.
///
/// Peers take the higher of two generations of one node id for the newer
/// process (durable membership keeps its record; the younger of two twins
/// stops), so a clock set back between two starts (a VM restored, NTP
/// stepping) must not make a restarted node look older than its previous
/// run. Cassandra bumps its generation the same way. A damaged file only
/// loses that lower bound: it is logged and replaced.
///
/// # Errors
/// [`NodeIdError::Io`] when the file cannot be written.
pub fn generation(data_dir: &Path, now_micros: u64) -> Result<u64, NodeIdError> {
    let path = data_dir.join(GENERATION_FILE);
    let io = |source| NodeIdError::Io {
        path: path.clone(),
        source,
    };
    let previous = match fs::read_to_string(&path) {
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(value) => Some(value),
            Err(_) => {
                tracing::warn!(
                    path = %path.display(),
                    content = %text.chars().take(32).collect::<String>(),
                    "the last gossip generation is not a number; using the clock alone"
                );
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let generation = next_generation(previous, now_micros);
    write_durably(data_dir, GENERATION_FILE, &format!("{generation}\n")).map_err(io)?;
    Ok(generation)
}

/// This start's generation: `now`, or one above the previous start's when
/// the clock is not past it.
#[must_use]
pub fn next_generation(previous: Option<u64>, now_micros: u64) -> u64 {
    match previous {
        Some(previous) if previous >= now_micros => previous.saturating_add(1),
        _ => now_micros.max(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_records_the_id_and_restarts_keep_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let id = load_or_init(&data, Some("strata-0")).expect("first start");
        assert_eq!(id.as_str(), "strata-0");
        assert_eq!(
            load_or_init(&data, None).expect("restart").as_str(),
            "strata-0"
        );
        assert_eq!(
            load_or_init(&data, Some("strata-0"))
                .expect("same flag")
                .as_str(),
            "strata-0"
        );
    }

    #[test]
    fn contradicting_flag_and_missing_id_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            load_or_init(dir.path(), None),
            Err(NodeIdError::Missing { .. })
        ));
        load_or_init(dir.path(), Some("strata-0")).expect("first start");
        let err = load_or_init(dir.path(), Some("strata-1")).expect_err("mismatch");
        assert!(
            err.to_string().contains("belongs to node \"strata-0\""),
            "{err}"
        );
        assert!(matches!(
            load_or_init(tempfile::tempdir().expect("tempdir").path(), Some("Bad/Id")),
            Err(NodeIdError::Invalid(_))
        ));
    }

    #[test]
    fn the_incarnation_is_kept_and_a_damaged_one_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = incarnation(dir.path()).expect("made");
        assert_ne!(first, 0);
        assert_eq!(incarnation(dir.path()).expect("kept"), first);
        fs::write(dir.path().join(INCARNATION_FILE), "not hex").expect("damage");
        let err = incarnation(dir.path()).expect_err("damaged").to_string();
        assert!(
            err.contains(INCARNATION_FILE) && err.contains("hexadecimal"),
            "{err}"
        );
        assert!(!err.contains("node id"), "{err}");
    }

    #[test]
    fn a_start_s_generation_is_above_the_last_one_even_when_the_clock_went_back() {
        assert_eq!(next_generation(None, 5_000), 5_000);
        assert_eq!(next_generation(Some(4_000), 5_000), 5_000);
        assert_eq!(next_generation(Some(9_000), 5_000), 9_001);
        assert_eq!(next_generation(Some(5_000), 5_000), 5_001);
        assert_eq!(next_generation(None, 0), 1);
        assert_eq!(next_generation(Some(u64::MAX), 5), u64::MAX);

        let dir = tempfile::tempdir().expect("tempdir");
        let first = generation(dir.path(), 1_000_000).expect("first start");
        assert_eq!(first, 1_000_000);
        // The clock was set back an hour before the restart.
        let second = generation(dir.path(), 400_000).expect("restart");
        assert_eq!(
            second, 1_000_001,
            "a restart never gossips an older generation"
        );
        let third = generation(dir.path(), 2_000_000).expect("clock ahead again");
        assert_eq!(third, 2_000_000);
        assert_eq!(
            fs::read_to_string(dir.path().join(GENERATION_FILE))
                .expect("recorded")
                .trim(),
            "2000000"
        );
        // A damaged record loses only the lower bound.
        fs::write(dir.path().join(GENERATION_FILE), "garbage").expect("damage");
        assert_eq!(
            generation(dir.path(), 1_500_000).expect("damaged"),
            1_500_000
        );
        assert_eq!(
            generation(dir.path(), 1_000_000).expect("recorded again"),
            1_500_001
        );
    }
}
