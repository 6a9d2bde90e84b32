//! Copying one token range from one place to another, throttled: from this
//! node's store or a peer's `StreamRange`, to this node's store or a peer's
//! `IngestRange` (`ApplyBatch` for a peer that predates it). Loading is a
//! merge, so copying twice, or copying while coordinators write the same
//! keys, is safe.

use std::sync::Arc;
use std::time::Duration;

use strata_cluster::TokenRange;
use strata_proto::v1::{self, IngestRangeResponse, KeyVersionsBatch, StreamRangeRequest};
use tonic::transport::Channel;

use super::runs::{RunError, Runs};
use crate::storage::{Storage, StorageError};
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
    /// A peer, through `Replica.IngestRange` (or `Replica.ApplyBatch`).
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

impl From<RunError> for StreamError {
    /// What a range's source sent is unreadable, or this node's store
    /// failed loading it.
    fn from(e: RunError) -> Self {
        match e {
            RunError::Bad(why) => Self::Source(ReplicaError::BadReply(why)),
            RunError::Storage(e) => Self::Storage(e),
        }
    }
}

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
/// Keys travel in their stored form and are loaded as tables, whether into
/// this node's store or a peer's (`runs.rs`), unless the peer predates
/// `IngestRange`; everything is durable at the sink when this returns.
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
    let mut target = Target::open(sink, timeout).await?;
    let stored_form = !matches!(target, Target::Apply(_));
    let mut batches = open(range, source, batch_bytes, stored_form).await?;
    while let Some(batch) = batches.next(timeout).await? {
        let copied = Copied {
            keys: (batch.entries.len() + batch.stored.len()) as u64,
            bytes: prost::Message::encoded_len(&batch) as u64,
        };
        target.deliver(batch, timeout).await?;
        total.keys += copied.keys;
        total.bytes += copied.bytes;
        progress(copied);
        let until = throttle
            .lock()
            .expect("throttle lock")
            .reserve(copied.bytes);
        tokio::time::sleep_until(until).await;
    }
    target.finish(total.keys, timeout).await?;
    Ok(total)
}

/// Where a copy's batches go, and how.
enum Target {
    /// Into this node's store, as tables.
    Load(Arc<Storage>, Runs),
    /// To a peer's `IngestRange`, which loads them as tables.
    Push(Push),
    /// To a peer's `ApplyBatch`, one batch at a time through its write
    /// path: a peer that predates `IngestRange`.
    Apply(Channel),
}

impl Target {
    async fn open(sink: &Sink, timeout: Duration) -> Result<Self, StreamError> {
        Ok(match sink {
            Sink::Local(storage) => Self::Load(Arc::clone(storage), Runs::default()),
            Sink::Remote(channel) if ingests(channel, timeout).await? => {
                Self::Push(Push::start(channel))
            }
            Sink::Remote(channel) => {
                tracing::info!(
                    "the target predates IngestRange: the range goes through its write path"
                );
                Self::Apply(channel.clone())
            }
        })
    }

    async fn deliver(
        &mut self,
        batch: KeyVersionsBatch,
        timeout: Duration,
    ) -> Result<(), StreamError> {
        match self {
            Self::Load(storage, runs) => Ok(runs.add(batch, storage).await?),
            Self::Push(push) => push.send(batch, timeout).await,
            Self::Apply(channel) => apply_remote(batch, channel, timeout).await,
        }
    }

    /// Waits until everything delivered is durable; `sent` keys were.
    async fn finish(self, sent: u64, timeout: Duration) -> Result<(), StreamError> {
        match self {
            Self::Load(storage, runs) => {
                runs.finish(&storage).await.map(|_| ()).map_err(Into::into)
            }
            Self::Push(push) => push.finish(sent, timeout).await,
            Self::Apply(_) => Ok(()),
        }
    }
}

/// Whether the peer has `IngestRange`: asked with an empty stream, which
/// it answers at once (a node that predates the call: `UNIMPLEMENTED`).
async fn ingests(channel: &Channel, timeout: Duration) -> Result<bool, StreamError> {
    let mut request = tonic::Request::new(tokio_stream::empty::<KeyVersionsBatch>());
    request.set_timeout(timeout);
    match replica_client(channel.clone()).ingest_range(request).await {
        Ok(_) => Ok(true),
        Err(status) if status.code() == tonic::Code::Unimplemented => Ok(false),
        Err(status) => Err(StreamError::Sink(ReplicaError::from_status(&status))),
    }
}

