//! Dot counters that survive restarts.
//!
//! A node's dot counter must never repeat: two writes with one dot would be
//! taken for the same write. The node reserves counters in blocks: the file
//! `<data_dir>/DOT_RESERVED` records the end of the reserved block, written
//! and fsynced before any counter in the block is used. After a crash the
//! node starts above the recorded reservation, skipping at most one unused
//! block (counters are 64-bit; gaps cost nothing). A node without the file
//! (new, or its disk was lost) starts at the wall clock in microseconds,
//! above any counter an earlier incarnation with its id can have issued.
//!
//! Every start also starts at the wall clock when that is above the
//! recorded reservation, so counters never fall behind the clock. That
//! covers a data directory restored from a backup or volume snapshot: its
//! reservation is as old as the copy, while the node went on issuing
//! counters (now on its peers) after it was taken; starting from the old
//! reservation would issue them again, and a peer would take a new write
//! for the old one it already holds and drop it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use strata_cluster::{NodeId, VersionVector, next_counter};

/// Counters reserved per fsync of the reservation file.
const BLOCK: u64 = 1 << 20;
const FILE: &str = "DOT_RESERVED";

/// Why the reservation file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DotError {
    /// IO on the reservation file.
    #[error("dot reservation file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The client's context claims a dot this node never issued, or the
    /// counter is used up.
    #[error(transparent)]
    Refused(#[from] strata_cluster::Error),
    /// The file holds something other than a number.
    #[error(
        "dot reservation file {path} is corrupt: {content:?}; delete it to start this node's \
         counter at the wall clock in microseconds, as for a new node (safe unless this \
         machine's clock was set back since the node first started)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What it holds.
        content: String,
    },
}

/// Issues this node's dot counters.
#[derive(Debug)]
pub struct DotCounter {
    node: NodeId,
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Last counter issued.
    issued: u64,
    /// Counters up to this are reserved durably.
    reserved: u64,
}

impl DotCounter {
    /// Loads the reservation of `node` from `data_dir`.
    ///
    /// # Errors
    /// [`DotError`] when the file cannot be read or is corrupt.
    pub fn open(data_dir: &Path, node: NodeId) -> Result<Self, DotError> {
        Self::open_at(data_dir, node, crate::clock::now_micros())
    }

    /// [`DotCounter::open`] with the wall clock's reading given.
    ///
    /// # Errors
    /// As [`DotCounter::open`].
    pub fn open_at(data_dir: &Path, node: NodeId, now_micros: u64) -> Result<Self, DotError> {
        let path = data_dir.join(FILE);
        let reserved = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<u64>().map_err(|_| DotError::Corrupt {
                path: path.clone(),
                content: text.chars().take(64).collect(),
            })?,
            // No reservation: a new node, or one whose data was lost. It
            // may have issued counters before, so start at the wall clock
            // in microseconds: no node issues more than one dot per
            // microsecond, so this is above anything it issued.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => now_micros,
            Err(source) => return Err(DotError::Io { path, source }),
        };
        Ok(Self {
            node,
            path,
            // Everything up to the old reservation may have been used, and
            // everything up to the clock if the reservation is a restored
            // copy's (the first counter issued then reserves a new block).
            state: Mutex::new(State {
                issued: reserved.max(now_micros),
                reserved,
            }),
        })
    }

    /// The counter for a new write whose client sent `claimed`: one above
    /// every counter issued before.
    ///
    /// # Errors
    /// [`DotError::Refused`] when `claimed` holds a dot of this node beyond
    /// anything issued (see [`next_counter`]); [`DotError::Io`] when a new
    /// block cannot be reserved durably.
    pub fn next(&self, claimed: &VersionVector) -> Result<u64, DotError> {
        let mut state = self.state.lock().expect("dot counter lock");
        let counter = next_counter(state.issued, claimed, &self.node)?;
        if counter > state.reserved {
            let reserved = counter.saturating_add(BLOCK);
            write_durably(&self.path, reserved)?;
            state.reserved = reserved;
        }
        state.issued = counter;
        Ok(counter)
    }
}

