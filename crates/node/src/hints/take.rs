//! Taking a target's hints off this node: the steps the replay, a
//! decommission's hand-over and the redirect of a departed member's hints
//! share. Seal the open segment (new hints start another), then for each
//! sealed segment, oldest first: read it and drop its expired hints
//! (counted; anti-entropy's after the window, and re-stored elsewhere they
//! would start a new window), deliver the rest (the caller's part), and
//! delete the segment once taken, or set it aside as `*.corrupt` when it
//! is damaged past what was read. A delivery that fails leaves that
//! segment and the later ones for the next attempt. The caller holds
//! [`HintStore::delivery`].

use std::sync::Arc;

use bytes::Bytes;
use strata_cluster::{NodeId, Siblings};

use super::{Damage, HintRecord, HintStore, SealedSegment, SegmentFate};
use crate::clock::now_micros;
use crate::storage::{CodecError, siblings_from_proto};

/// Why taking a target's hints stopped.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// A segment (or a record in it) could not be read: retrying would
    /// not help; the segment stays on disk.
    #[error("{0}")]
    Unreadable(String),
    /// A receiver did not take a hint, or there was none to take it: the
    /// segment stays and is tried again.
    #[error("{0}")]
    Undelivered(String),
}

impl HintStore {
    /// Seals `target`'s open segment and returns its sealed ones, oldest
    /// first, on the blocking pool.
    ///
    /// # Errors
    /// The blocking task failed.
    pub(crate) async fn sealed(
        self: &Arc<Self>,
        target: &NodeId,
    ) -> Result<Vec<SealedSegment>, String> {
        let (sealing, sealed_for) = (Arc::clone(self), target.clone());
        tokio::task::spawn_blocking(move || sealing.seal(&sealed_for))
            .await
            .map_err(|e| e.to_string())
    }

    /// A sealed segment's hints that have not expired (the expired ones
    /// counted), and where it is damaged, if it is.
    ///
    /// # Errors
    /// The segment cannot be read.
    pub(crate) async fn live_hints(
        &self,
        segment: &SealedSegment,
    ) -> Result<(Vec<HintRecord>, Option<Damage>), String> {
        let path = segment.path.clone();
        let (records, damage) = tokio::task::spawn_blocking(move || HintStore::read(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("reading {}: {e}", segment.path.display()))?;
        let now = now_micros();
        let (expired, live): (Vec<_>, Vec<_>) = records
            .into_iter()
            .partition(|r| self.is_expired(r.stored_at_micros, now));
        self.metrics().expired.inc_by(expired.len() as u64);
        Ok((live, damage))
    }

    /// `segment`'s hints were taken: deletes it, or sets it aside when it
    /// is damaged (logged; `went` says where the hints before the damage
    /// went), on the blocking pool.
    pub(crate) async fn taken(
        self: &Arc<Self>,
        target: &NodeId,
        segment: SealedSegment,
        damage: Option<Damage>,
        went: &str,
    ) {
        let fate = if let Some(damage) = damage {
            tracing::error!(segment = %segment.path.display(), offset = damage.offset,
                reason = %damage.reason, "damaged hint segment: {went} the hints before the damage, setting it aside");
            SegmentFate::Damaged
        } else {
            SegmentFate::Delivered
        };
        let (store, target) = (Arc::clone(self), target.clone());
        let finished = tokio::task::spawn_blocking(move || {
            store.finish(&target, &segment.path, fate);
        })
        .await;
        if let Err(e) = finished {
            tracing::warn!(error = %e, "finishing a hint segment failed; it is delivered again later");
        }
    }
}

impl HintRecord {
    /// The hint's key and its versions, decoded.
    ///
    /// # Errors
    /// A version that does not decode.
    pub(crate) fn into_write(self) -> Result<(Bytes, Siblings), CodecError> {
        Ok((self.entry.key, siblings_from_proto(self.entry.versions)?))
    }
}
