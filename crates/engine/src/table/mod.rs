//! Sorted string tables: immutable files of sorted internal keys with a
//! block index and a bloom filter. `format.rs` is the byte layout,
//! `block.rs` the prefix-compressed blocks, `bloom.rs` the filter,
//! `builder.rs` writes a table and `reader.rs` reads one.

pub(crate) mod block;
pub(crate) mod bloom;
pub(crate) mod builder;
pub(crate) mod format;
pub(crate) mod reader;

pub(crate) use builder::{TableBuilder, TableInfo};
pub(crate) use reader::{Table, TableIter};
