//! A node that starts with a new, empty data directory after an earlier
//! process under its id owned ranges (its disk was lost or wiped). A
//! founding member (`--initial-cluster` still names it) boots normal, as
//! founders do, so it would serve its ranges empty until the scheduled
//! repair; one started with `--auto-bootstrap false` (a pod beyond the
//! founders) waits for a join nobody asks for, its ranges held by one
//! replica fewer. Instead it joins again under the same tokens
//! (`Changes::rejoin`) and copies each range back from every other replica
//! (a write acknowledged by W replicas, the lost copy among them, may
//! survive on one of the others only).
//!
//! The node cannot tell by itself (its directory is new); the other
//! members can: each records every member's incarnation in its `RING`
//! file, marks a new incarnation that took its predecessor's ranges as a
//! normal member (`MemberRecord::lost_data`), and gossips the mark until
//! that incarnation joins. So it is recognised however long it was away,
//! as long as one member that knew it is up. A member marks it as soon as
//! it hears its state; in every run so far the mark came back before this
//! node's detector called its peers alive (docs/topology.md). From the
//! mark on, every node
//! (this one too) keeps it among its ranges' replicas for writes and reads
//! from the others (`NodeInfo::rejoining`); it says so itself (`rejoin`
//! in gossip, `<data_dir>/REJOIN`) from the start of the rejoin until its
//! ranges are back.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use strata_cluster::{NodeId, Rejoin};

use crate::changes::Changes;
use crate::membership::Membership;

/// How often it looks.
const EVERY: Duration = Duration::from_millis(250);
/// How long it waits after starting a rejoin (or being refused one)
/// before it looks again.
const RETRY: Duration = Duration::from_secs(5);

/// Watches, while this data directory has not got a lost one's ranges
/// back, for a member that recorded this incarnation as having lost its
/// data; then logs it and joins again (`Changes::rejoin`) to copy this
/// node's ranges back. A rejoin recorded as running (`<data_dir>/REJOIN`)
/// that stopped, failed, is started again. Ends once the ranges are back,
/// or at `stop`.
pub async fn watch(
    membership: Arc<Membership>,
    changes: Arc<Changes>,
    incarnation: u64,
    stop: impl Future<Output = ()>,
) {
    let work = async {
        let mut told = false;
        loop {
            tokio::time::sleep(EVERY).await;
            match changes.rejoin_state() {
                Ok(Rejoin::Done) => return,
                Ok(Rejoin::Running) => {}
                Ok(Rejoin::None) => {
                    if !membership.lost_data_marked() {
                        continue;
                    }
                    if !told {
                        told = true;
                        let witnesses = membership.lost_data_reported_by().await;
                        tracing::error!(
                            incarnation = format_args!("{incarnation:x}"),
                            reported_by = ?witnesses.iter().map(NodeId::as_str).collect::<Vec<_>>(),
                            "this node started with a new data directory, but an earlier process \
                             under its id owned ranges (its data directory was lost or wiped); \
                             joining again under the same tokens to copy its ranges back from the \
                             other replicas, serving no reads meanwhile (`strata progress` follows it)"
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read this node's rejoin state; looking again later");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
            match changes.rejoin().await {
                Ok(op) => {
                    tracing::info!(operation = %op.id, "copying this node's ranges back from the other replicas");
                }
                // Mostly the join resumed at start, still running.
                Err(e) => tracing::debug!(error = %e, "rejoin not started; trying again later"),
            }
            tokio::time::sleep(RETRY).await;
        }
    };
    tokio::select! {
        () = work => {}
        () = stop => {}
    }
}
