//! Copying one token range from one place to another, throttled: from this
//! node's store or a peer's `StreamRange`, to this node's store or a peer's
//! `ApplyBatch`. Applying is a merge, so copying twice, or copying while
//! coordinators write the same keys, is safe.

use std::sync::Arc;
use std::time::Duration;

use strata_cluster::{Siblings, TokenRange};
use strata_proto::v1::{self, KeyVersionsBatch, StreamRangeRequest};
use tonic::transport::Channel;

use crate::storage::{Storage, StorageError, version_from_proto};
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

/// Copies every key of `range` from `source` to `sink`, reporting each
/// batch to `progress`; `timeout` bounds each batch, not the whole copy.
pub(crate) async fn copy_range(
    range: TokenRange,
    source: &Source,
    sink: &Sink,
    throttle: &mut Throttle,
    batch_bytes: usize,
    timeout: Duration,
    progress: &mut (dyn FnMut(Copied) + Send),
) -> Result<Copied, StreamError> {
    let mut total = Copied::default();
    let mut batches = open(range, source, batch_bytes).await?;
    while let Some(batch) = batches.next(timeout).await? {
        let copied = Copied {
            keys: batch.entries.len() as u64,
            bytes: prost::Message::encoded_len(&batch) as u64,
        };
        apply(batch, sink, timeout).await?;
        total.keys += copied.keys;
        total.bytes += copied.bytes;
        progress(copied);
        throttle.consume(copied.bytes).await;
    }
    Ok(total)
}

enum Batches {
    Local(tokio::sync::mpsc::Receiver<Result<KeyVersionsBatch, StorageError>>),
    Remote(Box<tonic::Streaming<KeyVersionsBatch>>),
}

async fn open(range: TokenRange, source: &Source, limit: usize) -> Result<Batches, StreamError> {
    match source {
        Source::Local(storage) => Ok(Batches::Local(storage.batches(range, Vec::new(), limit))),
        Source::Remote(channel) => {
            let request = StreamRangeRequest {
                range: Some(v1::TokenRange {
                    start: range.start.0,
                    end: range.end.0,
                }),
                start_after: Vec::new().into(),
                max_batch_bytes: u32::try_from(limit).unwrap_or(u32::MAX),
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

async fn apply(batch: KeyVersionsBatch, sink: &Sink, timeout: Duration) -> Result<(), StreamError> {
    match sink {
        Sink::Local(storage) => {
            let mut entries = Vec::with_capacity(batch.entries.len());
            for entry in batch.entries {
                let versions = entry
                    .versions
                    .into_iter()
                    .map(version_from_proto)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        StreamError::Source(ReplicaError::BadReply(format!(
                            "unreadable versions: {e}"
                        )))
                    })?;
                entries.push((entry.key, Siblings::from_versions(versions)));
            }
            futures::future::try_join_all(
                entries
                    .iter()
                    .map(|(key, siblings)| storage.apply_queued(key, siblings)),
            )
            .await?;
            Ok(())
        }
        Sink::Remote(channel) => {
            let mut request = tonic::Request::new(batch);
            request.set_timeout(timeout);
            replica_client(channel.clone())
                .apply_batch(request)
                .await
                .map(|_| ())
                .map_err(|s| StreamError::Sink(ReplicaError::from_status(&s)))
        }
    }
}
