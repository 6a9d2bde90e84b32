//! A node that starts with a new, empty data directory after an earlier
//! process under its id owned ranges (its disk was lost or wiped). A
//! founding member (`--initial-cluster` still names it) boots normal, as
//! founders do, so it would serve its ranges empty until the scheduled
//! repair (a Merkle repair of an empty replica measured 0.1 MiB/s: every
//! leaf differs); one started with `--auto-bootstrap false` (a pod beyond
//! the founders) waits for a join nobody asks for, its ranges held by one
//! replica fewer. Instead it says so and joins again under the same tokens
//! (`Changes::rejoin`): a pending owner of its own ranges, serving no
//! reads, streaming them from the other replicas, then normal.
//!
//! The node cannot tell by itself (its directory is new); the other
//! members can: each records every member's incarnation in its `RING`
//! file, marks a new incarnation that took its predecessor's ranges as a
//! normal member (`MemberRecord::lost_data`), and gossips the mark until
//! that incarnation joins. So it is recognised however long it was away,
//! as long as one member that knew it is up.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use strata_cluster::NodeId;

use crate::changes::Changes;
use crate::membership::Membership;

/// How long the node waits for the mark after it first sees another
/// member alive (a peer marks it within a few gossip rounds).
const WATCH: Duration = Duration::from_secs(60);
/// How often it looks meanwhile.
const EVERY: Duration = Duration::from_millis(250);

/// Watches gossip, for [`WATCH`] after another member is first seen
/// alive, for a member that recorded this incarnation as having lost its
/// data; then logs it and joins again to stream this node's ranges back.
/// Ends at `stop`.
pub async fn watch(
    membership: Arc<Membership>,
    changes: Arc<Changes>,
    me: NodeId,
    incarnation: u64,
    stop: impl Future<Output = ()>,
) {
    let work = async {
        // The other replicas must be up, for the mark and for streaming.
        while !membership
            .view()
            .nodes()
            .any(|(id, n)| n.alive && *id != me)
        {
            tokio::time::sleep(EVERY).await;
        }
        let deadline = tokio::time::Instant::now() + WATCH;
        let witnesses = loop {
            let witnesses = membership.lost_data_reported_by().await;
            if !witnesses.is_empty() {
                break witnesses;
            }
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(EVERY).await;
        };
        tracing::error!(
            incarnation = format_args!("{incarnation:x}"),
            reported_by = ?witnesses.iter().map(NodeId::as_str).collect::<Vec<_>>(),
            "this node started with a new data directory, but an earlier process under its id \
             owned ranges (its data directory was lost or wiped); joining again under the same \
             tokens to stream its ranges back from the other replicas (`strata progress` \
             follows it)"
        );
        match changes.rejoin().await {
            Ok(op) => {
                tracing::info!(operation = %op.id, "streaming this node's ranges back from the other replicas");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot stream this node's ranges back; run `strata repair` on it");
            }
        }
    };
    tokio::select! {
        () = work => {}
        () = stop => {}
    }
}
