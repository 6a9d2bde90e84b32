//! Strata's LSM-tree storage engine.
//!
//! Writes go to a write-ahead log, then a skiplist memtable; full memtables
//! become immutable and are flushed to SSTables on level 0, and leveled
//! compaction merges them down.
//!
//! **Architecture invariant:** synchronous, background work on std threads.
//! No tokio, no tonic, nothing about the network or the cluster: the engine
//! stores ordered byte keys and knows nothing about tokens or vector clocks.

mod batch;
mod cache;
mod coding;
mod compaction;
mod db;
mod direct;
mod error;
mod filter;
mod fs;
mod iter;
mod key;
mod memtable;
mod memtable_filter;
mod merge;
mod options;
mod record;
mod stall;
mod stats;
mod table;
mod table_cache;
mod version;

pub use batch::WriteBatch;
pub use db::{Db, DbIter, Ingested, Snapshot};
pub use error::{Error, Result};
pub use filter::CompactionFilter;
pub use fs::simulate_power_loss;
pub use key::{MAX_SEQ, SeqNo};
pub use merge::{MergeOperator, merge_each};
pub use options::{Durability, Options, WalRecovery};
pub use stall::{StallCause, StallEvent, StallTotal};
pub use stats::{LevelStats, Stats};
