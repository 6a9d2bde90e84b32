//! One replica operation, local or over the network, as a future the
//! coordinator fans out.

use std::sync::Arc;
use std::time::Duration;

use strata_cluster::{ClusterView, NodeId, Siblings};
use strata_proto::v1::{KeyVersions, ReplicaReadRequest, ReplicaWriteRequest};

use crate::peers::{Peer, Peers};
use crate::storage::{Storage, version_from_proto, version_to_proto};

/// Where a replica operation runs.
#[derive(Clone)]
pub(super) enum Target {
    /// This node: straight to the engine.
    Local(Arc<Storage>),
    /// Another node, through its pipe and write batcher.
    Remote(Arc<Peer>),
}

impl Target {
    /// Resolves `node` for this coordinator: itself, or a channel to the
    /// address gossip published.
    pub(super) fn resolve(
        node: &NodeId,
        me: &NodeId,
        local: &Arc<Storage>,
        view: &ClusterView,
        peers: &Peers,
        timeout: Duration,
    ) -> Result<Self, String> {
        if node == me {
            return Ok(Self::Local(Arc::clone(local)));
        }
        let address = view
            .node(node)
            .map(|n| n.grpc_address.as_str())
            .filter(|a| !a.is_empty())
            .ok_or_else(|| format!("no address known for {node}"))?;
        peers.peer(address, timeout).map(Self::Remote)
    }

    /// Merges `siblings` into the replica's set for `key`; with
    /// `hint_for`, asks a stand-in to hold them as a hint for that replica.
    pub(super) async fn write(
        self,
        key: &[u8],
        siblings: &Siblings,
        hint_for: Option<&NodeId>,
        timeout: Duration,
    ) -> Result<(), String> {
        match self {
            Self::Local(_) if hint_for.is_some() => {
                Err("a coordinator stores its own hints directly".to_owned())
            }
            Self::Local(storage) => storage
                .apply_queued(key, siblings)
                .await
                .map_err(|e| e.to_string()),
            Self::Remote(peer) if hint_for.is_none() => {
                // Joins the peer's next batch (see `batcher.rs`).
                peer.batcher()
                    .write(KeyVersions {
                        key: key.to_vec().into(),
                        versions: siblings.versions().iter().map(version_to_proto).collect(),
                    })
                    .await
            }
            Self::Remote(peer) => {
                let request = ReplicaWriteRequest {
                    key: key.to_vec().into(),
                    versions: siblings.versions().iter().map(version_to_proto).collect(),
                    hint_for: hint_for.map(ToString::to_string).unwrap_or_default(),
                };
                let mut client = Peers::replica_client(peer.channel());
                let call = client.write(request);
                match tokio::time::timeout(timeout, call).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                }
            }
        }
    }

    /// The replica's sibling set for `key`.
    pub(super) async fn read(self, key: Vec<u8>, timeout: Duration) -> Result<Siblings, String> {
        match self {
            // Inline, not `spawn_blocking`: a point read is served from the
            // memtable or block cache in microseconds, and the thread
            // handoff cost more than the read (see docs/benchmarks.md). A
            // cache miss blocks this worker for one disk read.
            Self::Local(storage) => storage.read(&key).map_err(|e| e.to_string()),
            Self::Remote(peer) => peer
                .pipe()
                .read(ReplicaReadRequest { key: key.into() }, timeout)
                .await?
                .versions
                .into_iter()
                .map(version_from_proto)
                .collect::<Result<Vec<_>, _>>()
                .map(Siblings::from_versions)
                .map_err(|e| format!("replica sent an unreadable version: {e}")),
        }
    }
}
