//! Copying one token range from one place to another, throttled: from this
//! node's store or a peer's `StreamRange`, to this node's store or a peer's
//! `ApplyBatch`. Applying is a merge, so copying twice, or copying while
//! coordinators write the same keys, is safe.

use std::sync::Arc;
use std::time::Duration;

use prost::bytes::Bytes;
use strata_cluster::{TokenRange, encode_engine_key};
use strata_proto::v1::{self, KeyVersionsBatch, StreamRangeRequest};
use tonic::transport::Channel;

use crate::storage::{Storage, StorageError, encode, siblings_from_proto, validate};
use crate::throttle::Throttle;
use crate::transport::{ReplicaError, replica_client};

/// Where a range's keys come from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// This node's store.
    Local(Arc<Storage>),
    /// A peer, through `Replica.StreamRange`.
    Remote(Channel),
}

/// Where they go.
#[derive(Debug, Clone)]
pub(crate) enum Sink {
    /// This node's store.
    Local(Arc<Storage>),
    /// A peer, through `Replica.ApplyBatch`.
    Remote(Channel),
}

/// What a copy moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Keys.
    pub keys: u64,
    /// Encoded bytes of their versions.
    pub bytes: u64,
}

/// Why a copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The source failed or sent something unreadable.
    #[error("reading the range: {0}")]
    Source(ReplicaError),
    /// The target refused or could not be reached.
    #[error("writing the range: {0}")]
    Sink(ReplicaError),
    /// This node's store failed.
    #[error("local store: {0}")]
    Storage(#[from] StorageError),
}

/// Bytes of a sorted run gathered before it is loaded into the local store.
const RUN_BYTES: usize = 16 << 20;

/// Batches a throttled copy aims to send per second.
const BATCHES_PER_SECOND: u64 = 256;
/// Smallest batch size [`batch_bytes`] picks.
const MIN_BATCH_BYTES: usize = 64 << 10;
/// Largest, and the size of an unthrottled copy's batches.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// The batch size of a copy limited to `bytes_per_second` (0: unlimited):
/// about 256 batches a second, from 64 KiB to 1 MiB. Each batch
/// is one burst of work on the runtime's workers at both ends (encoding,
/// one socket write, decoding, validating), and a client request that
/// lands behind it waits; under a throttle the same bytes in smaller
/// batches keep those bursts short (docs/benchmarks.md, "Smaller batches
/// under a throttle"). Unthrottled, large batches keep per-batch costs
/// small.
#[must_use]
pub fn batch_bytes(bytes_per_second: u64) -> usize {
    if bytes_per_second == 0 {
        return MAX_BATCH_BYTES;
    }
    usize::try_from(bytes_per_second / BATCHES_PER_SECOND)
        .unwrap_or(MAX_BATCH_BYTES)
        .clamp(MIN_BATCH_BYTES, MAX_BATCH_BYTES)
}

/// Copies every key of `range` from `source` to `sink`, reporting each
/// batch to `progress`; `timeout` bounds each batch, not the whole copy.
/// Into this node's store, keys travel in their stored form and are loaded
/// as tables (`Storage::ingest`), one run loading while the next arrives;
/// everything is durable when this returns.
pub(crate) async fn copy_range(
    range: TokenRange,
    source: &Source,
    sink: &Sink,
    throttle: &std::sync::Mutex<Throttle>,
    batch_bytes: usize,
    timeout: Duration,
    progress: &mut (dyn FnMut(Copied) + Send),
) -> Result<Copied, StreamError> {
    let mut total = Copied::default();
    let stored_form = matches!(sink, Sink::Local(_));
    let mut batches = open(range, source, batch_bytes, stored_form).await?;
    let mut runs = Runs::default();
    while let Some(batch) = batches.next(timeout).await? {
        let copied = Copied {
            keys: (batch.entries.len() + batch.stored.len()) as u64,
            bytes: prost::Message::encoded_len(&batch) as u64,
        };
        match sink {
            Sink::Local(storage) => {
                runs.add(batch)?;
                if runs.bytes >= RUN_BYTES {
                    runs.load(storage).await?;
                }
            }
            Sink::Remote(channel) => apply_remote(batch, channel, timeout).await?,
        }
        total.keys += copied.keys;
        total.bytes += copied.bytes;
        progress(copied);
        let until = throttle
            .lock()
            .expect("throttle lock")
            .reserve(copied.bytes);
        tokio::time::sleep_until(until).await;
    }
    if let Sink::Local(storage) = sink {
        runs.load(storage).await?;
        runs.wait().await?;
    }
    Ok(total)
}

