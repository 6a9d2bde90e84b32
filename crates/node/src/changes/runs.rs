//! Streamed keys gathered into sorted runs and loaded into this node's
//! store as tables (`Storage::ingest`), one run loading in the background
//! while the next is received: how a range arrives at the node gaining it,
//! whether this node pulls it (a join, `stream.rs`) or a peer pushes it
//! (`Replica.IngestRange`, from a decommission or a removal).

use std::sync::Arc;

use prost::bytes::Bytes;
use strata_cluster::encode_engine_key;
use strata_proto::v1::KeyVersionsBatch;

use crate::storage::{Storage, StorageError, encode, siblings_from_proto, validate};

/// Bytes of a sorted run gathered before it is loaded.
const RUN_BYTES: usize = 16 << 20;

/// Why keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// A key or its versions is unreadable: the sender's fault.
    #[error("{0}")]
    Bad(String),
    /// This node's store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What [`Runs::finish`] loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Loaded {
    /// Keys received.
    pub keys: u64,
    /// Of those, loaded as tables; the rest were merged through the write
    /// path.
    pub ingested: u64,
}

/// Ascending runs loaded as they arrived, at most: a range's keys come in
/// one (two when it wraps past the ring's end), each a table of a narrow
/// key span. More is a sender's disorder, sorted into one.
const MAX_RUNS: usize = 4;

/// One engine key and its stored value.
type Entry = (Vec<u8>, Bytes);

/// Received keys not loaded yet, and the load of the previous ones still
/// in progress.
#[derive(Default)]
pub(crate) struct Runs {
    keys: Vec<Entry>,
    /// Where a key not above the one before it starts a new ascending run.
    starts: Vec<usize>,
    bytes: usize,
    loading: Option<crate::background::Running<Result<u64, StorageError>>>,
    loaded: Loaded,
}

impl Runs {
    /// Validates a received batch and appends it; loads what was gathered
    /// once it reaches a run's size.
    pub(crate) async fn add(
        &mut self,
        batch: KeyVersionsBatch,
        storage: &Arc<Storage>,
    ) -> Result<(), RunError> {
        for entry in batch.stored {
            crate::request::validate_key(&entry.key).map_err(|e| RunError::Bad(e.to_string()))?;
            validate(&entry.value)
                .map_err(|e| RunError::Bad(format!("unreadable versions: {e}")))?;
            self.push(encode_engine_key(&entry.key), entry.value);
        }
        // From a node that predates the stored form.
        for entry in batch.entries {
            crate::request::validate_key(&entry.key).map_err(|e| RunError::Bad(e.to_string()))?;
            let versions = siblings_from_proto(entry.versions)
                .map_err(|e| RunError::Bad(format!("unreadable versions: {e}")))?;
            let value = encode(&versions);
            self.push(encode_engine_key(&entry.key), value.into());
        }
        if self.bytes >= RUN_BYTES {
            self.load(storage).await?;
        }
        Ok(())
    }

    /// Loads what is left and waits for every load: everything received is
    /// durable when this returns.
    pub(crate) async fn finish(mut self, storage: &Arc<Storage>) -> Result<Loaded, RunError> {
        self.load(storage).await?;
        self.wait().await?;
        Ok(self.loaded)
    }

    fn push(&mut self, key: Vec<u8>, value: Bytes) {
        self.bytes += key.len() + value.len();
        self.loaded.keys += 1;
        if self.keys.last().is_some_and(|(last, _)| *last >= key) {
            self.starts.push(self.keys.len());
        }
        self.keys.push((key, value));
    }