fn write_durably(path: &Path, value: u64) -> Result<(), DotError> {
    use std::io::Write as _;
    let io = |source| DotError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(value.to_string().as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeId {
        NodeId::new("strata-0").expect("id")
    }

    #[test]
    fn counters_increase_and_never_repeat_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = VersionVector::new();
        let first = DotCounter::open(dir.path(), node()).expect("open");
        let a = first.next(&empty).expect("next");
        let b = first.next(&empty).expect("next");
        assert!(b > a);
        drop(first); // a crash: nothing more is written
        let second = DotCounter::open(dir.path(), node()).expect("reopen");
        let c = second.next(&empty).expect("next");
        assert!(c > b, "{c} after restart must exceed {b}");
    }

    #[test]
    fn forged_contexts_are_refused_and_never_reach_the_reservation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dots = DotCounter::open(dir.path(), node()).expect("open");
        let start = dots.next(&VersionVector::new()).expect("next");
        let reserved = std::fs::read_to_string(dir.path().join(FILE)).expect("read");
        for claim in [start + 1, start + 5 * BLOCK, u64::MAX] {
            let forged = VersionVector::from_entries([(node(), claim, 0)]);
            assert!(matches!(
                dots.next(&forged),
                Err(DotError::Refused(
                    strata_cluster::Error::ContextAhead { .. }
                ))
            ));
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FILE)).expect("read"),
            reserved
        );
        let honest = VersionVector::from_entries([(node(), start, 0)]);
        assert_eq!(dots.next(&honest).expect("next"), start + 1);
    }

    #[test]
    fn a_node_without_a_reservation_starts_above_its_earlier_counters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let before = DotCounter::open(dir.path(), node()).expect("open");
        let issued = before.next(&VersionVector::new()).expect("next");
        drop(before);
        // The disk is lost: the reservation file is gone.
        std::fs::remove_file(dir.path().join(FILE)).expect("wipe");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let after = DotCounter::open(dir.path(), node()).expect("open");
        assert!(after.next(&VersionVector::new()).expect("next") > issued);
    }

    #[test]
    fn a_corrupt_reservation_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE), "not a number").expect("write");
        let refused = DotCounter::open(dir.path(), node()).expect_err("corrupt");
        assert!(matches!(refused, DotError::Corrupt { .. }));
        // It says how to go on.
        assert!(refused.to_string().contains("delete it"), "{refused}");
    }

    #[test]
    fn a_restored_reservation_does_not_issue_counters_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = VersionVector::new();
        let start = 1_000_000_u64;
        let dots = DotCounter::open_at(dir.path(), node(), start).expect("open");
        dots.next(&empty).expect("next");
        // A backup of the data directory, taken now.
        let backup = std::fs::read_to_string(dir.path().join(FILE)).expect("read");
        // The node goes on past its reserved block (its peers hold these).
        let mut last = 0;
        for _ in 0..=BLOCK {
            last = dots.next(&empty).expect("next");
        }
        assert!(last > backup.parse::<u64>().expect("number"));
        drop(dots);
        // Restored from the backup a minute later, by the clock.
        std::fs::write(dir.path().join(FILE), &backup).expect("restore");
        let restored = DotCounter::open_at(dir.path(), node(), start + 60_000_000).expect("reopen");
        let next = restored.next(&empty).expect("next");
        assert!(next > last, "{next} after the restore must exceed {last}");
        // The new block is reserved durably above it.
        let reserved: u64 = std::fs::read_to_string(dir.path().join(FILE))
            .expect("read")
            .parse()
            .expect("number");
        assert!(reserved >= next, "{reserved} < {next}");
        // A clock behind the reservation changes nothing: the reservation holds.
        drop(restored);
        let behind = DotCounter::open_at(dir.path(), node(), 5).expect("reopen");
        assert!(behind.next(&empty).expect("next") > reserved);
    }
}