/// Received keys as sorted runs of engine key and stored value, and the
/// load of the previous runs still in progress.
#[derive(Default)]
struct Runs {
    /// Each run strictly ascending; a key not above the last starts a new
    /// one (the second interval of a wrapping range, or a peer's disorder).
    runs: Vec<Vec<(Vec<u8>, Bytes)>>,
    bytes: usize,
    loading: Option<crate::background::Running<Result<(), StorageError>>>,
}

impl Runs {
    /// Validates a received batch and appends it.
    fn add(&mut self, batch: KeyVersionsBatch) -> Result<(), StreamError> {
        let bad = |what: String| StreamError::Source(ReplicaError::BadReply(what));
        for entry in batch.stored {
            crate::request::validate_key(&entry.key).map_err(|e| bad(e.to_string()))?;
            validate(&entry.value).map_err(|e| bad(format!("unreadable versions: {e}")))?;
            self.push(encode_engine_key(&entry.key), entry.value);
        }
        // From a node that predates the stored form.
        for entry in batch.entries {
            crate::request::validate_key(&entry.key).map_err(|e| bad(e.to_string()))?;
            let versions = siblings_from_proto(entry.versions)
                .map_err(|e| bad(format!("unreadable versions: {e}")))?;
            let value = encode(&versions);
            self.push(encode_engine_key(&entry.key), value.into());
        }
        Ok(())
    }

    fn push(&mut self, key: Vec<u8>, value: Bytes) {
        self.bytes += key.len() + value.len();
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
    async fn load(&mut self, storage: &Arc<Storage>) -> Result<(), StreamError> {
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
            for run in &runs {
                storage.ingest(run)?;
            }
            Ok(())
        })
        .map_err(StorageError::from)?;
        self.loading = Some(loading);
        Ok(())
    }

    async fn wait(&mut self) -> Result<(), StreamError> {
        if let Some(loading) = self.loading.take() {
            loading.wait().await.map_err(StorageError::from)??;
        }
        Ok(())
    }
}

async fn open(
    range: TokenRange,
    source: &Source,
    limit: usize,
    stored_form: bool,
) -> Result<Batches, StreamError> {
    match source {
        Source::Local(storage) => Ok(Batches::Local(storage.batches(
            range,
            Vec::new(),
            limit,
            stored_form,
        ))),
        Source::Remote(channel) => {
            let request = StreamRangeRequest {
                range: Some(v1::TokenRange {
                    start: range.start.0,
                    end: range.end.0,
                }),
                start_after: Vec::new().into(),
                max_batch_bytes: u32::try_from(limit).unwrap_or(u32::MAX),
                stored_form,
            };
            let stream = replica_client(channel.clone())
                .stream_range(request)
                .await
                .map_err(|s| StreamError::Source(ReplicaError::from_status(&s)))?
                .into_inner();
            Ok(Batches::Remote(Box::new(stream)))
        }
    }
}

enum Batches {
    Local(tokio::sync::mpsc::Receiver<Result<KeyVersionsBatch, StorageError>>),
    Remote(Box<tonic::Streaming<KeyVersionsBatch>>),
}

impl Batches {
    async fn next(&mut self, timeout: Duration) -> Result<Option<KeyVersionsBatch>, StreamError> {
        match self {
            Self::Local(rx) => rx.recv().await.transpose().map_err(StreamError::from),
            Self::Remote(stream) => match tokio::time::timeout(timeout, stream.message()).await {
                Ok(Ok(batch)) => Ok(batch),
                Ok(Err(status)) => Err(StreamError::Source(ReplicaError::from_status(&status))),
                Err(_) => Err(StreamError::Source(ReplicaError::Timeout(timeout))),
            },
        }
    }
}

async fn apply_remote(
    batch: KeyVersionsBatch,
    channel: &Channel,
    timeout: Duration,
) -> Result<(), StreamError> {
    let mut request = tonic::Request::new(batch);
    request.set_timeout(timeout);
    replica_client(channel.clone())
        .apply_batch(request)
        .await
        .map(|_| ())
        .map_err(|s| StreamError::Sink(ReplicaError::from_status(&s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttled_copies_send_small_batches_and_unthrottled_ones_large() {
        assert_eq!(batch_bytes(0), 1 << 20, "unthrottled");
        assert_eq!(batch_bytes(32 << 20), 128 << 10, "the default limit");
        assert_eq!(batch_bytes(1 << 20), 64 << 10, "the smallest batch");
        assert_eq!(batch_bytes(1), 64 << 10);
        assert_eq!(batch_bytes(512 << 20), 1 << 20, "the largest batch");
        assert_eq!(batch_bytes(u64::MAX), 1 << 20);
    }
}