    /// Waits for the previous load, then starts loading what was gathered.
    async fn load(&mut self, storage: &Arc<Storage>) -> Result<(), RunError> {
        self.wait().await?;
        if self.keys.is_empty() {
            return Ok(());
        }
        let keys = std::mem::take(&mut self.keys);
        let starts = std::mem::take(&mut self.starts);
        self.bytes = 0;
        let storage = Arc::clone(storage);
        // A background thread (`background.rs`): building and writing a
        // 16 MiB table is a burst that client requests must not wait
        // behind.
        let loading = crate::background::start("strata-load", move || {
            let (runs, again) = arrange(keys, &starts);
            let mut ingested = 0;
            for run in &runs {
                ingested += storage.ingest(run)?.ingested;
            }
            storage.merge_all(again.iter())?;
            Ok(ingested)
        })
        .map_err(StorageError::from)?;
        self.loading = Some(loading);
        Ok(())
    }

    async fn wait(&mut self) -> Result<(), RunError> {
        if let Some(loading) = self.loading.take() {
            self.loaded.ingested += loading.wait().await.map_err(StorageError::from)??;
        }
        Ok(())
    }
}

/// The tables to load `keys` as, and the entries to merge instead. With
/// at most [`MAX_RUNS`] ascending runs (new ones at `starts`), those runs;
/// with more, the keys sorted into one run of each key's first entry, the
/// entries repeating a key merged: one table per load however a sender
/// orders or repeats its keys (a table per run would let a peer make the
/// store build thousands of tiny tables).
fn arrange(mut keys: Vec<Entry>, starts: &[usize]) -> (Vec<Vec<Entry>>, Vec<Entry>) {
    if starts.len() < MAX_RUNS {
        let mut runs = Vec::with_capacity(starts.len() + 1);
        for &start in starts.iter().rev() {
            runs.push(keys.split_off(start));
        }
        runs.push(keys);
        runs.reverse();
        return (runs, Vec::new());
    }
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    let mut run: Vec<Entry> = Vec::with_capacity(keys.len());
    let mut again = Vec::new();
    for entry in keys {
        match run.last() {
            Some((last, _)) if *last == entry.0 => again.push(entry),
            _ => run.push(entry),
        }
    }
    (vec![run], again)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(keys: &[&str]) -> Vec<Entry> {
        keys.iter()
            .enumerate()
            .map(|(i, k)| {
                (
                    k.as_bytes().to_vec(),
                    Bytes::from(vec![u8::try_from(i).expect("small")]),
                )
            })
            .collect()
    }

    fn starts(keys: &[Entry]) -> Vec<usize> {
        (1..keys.len())
            .filter(|&i| keys[i - 1].0 >= keys[i].0)
            .collect()
    }

    fn names(run: &[Entry]) -> Vec<&str> {
        run.iter()
            .map(|(k, _)| std::str::from_utf8(k).expect("utf-8"))
            .collect()
    }

    #[test]
    fn a_few_ascending_runs_load_as_they_arrived() {
        let keys = entries(&["c", "d", "a", "b"]);
        let (runs, again) = arrange(keys.clone(), &starts(&keys));
        let runs: Vec<_> = runs.iter().map(|r| names(r)).collect();
        assert_eq!(
            runs,
            [vec!["c", "d"], vec!["a", "b"]],
            "a wrapping range: two tables"
        );
        assert!(again.is_empty());
        let keys = entries(&["a", "b", "c"]);
        let (runs, _) = arrange(keys.clone(), &starts(&keys));
        assert_eq!(runs.len(), 1);
    }

    #[test]
    fn disorder_and_repeats_become_one_table_and_merges() {
        let keys = entries(&["e", "d", "c", "b", "a", "c", "a"]);
        let (runs, again) = arrange(keys.clone(), &starts(&keys));
        assert_eq!(runs.len(), 1, "one table, not one per key");
        assert_eq!(names(&runs[0]), ["a", "b", "c", "d", "e"]);
        assert_eq!(names(&again), ["a", "c"], "each repeat merged");
        // Each key's first entry goes in the table (the sort is stable).
        assert_eq!(runs[0][0].1.as_ref(), [4]);
        assert_eq!(again[0].1.as_ref(), [6]);
    }
}
