//! Replica writes to one peer, coalesced: writes queued while earlier
//! batches are in flight go out together as one batch on the peer's pipe
//! (`pipe.rs`).
//!
//! Why: a call per replica write cost more CPU than a whole client Put on
//! one node, so with N = 3 the replica calls were most of a write's cost
//! (measurements in docs/benchmarks.md). Under load each batch carries many writes for
//! one call's overhead; with no load a write goes out alone at once, so
//! latency is unchanged. The peer merges a batch's entries through its
//! writer thread, so they share one engine commit too.

use std::sync::Arc;
use std::time::Duration;

use strata_proto::v1::{KeyVersions, KeyVersionsBatch};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{Pipe, ReplicaError};
use crate::byte_budget::{ByteBudget, Share};

/// Batches in flight to one peer at most; more writes wait in the queue
/// (and so join bigger batches).
const IN_FLIGHT: usize = 2;
/// A batch stops growing at this many encoded bytes.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Writes waiting for one peer at most; callers wait beyond (backpressure).
const QUEUE: usize = 4096;
/// Encoded bytes of the writes queued for or in flight to one peer at most;
/// a write beyond fails at once (see the module docs). Room for 16 full
/// batches: far more than a peer keeping up ever has queued.
const MAX_QUEUED_BYTES: usize = 16 * MAX_BATCH_BYTES;

struct Queued {
    entry: KeyVersions,
    /// The entry's encoded bytes.
    size: usize,
    done: oneshot::Sender<Result<(), ReplicaError>>,
    /// The entry's share of the byte bound, returned when its batch ends.
    share: Share,
}

/// The write queue of one peer.
#[derive(Debug)]
pub struct Batcher {
    queue: mpsc::Sender<Queued>,
    /// Bytes queued or in flight.
    bytes: ByteBudget,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued").finish_non_exhaustive()
    }
}

impl Batcher {
    /// Starts the batching task for the peer on `pipe`; each batch has
    /// `timeout` to be acknowledged. The task ends with the batcher.
    #[must_use]
    pub fn start(pipe: Arc<Pipe>, timeout: Duration) -> Self {
        Self::with_limit(pipe, timeout, MAX_QUEUED_BYTES)
    }

