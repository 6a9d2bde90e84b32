//! Test fixtures: a single-node coordinator over a temporary directory.

use std::sync::Arc;

use super::{Coordinator, CoordinatorError, ReadOutcome, WriteOutcome, WriteRequest};
use crate::context::Context;
use crate::dots::DotCounter;
use crate::testing::ContextBuilder;
use strata_cluster::ConsistencyLevel;

pub(super) fn coordinator(dir: &std::path::Path, factor: u32) -> Coordinator {
    coordinator_with(dir, factor, false)
}

pub(super) fn coordinator_with(
    dir: &std::path::Path,
    factor: u32,
    last_write_wins: bool,
) -> Coordinator {
    let ctx = ContextBuilder::new(dir)
        .factor(factor)
        .last_write_wins(last_write_wins)
        .build();
    on(ctx, dir)
}

/// A coordinator over `ctx`, its dots reserved in `dir`.
pub(super) fn on(ctx: Arc<Context>, dir: &std::path::Path) -> Coordinator {
    let dots = DotCounter::open(dir, ctx.id.clone()).expect("dots");
    Coordinator::new(ctx, dots)
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
            key: key.into(),
            value: value.map(Into::into),
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
            key: key.into(),
            value: value.map(Into::into),
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
