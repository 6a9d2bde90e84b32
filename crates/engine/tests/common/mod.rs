//! Shared fixtures for the engine's integration tests.

#![allow(dead_code, unreachable_pub, reason = "each test file uses a subset")]

use std::sync::Arc;

use strata_engine::{Durability, MergeOperator, Options};

/// Appends operands with commas: associative, as the contract requires.
#[derive(Debug)]
pub struct Append;

impl MergeOperator for Append {
    fn merge(&self, _key: &[u8], existing: Option<&[u8]>, operand: &[u8]) -> Vec<u8> {
        let mut out = existing.map(<[u8]>::to_vec).unwrap_or_default();
        if !out.is_empty() {
            out.push(b',');
        }
        out.extend_from_slice(operand);
        out
    }
}

/// Tiny memtables and levels, so that a few thousand writes exercise
/// flushes and every compaction path.
pub fn small_options() -> Options {
    Options {
        memtable_bytes: 16 << 10,
        block_bytes: 512,
        l0_compaction_trigger: 2,
        l0_slowdown_trigger: 4,
        l0_stop_trigger: 8,
        level_base_bytes: 32 << 10,
        target_file_bytes: 16 << 10,
        block_cache_bytes: 1 << 20,
        durability: Durability::None,
        merge_operator: Some(Arc::new(Append)),
        // Small, so the model test folds merge chains at write time often.
        max_successive_merges: 3,
        ..Options::default()
    }
}

pub fn key(i: u32) -> Vec<u8> {
    format!("key{i:08}").into_bytes()
}