    /// [`start`](Self::start) with another byte bound (for tests).
    #[must_use]
    pub fn with_limit(pipe: Arc<Pipe>, timeout: Duration, max_queued_bytes: usize) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(pipe, timeout, rx));
        Self {
            queue,
            bytes: ByteBudget::new(max_queued_bytes),
        }
    }

    /// Merges `entry` into the peer's store; `Ok` once the peer made it
    /// durable.
    ///
    /// # Errors
    /// [`ReplicaError::Overloaded`] at once when the peer's queue holds too
    /// many bytes to take this entry; otherwise [`ReplicaError`] of the
    /// batch carrying it.
    pub async fn write(&self, entry: KeyVersions) -> Result<(), ReplicaError> {
        let stopped = || ReplicaError::StreamClosed("the replica batcher stopped".to_owned());
        // An entry larger than the whole bound is taken only into an empty
        // queue (rather than never).
        let size = prost::Message::encoded_len(&entry);
        let share = self
            .bytes
            .take(size)
            .map_err(|spent| ReplicaError::Overloaded {
                queued_bytes: spent.held,
            })?;
        let (done, result) = oneshot::channel();
        self.queue
            .send(Queued {
                entry,
                size,
                done,
                share,
            })
            .await
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

async fn run(pipe: Arc<Pipe>, timeout: Duration, mut rx: mpsc::Receiver<Queued>) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut carried: Option<Queued> = None;
    loop {
        // Wait for a free slot first: while all are busy, writes pile up
        // in the queue and the next batch takes them all.
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(queued) => queued,
            None => match rx.recv().await {
                Some(queued) => queued,
                None => return,
            },
        };
        let mut bytes = first.size;
        let mut entries = vec![first.entry];
        let mut waiters = vec![first.done];
        let mut shares = vec![first.share];
        while let Ok(next) = rx.try_recv() {
            if bytes + next.size > MAX_BATCH_BYTES {
                carried = Some(next);
                break;
            }
            bytes += next.size;
            entries.push(next.entry);
            waiters.push(next.done);
            shares.push(next.share);
        }
        let pipe = Arc::clone(&pipe);
        tokio::spawn(async move {
            let result = pipe
                .apply(
                    KeyVersionsBatch {
                        entries,
                        stored: Vec::new(),
                    },
                    timeout,
                )
                .await
                .map(|_| ());
            drop(shares);
            for done in waiters {
                let _ = done.send(result.clone());
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use strata_proto::v1::{self, ApplyBatchResponse, ReplicaReadRequest, ReplicaReadResponse};
    use tonic::Status;

    use super::*;
    use crate::transport::pipe::{PipeHandler, fake};

    /// A peer that answers each batch after a delay, recording batch
    /// sizes, or fails every batch.
    #[derive(Debug, Default)]
    struct Peer {
        batches: Arc<Mutex<Vec<usize>>>,
        fail: bool,
    }

    impl PipeHandler for Peer {
        fn read(&self, _: ReplicaReadRequest) -> Result<ReplicaReadResponse, Status> {
            Err(Status::unimplemented("not used"))
        }

        async fn apply(&self, batch: KeyVersionsBatch) -> Result<ApplyBatchResponse, Status> {
            let n = batch.entries.len();
            self.batches.lock().expect("lock").push(n);
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.fail {
                return Err(Status::unavailable("disk on fire"));
            }
            Ok(ApplyBatchResponse {
                applied: u32::try_from(n).expect("small"),
            })
        }
    }

    async fn serve(peer: Peer) -> Arc<Pipe> {
        Arc::new(Pipe::new(fake::serve(peer).await))
    }

    fn entry(i: usize) -> KeyVersions {
        v1::KeyVersions {
            key: format!("k{i}").into_bytes().into(),
            versions: Vec::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_queued_behind_busy_batches_share_one_call() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let pipe = serve(Peer {
            batches: Arc::clone(&batches),
            fail: false,
        })
        .await;
        let batcher = Arc::new(Batcher::start(pipe, Duration::from_secs(5)));
        let writes: Vec<_> = (0..40)
            .map(|i| {
                let batcher = Arc::clone(&batcher);
                tokio::spawn(async move { batcher.write(entry(i)).await })
            })
            .collect();
        for w in writes {
            w.await.expect("task").expect("write acknowledged");
        }
        let batches = batches.lock().expect("lock").clone();
        assert_eq!(batches.iter().sum::<usize>(), 40, "{batches:?}");
        assert!(
            batches.len() < 40 && batches.iter().any(|&n| n > 1),
            "writes were coalesced: {batches:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_fails_each_of_its_writes() {
        let pipe = serve(Peer {
            batches: Arc::default(),
            fail: true,
        })
        .await;
        let batcher = Arc::new(Batcher::start(pipe, Duration::from_secs(5)));
        let writes: Vec<_> = (0..5)
            .map(|i| {
                let batcher = Arc::clone(&batcher);
                tokio::spawn(async move { batcher.write(entry(i)).await })
            })
            .collect();
        for w in writes {
            let err = w.await.expect("task").expect_err("the peer failed");
            assert_eq!(
                err,
                ReplicaError::Rejected {
                    code: tonic::Code::Unavailable,
                    message: "disk on fire".into()
                }
            );
        }
    }

    fn sized_entry(i: usize, value_bytes: usize) -> KeyVersions {
        v1::KeyVersions {
            key: format!("k{i}").into_bytes().into(),
            versions: vec![v1::Version {
                value: vec![7; value_bytes].into(),
                ..v1::Version::default()
            }],
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_past_the_byte_bound_fail_at_once_until_the_queue_drains() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let pipe = serve(Peer {
            batches: Arc::clone(&batches),
            fail: false,
        })
        .await;
        // Room for three ~1 KB writes; the peer takes 50 ms per batch.
        let size = prost::Message::encoded_len(&sized_entry(0, 1000));
        let batcher = Batcher::with_limit(pipe, Duration::from_secs(5), 3 * size + 10);
        // Each first poll takes its room and queues its entry.
        let mut accepted: Vec<_> = (0..3)
            .map(|i| Box::pin(batcher.write(sized_entry(i, 1000))))
            .collect();
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        for w in &mut accepted {
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        let refused = batcher.write(sized_entry(3, 1000)).await;
        assert!(
            matches!(refused, Err(ReplicaError::Overloaded { queued_bytes }) if queued_bytes == 3 * size),
            "{refused:?}"
        );
        for w in accepted {
            w.await.expect("a write within the bound");
        }
        // Their batches are done: the room is back.
        batcher
            .write(sized_entry(4, 1000))
            .await
            .expect("room again once the queue drained");
        assert_eq!(batches.lock().expect("lock").iter().sum::<usize>(), 4);
    }

    #[tokio::test]
    async fn a_batch_past_its_deadline_fails() {
        let pipe = serve(Peer::default()).await;
        let batcher = Batcher::start(pipe, Duration::from_millis(10));
        let err = batcher.write(entry(0)).await.expect_err("too slow");
        assert_eq!(err, ReplicaError::Timeout(Duration::from_millis(10)));
    }
}
