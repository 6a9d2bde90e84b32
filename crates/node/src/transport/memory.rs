//! An in-memory [`ReplicaTransport`] for tests: every other node is a store
//! (and a hint store, for stand-in writes) in this process, and each link
//! can be cut, delayed or made to refuse. Like chitchat's channel transport
//! with `remove_link`: the coordinator's quorum, stand-in and read-repair
//! logic runs unchanged, without sockets, and failures are exact.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_cluster::{NodeId, Siblings};

use super::{RemoteReplica, ReplicaError, ReplicaTransport};
use crate::hints::HintStore;
use crate::storage::Storage;

/// How the link to one node behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Link {
    /// Operations are served at once.
    Up,
    /// Nothing gets through: [`ReplicaError::Unreachable`].
    Down,
    /// Operations are served after this long (a slow or paused node).
    Delay(Duration),
    /// The node answers every operation with `UNAVAILABLE`.
    Refuse,
    /// Reads are served at once, writes after this long (a slow disk).
    SlowWrites(Duration),
}

/// One node of the in-memory network.
#[derive(Debug)]
pub(crate) struct MemoryNode {
    pub(crate) storage: Arc<Storage>,
    pub(crate) hints: Arc<HintStore>,
    link: Link,
    reads: usize,
    writes: usize,
}

/// The other nodes, by id.
#[derive(Debug, Default)]
pub(crate) struct MemoryTransport {
    nodes: Mutex<HashMap<NodeId, MemoryNode>>,
}

impl MemoryTransport {
    /// Adds node `id` serving `storage` (and holding hints in `hints`).
    pub(crate) fn add(&self, id: &NodeId, storage: Arc<Storage>, hints: Arc<HintStore>) {
        self.lock().insert(
            id.clone(),
            MemoryNode {
                storage,
                hints,
                link: Link::Up,
                reads: 0,
                writes: 0,
            },
        );
    }

    /// Makes the link to `id` behave as `link` from now on.
    pub(crate) fn set_link(&self, id: &NodeId, link: Link) {
        if let Some(node) = self.lock().get_mut(id) {
            node.link = link;
        }
    }

    /// Reads and writes that reached `id` so far, counted on arrival
    /// (before a delayed link's delay); a down link or a refusing node
    /// counts none.
    pub(crate) fn served(&self, id: &NodeId) -> (usize, usize) {
        self.lock().get(id).map_or((0, 0), |n| (n.reads, n.writes))
    }

    /// The store of `id`.
    pub(crate) fn storage(&self, id: &NodeId) -> Arc<Storage> {
        Arc::clone(&self.lock().get(id).expect("known node").storage)
    }

    /// The hint store of `id`.
    pub(crate) fn hints(&self, id: &NodeId) -> Arc<HintStore> {
        Arc::clone(&self.lock().get(id).expect("known node").hints)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, MemoryNode>> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts the operation as arrived, applies the link's behaviour and
    /// returns the node's stores.
    async fn reach(
        &self,
        id: &NodeId,
        write: bool,
        timeout: Duration,
    ) -> Result<(Arc<Storage>, Arc<HintStore>), ReplicaError> {
        let (link, storage, hints) = {
            let mut nodes = self.lock();
            let node = nodes
                .get_mut(id)
                .ok_or_else(|| ReplicaError::Unreachable(format!("no node {id}")))?;
            if !matches!(node.link, Link::Down | Link::Refuse) {
                if write {
                    node.writes += 1;
                } else {
                    node.reads += 1;
                }
            }
            (
                node.link,
                Arc::clone(&node.storage),
                Arc::clone(&node.hints),
            )
        };
        match link {
            Link::Up => {}
            Link::Down => return Err(ReplicaError::Unreachable(format!("link to {id} is down"))),
            Link::Refuse => {
                return Err(ReplicaError::Rejected {
                    code: tonic::Code::Unavailable,
                    message: "refusing".into(),
                });
            }
            Link::Delay(delay) if delay >= timeout => {
                tokio::time::sleep(timeout).await;
                return Err(ReplicaError::Timeout(timeout));
            }
            Link::Delay(delay) => tokio::time::sleep(delay).await,
            Link::SlowWrites(delay) if write => tokio::time::sleep(delay).await,
            Link::SlowWrites(_) => {}
        }
        Ok((storage, hints))
    }
}

#[async_trait::async_trait]
impl ReplicaTransport for MemoryTransport {
    async fn read(
        &self,
        replica: &RemoteReplica,
        key: &[u8],
        timeout: Duration,
    ) -> Result<Siblings, ReplicaError> {
        let (storage, _) = self.reach(&replica.id, false, timeout).await?;
        storage.read(key).map_err(|e| ReplicaError::Rejected {
            code: tonic::Code::Internal,
            message: e.to_string(),
        })
    }

    async fn write(
        &self,
        replica: &RemoteReplica,
        key: &[u8],
        siblings: &Siblings,
        hint_for: Option<&NodeId>,
        timeout: Duration,
    ) -> Result<(), ReplicaError> {
        let (storage, hints) = self.reach(&replica.id, true, timeout).await?;
        let refused = |message: String| ReplicaError::Rejected {
            code: tonic::Code::Internal,
            message,
        };
        match hint_for {
            Some(target) => hints
                .store(target, key, siblings)
                .await
                .map_err(|e| refused(e.to_string())),
            None => storage
                .apply_queued(key, siblings)
                .await
                .map_err(|e| refused(e.to_string())),
        }
    }
}
