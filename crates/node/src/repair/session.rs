//! One anti-entropy exchange: this node and one other replica compare a
//! token range's Merkle trees level by level, descending only into
//! differing subtrees, then exchange just the keys of the differing
//! leaves and merge them in both directions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use strata_cluster::{MerkleTree, Siblings, TokenRange, differing_children};
use strata_proto::v1::{
    self, KeyVersions, KeyVersionsBatch, MerkleNodesRequest, StreamRangeRequest,
};
use tonic::transport::Channel;

use crate::storage::{RangeEntry, Storage, StorageError, siblings_from_proto, version_to_proto};
use crate::throttle::Throttle;
use crate::transport::{ReplicaError, replica_client};

/// Why an exchange with one peer failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// A call to the peer failed (`rpc` names it).
    #[error("{rpc}: {source}")]
    Replica {
        /// The RPC.
        rpc: &'static str,
        /// What went wrong.
        source: ReplicaError,
    },
    /// This node's store failed.
    #[error("local store: {0}")]
    Storage(#[from] StorageError),
    /// A blocking scan task failed.
    #[error("range scan task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

fn rpc(name: &'static str) -> impl Fn(tonic::Status) -> SessionError {
    move |status| SessionError::Replica {
        rpc: name,
        source: ReplicaError::from_status(&status),
    }
}

fn bad_reply(name: &'static str, what: String) -> SessionError {
    SessionError::Replica {
        rpc: name,
        source: ReplicaError::BadReply(what),
    }
}

/// Batches this node pushes (and asks the peer to stream) at most.
const BATCH_BYTES: usize = 1 << 20;

/// What one exchange did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exchange {
    /// Leaves whose hashes differed.
    pub differing_leaves: u64,
    /// Keys this node took from the peer.
    pub keys_in: u64,
    /// Keys this node sent to the peer.
    pub keys_out: u64,
    /// Bytes of versions moved either way.
    pub bytes: u64,
}

/// Compares `local` (this node's tree of its range) with the peer's and
/// merges the differing keys both ways.
///
/// # Errors
/// [`SessionError`] naming the RPC or storage step that failed.
pub(super) async fn exchange(
    storage: &Arc<Storage>,
    channel: Channel,
    local: &MerkleTree,
    range: TokenRange,
    throttle: &mut Throttle,
    timeout: Duration,
) -> Result<Exchange, SessionError> {
    let mut client = replica_client(channel);
    let depth = local.depth();
    let wire_range = Some(v1::TokenRange {
        start: range.start.0,
        end: range.end.0,
    });
    let mut positions = vec![1u64];
    for level in 0..=depth {
        let mut request = tonic::Request::new(MerkleNodesRequest {
            range: wire_range,
            depth,
            positions: positions.clone(),
        });
        request.set_timeout(timeout);
        let remote = client
            .merkle_nodes(request)
            .await
            .map_err(rpc("MerkleNodes"))?
            .into_inner()
            .hashes;
        if remote.len() != positions.len() {
            return Err(bad_reply(
                "MerkleNodes",
                format!("{} hashes for {} positions", remote.len(), positions.len()),
            ));
        }
        let remote: Vec<u128> = remote
            .iter()
            .map(|h| {
                <[u8; 16]>::try_from(h.as_ref())
                    .map(u128::from_le_bytes)
                    .map_err(|_| bad_reply("MerkleNodes", format!("a {}-byte hash", h.len())))
            })
            .collect::<Result<_, _>>()?;
        let mine: Vec<u128> = positions
            .iter()
            .map(|&p| local.hash_at(p).unwrap_or_default())
            .collect();
        let differing = differing_children(&positions, &mine, &remote);
        if differing.is_empty() {
            return Ok(Exchange::default());
        }
        if level == depth {
            positions = differing;
            break;
        }
        positions = differing.iter().flat_map(|p| [2 * p, 2 * p + 1]).collect();
    }

    let mut outcome = Exchange {
        differing_leaves: positions.len() as u64,
        ..Exchange::default()
    };
    for leaves in coalesce(local, &positions) {
        merge_leaves(
            storage,
            &mut client,
            leaves,
            throttle,
            timeout,
            &mut outcome,
        )
        .await?;
    }
    Ok(outcome)
}

