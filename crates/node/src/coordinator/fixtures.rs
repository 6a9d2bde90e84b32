//! Test fixtures: a single-node coordinator over a temporary directory.

use std::sync::Arc;
use std::time::Duration;

use strata_cluster::{ConsistencyLevel, NodeId};

use super::{
    Coordinator, CoordinatorError, ReadOutcome, Replication, Settings, Topology, WriteOutcome,
    WriteRequest,
};
use crate::dots::DotCounter;
use crate::hints::HintStore;
use crate::metrics::Metrics;
use crate::storage::Storage;

pub(super) fn coordinator(dir: &std::path::Path, factor: u32) -> Coordinator {
    coordinator_with(dir, factor, false)
}

pub(super) fn coordinator_with(
    dir: &std::path::Path,
    factor: u32,
    last_write_wins: bool,
) -> Coordinator {
    let node = NodeId::new("strata-0").expect("id");
    let storage = Arc::new(
        Storage::open(
            &dir.join("engine"),
            strata_engine::Durability::SyncEachGroup,
        )
        .expect("open"),
    );
    Coordinator::new(
        node.clone(),
        storage,
        DotCounter::open(dir, node.clone()).expect("dots"),
        Arc::new(
            HintStore::open(
                &dir.join("hints"),
                crate::hints::HintLimits::default(),
                crate::metrics::HintMetrics::default(),
            )
            .expect("hints"),
        ),
        Topology::single(&node, 16),
        Arc::new(Metrics::new()),
        Settings {
            replication: Replication {
                factor,
                write: ConsistencyLevel::Quorum,
                read: ConsistencyLevel::Quorum,
                last_write_wins,
            },
            max_value_bytes: 1024,
            request_timeout: Duration::from_secs(2),
            read_repair_period: 1,
        },
    )
}

impl Coordinator {
    /// A put or (with `value` `None`) delete carrying `request_id`.
    pub(super) async fn put_with_id(
        &self,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        context: &[u8],
        request_id: u64,
    ) -> Result<WriteOutcome, CoordinatorError> {
        self.write(WriteRequest {
            key,
            value,
            context,
            consistency: None,
            forwarded: false,
            request_id,
        })
        .await
    }

    pub(super) async fn put(
        &self,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        context: &[u8],
        consistency: Option<ConsistencyLevel>,
    ) -> Result<WriteOutcome, CoordinatorError> {
        self.write(WriteRequest {
            key,
            value,
            context,
            consistency,
            forwarded: false,
            request_id: 0,
        })
        .await
    }
}

pub(super) fn values(outcome: &ReadOutcome) -> Vec<&[u8]> {
    outcome.siblings.live_values().collect()
}
