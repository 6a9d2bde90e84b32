//! Replica writes to one peer, coalesced: writes queued while earlier
//! batches are in flight go out together in one `Replica.ApplyBatch`.
//!
//! Why: a unary gRPC call per replica write cost about 100 µs of CPU
//! (client and server side together, measured in `strata dev`), twice a
//! whole client Put on one node; with N = 3 that made the replica RPCs
//! most of a write's cost. Under load each batch carries many writes for
//! one call's overhead; with no load a write goes out alone at once, so
//! latency is unchanged. The peer merges a batch's entries through its
//! writer thread, so they share one engine commit too.

use std::sync::Arc;
use std::time::Duration;

use strata_proto::v1::{KeyVersions, KeyVersionsBatch};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::transport::Channel;

use crate::peers::Peers;

/// Batches in flight to one peer at most; more writes wait in the queue
/// (and so join bigger batches).
const IN_FLIGHT: usize = 2;
/// A batch stops growing at this many encoded bytes.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Writes waiting for one peer at most; callers wait beyond (backpressure).
const QUEUE: usize = 4096;

struct Queued {
    entry: KeyVersions,
    done: oneshot::Sender<Result<(), String>>,
}

/// The write queue of one peer.
#[derive(Debug)]
pub struct Batcher {
    queue: mpsc::Sender<Queued>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued").finish_non_exhaustive()
    }
}

impl Batcher {
    /// Starts the batching task for the peer on `channel`; each batch
    /// has `timeout` to be acknowledged. The task ends with the batcher.
    #[must_use]
    pub fn start(channel: Channel, timeout: Duration) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(channel, timeout, rx));
        Self { queue }
    }

    /// Merges `entry` into the peer's store; `Ok` once the peer made it
    /// durable.
    ///
    /// # Errors
    /// A message when the batch carrying it failed or timed out.
    pub async fn write(&self, entry: KeyVersions) -> Result<(), String> {
        let (done, result) = oneshot::channel();
        self.queue
            .send(Queued { entry, done })
            .await
            .map_err(|_| "replica batcher stopped".to_owned())?;
        result
            .await
            .map_err(|_| "replica batcher stopped".to_owned())?
    }
}

async fn run(channel: Channel, timeout: Duration, mut rx: mpsc::Receiver<Queued>) {
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
        let mut bytes = prost::Message::encoded_len(&first.entry);
        let mut entries = vec![first.entry];
        let mut waiters = vec![first.done];
        while let Ok(next) = rx.try_recv() {
            let size = prost::Message::encoded_len(&next.entry);
            if bytes + size > MAX_BATCH_BYTES {
                carried = Some(next);
                break;
            }
            bytes += size;
            entries.push(next.entry);
            waiters.push(next.done);
        }
        let mut client = Peers::replica_client(channel.clone());
        tokio::spawn(async move {
            let call = client.apply_batch(KeyVersionsBatch { entries });
            let result = match tokio::time::timeout(timeout, call).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
                Err(_) => Err(format!("no answer within {timeout:?}")),
            };
            for done in waiters {
                let _ = done.send(result.clone());
            }
            drop(permit);
        });
    }
}
