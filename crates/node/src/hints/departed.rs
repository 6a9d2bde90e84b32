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

use super::{HintRecord, TakeError};
use crate::context::Context;
use crate::coordinator::remote::Target;
use crate::throttle::Throttle;

/// Replica writes in flight at once.
const IN_FLIGHT: usize = 32;
/// Bytes of hints written between two checks of the pace.
const BATCH_BYTES: u64 = 1 << 20;

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
/// [`TakeError`]; segments not finished stay on disk.
pub(crate) async fn redirect(
    ctx: &Context,
    target: &NodeId,
    throttle: &mut Throttle,
    timeout: Duration,
) -> Result<u64, TakeError> {
    let store = &ctx.hints;
    let mut delivered = 0;
    for segment in store.sealed(target).await.map_err(TakeError::Unreadable)? {
        let (records, damage) = store
            .live_hints(&segment)
            .await
            .map_err(TakeError::Unreadable)?;
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
) -> Result<u64, TakeError> {
    let view = ctx.view();
    let count = records.len() as u64;
    let (mut batch, mut bytes) = (Vec::new(), 0);
    for record in records {
        let size = prost::Message::encoded_len(&record.entry) as u64;
        let (key, siblings) = record
            .into_write()
            .map_err(|e| TakeError::Unreadable(e.to_string()))?;
        let receivers = receivers(&view, &key, ctx.n());
        if receivers.is_empty() {
            return Err(TakeError::Undelivered(
                "no replica of a key it held is up".into(),
            ));
        }
        let siblings = Arc::new(siblings);
        for id in receivers {
            batch.push((id, key.clone(), Arc::clone(&siblings)));
            bytes += size;
        }
        if bytes >= BATCH_BYTES {
            write_all(ctx, &view, std::mem::take(&mut batch), timeout).await?;
            throttle.consume(std::mem::take(&mut bytes)).await;
        }
    }
    write_all(ctx, &view, batch, timeout).await?;
    throttle.consume(bytes).await;
    Ok(count)
}

/// Merges each hint into its receiver's replica of the key (this node's
/// own store when it is the receiver), [`IN_FLIGHT`] at a time.
async fn write_all(
    ctx: &Context,
    view: &ClusterView,
    writes: Vec<(NodeId, Bytes, Arc<Siblings>)>,
    timeout: Duration,
) -> Result<(), TakeError> {
    futures::stream::iter(writes)
        .map(|(id, key, siblings)| async move {
            let undelivered =
                |e: &dyn std::fmt::Display| TakeError::Undelivered(format!("to {id}: {e}"));
            let target = Target::resolve(&id, ctx, view).map_err(|e| undelivered(&e))?;
            target
                .write(&key, &siblings, None, timeout)
                .await
                .map_err(|e| undelivered(&e))
        })
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|()| async { Ok(()) })
        .await
}