/// Adjacent differing leaves as one range each (fewer scans and streams).
fn coalesce(tree: &MerkleTree, leaves: &[u64]) -> Vec<TokenRange> {
    let mut out: Vec<(u64, TokenRange)> = Vec::new();
    for &leaf in leaves {
        let Some(range) = tree.range_of(leaf) else {
            continue;
        };
        match out.last_mut() {
            Some((last, merged)) if *last + 1 == leaf => {
                merged.end = range.end;
                *last = leaf;
            }
            _ => out.push((leaf, range)),
        }
    }
    out.into_iter().map(|(_, r)| r).collect()
}

/// Merges one differing range both ways: the peer's keys this node lacks
/// are applied here, this node's keys the peer lacks are pushed there.
async fn merge_leaves(
    storage: &Arc<Storage>,
    client: &mut strata_proto::v1::replica_client::ReplicaClient<Channel>,
    range: TokenRange,
    throttle: &mut Throttle,
    timeout: Duration,
    outcome: &mut Exchange,
) -> Result<(), SessionError> {
    let mut request = tonic::Request::new(StreamRangeRequest {
        range: Some(v1::TokenRange {
            start: range.start.0,
            end: range.end.0,
        }),
        start_after: Vec::new().into(),
        max_batch_bytes: u32::try_from(BATCH_BYTES).unwrap_or(u32::MAX),
        stored_form: false,
    });
    request.set_timeout(timeout * 10);
    let mut stream = client
        .stream_range(request)
        .await
        .map_err(rpc("StreamRange"))?
        .into_inner();
    let mut remote: BTreeMap<Vec<u8>, Siblings> = BTreeMap::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(rpc("StreamRange"))?;
        let bytes = prost::Message::encoded_len(&batch) as u64;
        outcome.bytes += bytes;
        for entry in batch.entries {
            let versions = siblings_from_proto(entry.versions)
                .map_err(|e| bad_reply("StreamRange", format!("unreadable versions: {e}")))?;
            remote.insert(entry.key.to_vec(), versions);
        }
        throttle.consume(bytes).await;
    }

    let scanning = Arc::clone(storage);
    let local: Vec<RangeEntry> =
        tokio::task::spawn_blocking(move || scanning.entries(range)).await??;
    let mut local: BTreeMap<Vec<u8>, Siblings> =
        local.into_iter().map(|e| (e.key, e.siblings)).collect();

    // Take what the peer has and this node lacks.
    let mut applies = Vec::new();
    for (key, theirs) in &remote {
        let mine = local.entry(key.clone()).or_default();
        let mut merged = mine.clone();
        merged.merge(theirs);
        if merged != *mine {
            applies.push((key.clone(), theirs.clone()));
        }
    }
    futures::future::try_join_all(
        applies
            .iter()
            .map(|(key, theirs)| storage.apply_queued(key, theirs)),
    )
    .await?;
    outcome.keys_in += applies.len() as u64;

    // Send what this node has and the peer lacks.
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    for (key, mine) in &local {
        if mine.is_empty() {
            continue;
        }
        let theirs = remote.get(key).cloned().unwrap_or_default();
        let mut merged = theirs.clone();
        merged.merge(mine);
        if merged == theirs {
            continue;
        }
        let entry = KeyVersions {
            key: key.clone().into(),
            versions: mine.versions().iter().map(version_to_proto).collect(),
        };
        batch_bytes += prost::Message::encoded_len(&entry);
        batch.push(entry);
        if batch_bytes >= BATCH_BYTES {
            push(
                client,
                std::mem::take(&mut batch),
                timeout,
                throttle,
                outcome,
            )
            .await?;
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        push(client, batch, timeout, throttle, outcome).await?;
    }
    Ok(())
}

async fn push(
    client: &mut strata_proto::v1::replica_client::ReplicaClient<Channel>,
    entries: Vec<KeyVersions>,
    timeout: Duration,
    throttle: &mut Throttle,
    outcome: &mut Exchange,
) -> Result<(), SessionError> {
    let keys = entries.len() as u64;
    let batch = KeyVersionsBatch {
        entries,
        stored: Vec::new(),
    };
    let bytes = prost::Message::encoded_len(&batch) as u64;
    let mut request = tonic::Request::new(batch);
    request.set_timeout(timeout);
    client
        .apply_batch(request)
        .await
        .map_err(rpc("ApplyBatch"))?;
    outcome.keys_out += keys;
    outcome.bytes += bytes;
    throttle.consume(bytes).await;
    Ok(())
}