/// An `IngestRange` call in progress: batches go into its request stream.
struct Push {
    batches: Option<tokio::sync::mpsc::Sender<KeyVersionsBatch>>,
    /// The call, driven by its own task; aborted (the stream reset, so the
    /// peer drops what it gathered) if the copy stops before finishing.
    call: Option<tokio::task::JoinHandle<Result<IngestRangeResponse, tonic::Status>>>,
}

impl Push {
    fn start(channel: &Channel) -> Self {
        // Two batches queued: the peer's flow control, not this queue,
        // paces the copy.
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let mut client = replica_client(channel.clone());
        // No deadline on the whole call (a range can take minutes): `send`
        // bounds each batch and `finish` the answer.
        let call = tokio::spawn(async move {
            client
                .ingest_range(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .map(tonic::Response::into_inner)
        });
        Self {
            batches: Some(tx),
            call: Some(call),
        }
    }

    async fn send(
        &mut self,
        batch: KeyVersionsBatch,
        timeout: Duration,
    ) -> Result<(), StreamError> {
        let Some(batches) = &self.batches else {
            return Err(StreamError::Sink(ReplicaError::StreamClosed(
                "the ingest stream is closed".into(),
            )));
        };
        match tokio::time::timeout(timeout, batches.send(batch)).await {
            Ok(Ok(())) => Ok(()),
            // The call ended before the stream did: its answer says why.
            Ok(Err(_)) => Err(match self.answer(timeout).await {
                Err(e) => e,
                Ok(_) => StreamError::Sink(ReplicaError::BadReply(
                    "the target answered IngestRange before the range was sent".into(),
                )),
            }),
            Err(_) => Err(StreamError::Sink(ReplicaError::Timeout(timeout))),
        }
    }

    /// Ends the stream and waits for the peer to say everything is
    /// durable: all `sent` keys, or the copy failed (and is retried).
    async fn finish(mut self, sent: u64, timeout: Duration) -> Result<(), StreamError> {
        self.batches = None;
        let answer = self.answer(timeout).await?;
        if answer.keys == sent {
            Ok(())
        } else {
            Err(StreamError::Sink(ReplicaError::BadReply(format!(
                "the target loaded {} keys of the {sent} sent",
                answer.keys
            ))))
        }
    }

    async fn answer(&mut self, timeout: Duration) -> Result<IngestRangeResponse, StreamError> {
        let Some(mut call) = self.call.take() else {
            return Err(StreamError::Sink(ReplicaError::StreamClosed(
                "the ingest call already ended".into(),
            )));
        };
        match tokio::time::timeout(timeout, &mut call).await {
            Ok(Ok(Ok(response))) => Ok(response),
            Ok(Ok(Err(status))) => Err(StreamError::Sink(ReplicaError::from_status(&status))),
            Ok(Err(joined)) => Err(StreamError::Sink(ReplicaError::StreamClosed(
                joined.to_string(),
            ))),
            Err(_) => {
                call.abort();
                Err(StreamError::Sink(ReplicaError::Timeout(timeout)))
            }
        }
    }
}

impl Drop for Push {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.abort();
        }
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
    use strata_cluster::{ClusterView, NodeId, NodeState, Siblings, Token};
    use strata_proto::v1::StoredVersions;

    use super::*;
    use crate::context::Topology;
    use crate::storage::encode;
    use crate::testing::{ContextBuilder, member, one_version, serve_replica};

    const SECOND: Duration = Duration::from_secs(1);
    const EVERYTHING: TokenRange = TokenRange {
        start: Token(0),
        end: Token(0),
    };

    fn siblings(value: &str) -> Siblings {
        one_version("strata-9", value)
    }

    /// A store holding `keys` keys of 1 KiB values.
    fn source(dir: &std::path::Path, keys: usize) -> Arc<Storage> {
        let ctx = ContextBuilder::new(dir).build();
        for i in 0..keys {
            let value = format!("{i:01024}");
            ctx.storage
                .apply(format!("key-{i}").as_bytes(), &siblings(&value))
                .expect("write");
        }
        Arc::clone(&ctx.storage)
    }

    /// Copies every key of `from` to the peer at `to`; what was copied.
    async fn push(from: &Arc<Storage>, to: Channel) -> Result<Copied, StreamError> {
        let throttle = std::sync::Mutex::new(Throttle::new(0));
        let mut reported = Copied::default();
        let copied = copy_range(
            EVERYTHING,
            &Source::Local(Arc::clone(from)),
            &Sink::Remote(to),
            &throttle,
            64 << 10,
            5 * SECOND,
            &mut |c| {
                reported.keys += c.keys;
                reported.bytes += c.bytes;
            },
        )
        .await?;
        assert_eq!(copied, reported, "every batch is reported once");
        Ok(copied)
    }

