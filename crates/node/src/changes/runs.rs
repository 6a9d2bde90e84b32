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

/// Received keys as sorted runs of engine key and stored value, and the
/// load of the previous runs still in progress.
#[derive(Default)]
pub(crate) struct Runs {
    /// Each run strictly ascending; a key not above the last starts a new
    /// one (the second interval of a wrapping range, or a peer's disorder).
    runs: Vec<Vec<(Vec<u8>, Bytes)>>,
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
        let ascending = self
            .runs
            .last()
            .and_then(|run| run.last())
            .is_some_and(|(last, _)| *last < key);
        match self.runs.last_mut() {
            Some(run) if ascending => run.push((key, value)),
            _ => self.runs.push(vec![(key, value)]),
        }
    }

    /// Waits for the previous load, then starts loading what was gathered.
    async fn load(&mut self, storage: &Arc<Storage>) -> Result<(), RunError> {
        self.wait().await?;
        if self.runs.is_empty() {
            return Ok(());
        }
        let runs = std::mem::take(&mut self.runs);
        self.bytes = 0;
        let storage = Arc::clone(storage);
        // A background thread (`background.rs`): building and writing a
        // 16 MiB table is a burst that client requests must not wait
        // behind.
        let loading = crate::background::start("strata-load", move || {
            let mut ingested = 0;
            for run in &runs {
                ingested += storage.ingest(run)?.ingested;
            }
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
