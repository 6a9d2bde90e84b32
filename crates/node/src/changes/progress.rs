//! `<data_dir>/CHANGE`: the topology change this node runs and the
//! transfers it has finished, appended and fsynced one line at a time, so a
//! node killed mid-change resumes without streaming a finished range again.
//!
//! Format: a first line `<kind> <operation id>`, then one line per finished
//! transfer, `<start hex> <end hex> <target node>`. A torn last line (a
//! crash mid-append) is ignored.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use strata_cluster::{NodeId, Transfer};

const FILE: &str = "CHANGE";

/// The durable record of one change.
#[derive(Debug)]
pub(crate) struct Progress {
    path: PathBuf,
    /// The operation's id (kept across restarts).
    pub(crate) id: String,
    done: HashSet<(u64, u64, NodeId)>,
}

impl Progress {
    /// The record of a `kind` change in `dir`: resumed when one of that
    /// kind was under way, started afresh (with `new_id`) otherwise.
    pub(crate) fn open(dir: &Path, kind: &str, new_id: &str) -> std::io::Result<Self> {
        let path = dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut lines = text.lines();
        if let Some((found, id)) = lines.next().and_then(|l| l.split_once(' '))
            && found == kind
        {
            let mut done = HashSet::new();
            for line in lines {
                let fields: Vec<&str> = line.split(' ').collect();
                if let [start, end, to] = fields[..]
                    && let (Ok(start), Ok(end), Ok(to)) = (
                        u64::from_str_radix(start, 16),
                        u64::from_str_radix(end, 16),
                        NodeId::new(to),
                    )
                {
                    done.insert((start, end, to));
                }
            }
            return Ok(Self {
                path,
                id: id.to_owned(),
                done,
            });
        }
        write_synced(&path, format!("{kind} {new_id}\n").as_bytes(), false)?;
        Ok(Self {
            path,
            id: new_id.to_owned(),
            done: HashSet::new(),
        })
    }

    /// Whether `transfer` finished before.
    pub(crate) fn is_done(&self, transfer: &Transfer) -> bool {
        self.done.contains(&key(transfer))
    }

    /// Records `transfer` as finished, durably.
    pub(crate) fn finish(&mut self, transfer: &Transfer) -> std::io::Result<()> {
        let line = format!(
            "{:x} {:x} {}\n",
            transfer.range.start.0, transfer.range.end.0, transfer.to
        );
        write_synced(&self.path, line.as_bytes(), true)?;
        self.done.insert(key(transfer));
        Ok(())
    }

    /// How many transfers finished.
    pub(crate) fn done(&self) -> usize {
        self.done.len()
    }

    /// The change is complete: forget it.
    pub(crate) fn remove(self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// The progress kind of removing `target`.
pub(crate) fn removal_kind(target: &NodeId) -> String {
    format!("remove-{target}")
}

/// The node whose removal `dir`'s progress file records, if any.
pub(crate) fn pending_removal(dir: &Path) -> Option<NodeId> {
    let text = std::fs::read_to_string(dir.join(FILE)).ok()?;
    let (kind, _) = text.lines().next()?.split_once(' ')?;
    NodeId::new(kind.strip_prefix("remove-")?).ok()
}

fn key(t: &Transfer) -> (u64, u64, NodeId) {
    (t.range.start.0, t.range.end.0, t.to.clone())
}

pub(super) fn write_synced(path: &Path, bytes: &[u8], append: bool) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    if !append && let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A transfer of `(start, end]` to `to`, for tests.
#[cfg(test)]
fn transfer(start: u64, end: u64, to: &str) -> Transfer {
    use strata_cluster::{Token, TokenRange};
    Transfer {
        range: TokenRange {
            start: Token(start),
            end: Token(end),
        },
        to: NodeId::new(to).expect("id"),
        sources: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_transfers_survive_a_restart_and_a_torn_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut p = Progress::open(dir.path(), "join", "op-1").expect("open");
        p.finish(&transfer(1, 5, "node-3")).expect("finish");
        p.finish(&transfer(9, 2, "node-3")).expect("finish");
        drop(p);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE))
            .expect("open");
        file.write_all(b"a b").expect("torn");
        let p = Progress::open(dir.path(), "join", "op-2").expect("reopen");
        assert_eq!(p.id, "op-1", "the change resumes under its id");
        assert_eq!(p.done(), 2);
        assert!(p.is_done(&transfer(9, 2, "node-3")));
        assert!(!p.is_done(&transfer(5, 9, "node-3")));
        // Another kind of change starts afresh.
        let other = Progress::open(dir.path(), "decommission", "op-3").expect("open");
        assert_eq!((other.id.as_str(), other.done()), ("op-3", 0));
        other.remove().expect("remove");
        assert!(!dir.path().join(FILE).exists());
    }
}