    /// Asserts that `to` holds what `from` does for the keys numbered `keys`.
    fn holds(from: &Storage, to: &Storage, keys: impl Iterator<Item = usize>) {
        for i in keys {
            let key = format!("key-{i}");
            assert_eq!(
                to.read(key.as_bytes()).expect("read"),
                from.read(key.as_bytes()).expect("read"),
                "{key}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pushed_range_is_loaded_as_tables_at_the_peer() {
        let dirs = [
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        ];
        let keys = 3000;
        let from = source(dirs[0].path(), keys);
        let target = ContextBuilder::new(dirs[1].path()).build();
        // A key the target already has (a coordinator's write during the
        // change): the pushed versions join it.
        let own = one_version("strata-1", "written at the target");
        target.storage.apply(b"key-7", &own).expect("write");
        let written = target.storage.db().stats().user_bytes_written;
        let (channel, _stop) = serve_replica(&target, &[]).await;

        let copied = push(&from, channel).await.expect("copied");
        assert_eq!(copied.keys, keys as u64);
        assert!(copied.bytes > (keys as u64) << 10, "{copied:?}");
        let stats = target.storage.db().stats();
        assert!(
            stats.ingested_bytes > (keys as u64) << 10,
            "loaded as tables: {} bytes ingested",
            stats.ingested_bytes
        );
        assert_eq!(
            stats.user_bytes_written, written,
            "nothing went through the target's write path"
        );
        let seven = target.storage.read(b"key-7").expect("read");
        assert_eq!(seven.versions().len(), 2, "both versions kept: {seven:?}");
        holds(&from, &target.storage, (0..keys).filter(|&i| i != 7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_predates_ingest_range_gets_the_range_through_apply_batch() {
        let dirs = [
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        ];
        let keys = 500;
        let from = source(dirs[0].path(), keys);
        let target = ContextBuilder::new(dirs[1].path()).build();
        let (channel, _stop) = serve_replica(&target, &["/strata.v1.Replica/IngestRange"]).await;

        let copied = push(&from, channel).await.expect("copied");
        assert_eq!(copied.keys, keys as u64);
        holds(&from, &target.storage, 0..keys);
        let stats = target.storage.db().stats();
        assert_eq!(stats.ingested_bytes, 0, "merged, not loaded");
        assert!(stats.user_bytes_written > (keys as u64) << 10);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ingest_range_refuses_unreadable_keys_and_a_node_that_has_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = ContextBuilder::new(dir.path()).build();
        let (channel, _stop) = serve_replica(&target, &[]).await;
        let send = |batches: Vec<KeyVersionsBatch>| {
            let mut client = replica_client(channel.clone());
            async move { client.ingest_range(tokio_stream::iter(batches)).await }
        };
        let good = StoredVersions {
            key: b"good".to_vec().into(),
            value: encode(&siblings("v")).into(),
        };
        let bad_value = StoredVersions {
            key: b"bad".to_vec().into(),
            value: b"\xffnot a sibling set".to_vec().into(),
        };
        let empty_key = StoredVersions {
            key: Vec::new().into(),
            value: encode(&siblings("v")).into(),
        };
        for bad in [bad_value, empty_key] {
            let batch = KeyVersionsBatch {
                entries: Vec::new(),
                stored: vec![good.clone(), bad],
            };
            let status = send(vec![batch]).await.expect_err("refused");
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
        }
        assert!(
            target
                .storage
                .read(b"good")
                .expect("read")
                .versions()
                .is_empty(),
            "nothing of a refused stream is loaded"
        );
        let loaded = send(vec![KeyVersionsBatch {
            entries: Vec::new(),
            stored: vec![good.clone()],
        }])
        .await
        .expect("a readable key is loaded")
        .into_inner();
        assert_eq!((loaded.keys, loaded.ingested), (1, 1));
        assert_eq!(
            target.storage.read(b"good").expect("read").versions().len(),
            1
        );

        // A node that has left the ring is no replica of anything.
        let dir = tempfile::tempdir().expect("tempdir");
        let me = NodeId::new("strata-0").expect("id");
        let view = ClusterView::from_peers([member(&me, "memory-0", NodeState::Left, true)]);
        let left = ContextBuilder::new(dir.path())
            .topology(Topology::Fixed(Arc::new(view)))
            .build();
        let (channel, _stop) = serve_replica(&left, &[]).await;
        let status = replica_client(channel)
            .ingest_range(tokio_stream::iter([KeyVersionsBatch {
                entries: Vec::new(),
                stored: vec![good],
            }]))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
        assert!(
            left.storage
                .read(b"good")
                .expect("read")
                .versions()
                .is_empty()
        );
    }

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
