//! Metadata of one table file, shared by every version that contains it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::key;

/// A table file. When a compaction removes the file from the current
/// version it is marked obsolete; the file is deleted when the last version
/// (and so the last reader or iterator) holding this metadata lets go.
#[derive(Debug)]
pub(crate) struct FileMeta {
    pub(crate) number: u64,
    pub(crate) size: u64,
    pub(crate) entries: u64,
    /// Smallest and largest internal keys.
    pub(crate) smallest: Vec<u8>,
    pub(crate) largest: Vec<u8>,
    pub(crate) path: PathBuf,
    obsolete: AtomicBool,
}

impl FileMeta {
    pub(crate) fn new(
        number: u64,
        size: u64,
        entries: u64,
        smallest: Vec<u8>,
        largest: Vec<u8>,
        path: PathBuf,
    ) -> Self {
        Self {
            number,
            size,
            entries,
            smallest,
            largest,
            path,
            obsolete: AtomicBool::new(false),
        }
    }

    /// Metadata of the table `number` just written at `path`.
    pub(crate) fn from_built(number: u64, path: PathBuf, info: crate::table::TableInfo) -> Self {
        Self::new(
            number,
            info.size,
            info.entries,
            info.smallest,
            info.largest,
            path,
        )
    }

    pub(crate) fn user_smallest(&self) -> &[u8] {
        key::user_key(&self.smallest)
    }

    pub(crate) fn user_largest(&self) -> &[u8] {
        key::user_key(&self.largest)
    }

    pub(crate) fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }
}

impl Drop for FileMeta {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            // Best effort: a file left behind is collected at the next open.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
