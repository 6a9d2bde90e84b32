//! Strata's LSM-tree storage engine.
//!
//! Writes go to a write-ahead log, then a skiplist memtable; full memtables
//! become immutable and are flushed to SSTables on level 0, and leveled
//! compaction merges them down. This skeleton holds the engine's options and
//! error type; the storage structures land with the engine issue.
//!
//! **Architecture invariant:** synchronous, background work on std threads.
//! No tokio, no tonic, nothing about the network or the cluster: the engine
//! stores ordered byte keys and knows nothing about tokens or vector clocks.

mod error;
mod options;

pub use error::{Error, Result};
pub use options::{Durability, Options};
