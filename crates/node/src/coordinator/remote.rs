//! One replica operation, local or over the network, as a future the
//! coordinator fans out (and the redirect of a departed member's hints,
//! `hints/departed.rs`, writes through).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_cluster::{ClusterView, NodeId, Siblings};

use crate::context::Context;
use crate::storage::{Storage, StorageError};
use crate::transport::{RemoteReplica, ReplicaError, ReplicaTransport};

/// Where a replica operation runs.
#[derive(Clone)]
pub(crate) enum Target {
    /// This node: straight to the engine.
    Local(Arc<Storage>),
    /// Another node, through the transport.
    Remote(Arc<dyn ReplicaTransport>, RemoteReplica),
}

/// What a replica operation on this node can fail with, as the
/// coordinator reports it (a local failure or a remote one).
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum TargetError {
    /// The local store failed.
    #[error("local replica: {0}")]
    Local(StorageError),
    /// A stand-in write addressed to this node: a coordinator keeps its
    /// own hints in its hint store, never through a replica write.
    #[error("a coordinator stores its own hints directly")]
    OwnHint,
    /// The remote replica failed.
    #[error(transparent)]
    Remote(#[from] ReplicaError),
}

impl Target {
    /// Resolves `node` for the coordinator of `ctx`: itself, or the address
    /// gossip published for it.
    pub(crate) fn resolve(
        node: &NodeId,
        ctx: &Context,
        view: &ClusterView,
    ) -> Result<Self, ReplicaError> {
        if *node == ctx.id {
            return Ok(Self::Local(Arc::clone(&ctx.storage)));
        }
        let address = view
            .node(node)
            .map(|n| n.internal_address.as_str())
            .filter(|a| !a.is_empty())
            .ok_or_else(|| ReplicaError::Unreachable(format!("no address known for {node}")))?;
        Ok(Self::Remote(
            Arc::clone(&ctx.transport),
            RemoteReplica {
                id: node.clone(),
                address: address.to_owned(),
            },
        ))
    }

    /// Merges `siblings` into the replica's set for `key`; with
    /// `hint_for`, asks a stand-in to hold them as a hint for that replica.
    pub(crate) async fn write(
        self,
        key: &[u8],
        siblings: &Siblings,
        hint_for: Option<&NodeId>,
        timeout: Duration,
    ) -> Result<(), TargetError> {
        match self {
            Self::Local(_) if hint_for.is_some() => Err(TargetError::OwnHint),
            Self::Local(storage) => storage
                .apply_queued(key, siblings)
                .await
                .map_err(TargetError::Local),
            Self::Remote(transport, replica) => Ok(transport
                .write(&replica, key, siblings, hint_for, timeout)
                .await?),
        }
    }

    /// The replica's sibling set for `key`.
    pub(super) async fn read(self, key: Bytes, timeout: Duration) -> Result<Siblings, TargetError> {
        match self {
            // Inline, not `spawn_blocking`: a point read is served from the
            // memtable or block cache in microseconds, and the thread
            // handoff cost more than the read (see docs/benchmarks.md). A
            // cache miss blocks this worker for one disk read.
            Self::Local(storage) => storage.read(&key).map_err(TargetError::Local),
            Self::Remote(transport, replica) => Ok(transport.read(&replica, &key, timeout).await?),
        }
    }
}
