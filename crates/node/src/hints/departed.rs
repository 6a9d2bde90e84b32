//! Hints for a member that has left the ring (decommissioned, or removed
//! as dead). Its ranges have other owners now and it will never take a
//! hint again: a removed node never comes back under that incarnation,
//! and a decommissioned process that still runs would store them where
//! nothing reads them. So each hint goes to the replicas its key has now,
//! as an ordinary replica write (a merge: safe to repeat), and its segment
//! is deleted once every hint in it was taken (`take.rs`, which drops
//! expired hints as the replay does). The copy the hint stood for lands
//! where reads look, instead of sitting on this node's disk until the
//! hint window ends.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use strata_cluster::{ClusterView, NodeId, NodeState, Siblings, Token};

use super::HintRecord;
use crate::context::Context;
use crate::throttle::Throttle;
use crate::transport::RemoteReplica;

/// Replica writes in flight at once.
const IN_FLIGHT: usize = 32;
/// Bytes of hints written between two checks of the pace.
const BATCH_BYTES: u64 = 1 << 20;

/// Why redirecting a departed member's hints stopped.
#[derive(Debug, thiserror::Error)]
pub enum RedirectError {
    /// A segment (or a record in it) could not be read: retrying would
    /// not help; the segment stays on disk.
    #[error("{0}")]
    Unreadable(String),
    /// A replica did not take a hint, or a key had no replica up: the
    /// segment stays and is tried again.
    #[error("{0}")]
    Undelivered(String),
}

/// Whether hints held for `target` should go to their keys' replicas
/// instead of to it.
#[must_use]
pub(crate) fn has_left(view: &ClusterView, target: &NodeId) -> bool {
    view.node(target)
        .is_some_and(|n| n.state == NodeState::Left)
}

/// Where a departed member's hint for `key` goes: the key's live current
/// and pending replicas, less members on their way out (a leaving one,
/// this node included when it is the one decommissioning, is about to
/// drop what it holds).
#[must_use]
pub(crate) fn receivers(view: &ClusterView, key: &[u8], n: usize) -> Vec<NodeId> {
    view.write_targets(Token::of(key), n)
        .into_iter()
        .filter(|t| t.alive)
        .filter(|t| {
            view.node(&t.id)
                .is_some_and(|m| !matches!(m.state, NodeState::Leaving | NodeState::Left))
        })
        .map(|t| t.id)
        .collect()
}

/// Delivers every sealed segment of hints for `target`, a member that has
/// left, to the replicas of each hint's key, paced by `throttle`, each
/// write bounded by `timeout`. The caller holds [`HintStore::delivery`].
/// Returns how many hints were delivered.
///
/// # Errors
/// [`RedirectError`]; segments not finished stay on disk.
pub(crate) async fn redirect(
    ctx: &Context,
    target: &NodeId,
    throttle: &mut Throttle,
    timeout: Duration,
) -> Result<u64, RedirectError> {
    let store = &ctx.hints;
    let mut delivered = 0;
    for segment in store
        .sealed(target)
        .await
        .map_err(RedirectError::Unreadable)?
    {
        let (records, damage) = store
            .live_hints(&segment)
            .await
            .map_err(RedirectError::Unreadable)?;
        let taken = deliver(ctx, records, throttle, timeout).await?;
        store.metrics().replayed.inc_by(taken);
        delivered += taken;
        store
            .taken(target, segment, damage, "delivered to their keys' replicas")
            .await;
    }
    Ok(delivered)
}

/// Writes each record to its key's receivers, [`IN_FLIGHT`] writes at a
/// time, paced by `throttle` every [`BATCH_BYTES`]; returns how many
/// records were delivered.
async fn deliver(
    ctx: &Context,
    records: Vec<HintRecord>,
    throttle: &mut Throttle,
    timeout: Duration,
) -> Result<u64, RedirectError> {
    let view = ctx.view();
    let count = records.len() as u64;
    let mut batches: Vec<(Vec<Write>, u64)> = vec![(Vec::new(), 0)];
    for record in records {
        let bytes = prost::Message::encoded_len(&record.entry) as u64;
        let (key, siblings) = record
            .into_write()
            .map_err(|e| RedirectError::Unreadable(e.to_string()))?;
        let siblings = Arc::new(siblings);
        let receivers = receivers(&view, &key, ctx.n());
        if receivers.is_empty() {
            return Err(RedirectError::Undelivered(
                "no replica of a key it held is up".into(),
            ));
        }
        for id in receivers {
            let (writes, size) = match batches.last_mut() {
                Some(last) if last.1 < BATCH_BYTES => last,
                _ => {
                    batches.push((Vec::new(), 0));
                    batches.last_mut().expect("just pushed")
                }
            };
            writes.push((id, key.clone(), Arc::clone(&siblings)));
            *size += bytes;
        }
    }
    for (writes, bytes) in batches {
        futures::stream::iter(writes)
            .map(|(id, key, siblings)| write(ctx, &view, id, key, siblings, timeout))
            .buffer_unordered(IN_FLIGHT)
            .try_for_each(|()| async { Ok(()) })
            .await?;
        throttle.consume(bytes).await;
    }
    Ok(count)
}

/// One hint's key and value, for one receiver.
type Write = (NodeId, Bytes, Arc<Siblings>);

/// Merges `siblings` into `id`'s replica of `key` (this node's own store
/// when it is the receiver).
async fn write(
    ctx: &Context,
    view: &ClusterView,
    id: NodeId,
    key: Bytes,
    siblings: Arc<Siblings>,
    timeout: Duration,
) -> Result<(), RedirectError> {
    if id == ctx.id {
        return ctx
            .storage
            .apply_queued(&key, &siblings)
            .await
            .map_err(|e| RedirectError::Undelivered(format!("this node: {e}")));
    }
    let to = RemoteReplica {
        address: view
            .node(&id)
            .map(|n| n.internal_address.clone())
            .unwrap_or_default(),
        id,
    };
    ctx.transport
        .write(&to, &key, &siblings, None, timeout)
        .await
        .map_err(|e| RedirectError::Undelivered(format!("to {}: {e}", to.id)))
}
