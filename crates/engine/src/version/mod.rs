//! Versions: which table files make up the database, by level.
//!
//! `file.rs` is one table's metadata, `edit.rs` the MANIFEST records that
//! change the file set, `set.rs` the MANIFEST writer and recovery, and
//! `picker.rs` the compaction policy as pure functions over a [`Version`].

mod edit;
mod file;
mod picker;
mod set;

pub(crate) use edit::VersionEdit;
pub(crate) use file::FileMeta;
pub(crate) use picker::{CompactionTask, PickerConfig, pick_compaction, pick_manual};
pub(crate) use set::{
    FileKind, Recovered, VersionSet, current_manifest, file_path, parse_file_name, sync_dir,
};

use std::sync::Arc;

use crate::key;

/// An immutable snapshot of the file set. Level 0 is ordered newest first
/// and its files may overlap; levels 1 and up are sorted by key and do not
/// overlap, so a user key is in at most one file per level.
#[derive(Debug, Clone, Default)]
pub(crate) struct Version {
    pub(crate) levels: Vec<Vec<Arc<FileMeta>>>,
}

impl Version {
    pub(crate) fn new(num_levels: usize) -> Self {
        Self {
            levels: vec![Vec::new(); num_levels],
        }
    }

    /// The version after `edit`; file metadata is shared, not copied.
    pub(crate) fn apply(&self, edit: &VersionEdit) -> Self {
        let mut levels = self.levels.clone();
        for (level, number) in &edit.deleted {
            levels[*level].retain(|f| f.number != *number);
        }
        for (level, file) in &edit.added {
            levels[*level].push(Arc::clone(file));
        }
        for (i, files) in levels.iter_mut().enumerate() {
            if i == 0 {
                files.sort_by_key(|f| std::cmp::Reverse(f.number));
            } else {
                files.sort_by(|a, b| key::compare(&a.smallest, &b.smallest));
            }
        }
        Self { levels }
    }

    pub(crate) fn level_bytes(&self, level: usize) -> u64 {
        self.levels[level].iter().map(|f| f.size).sum()
    }

    /// Files of `level` whose user-key range intersects `[lo, hi]`.
    pub(crate) fn overlapping(&self, level: usize, lo: &[u8], hi: &[u8]) -> Vec<Arc<FileMeta>> {
        self.levels[level]
            .iter()
            .filter(|f| f.user_smallest() <= hi && f.user_largest() >= lo)
            .cloned()
            .collect()
    }

    /// The file of a sorted level (1 and up) that may hold `user_key`.
    pub(crate) fn file_for(&self, level: usize, user_key: &[u8]) -> Option<&Arc<FileMeta>> {
        let files = &self.levels[level];
        let i = files.partition_point(|f| f.user_largest() < user_key);
        files.get(i).filter(|f| f.user_smallest() <= user_key)
    }

    /// The files that may hold `user_key` on levels below `levels`, in
    /// lookup order: level 0 newest first, then at most one per level.
    pub(crate) fn files_for<'a>(
        &'a self,
        user_key: &'a [u8],
        levels: usize,
    ) -> impl Iterator<Item = &'a Arc<FileMeta>> + 'a {
        let level0 = self.levels[0]
            .iter()
            .filter(move |f| f.user_smallest() <= user_key && user_key <= f.user_largest());
        let deeper = (1..levels).filter_map(move |level| self.file_for(level, user_key));
        level0.chain(deeper)
    }

    pub(crate) fn all_files(&self) -> impl Iterator<Item = (usize, &Arc<FileMeta>)> {
        self.levels
            .iter()
            .enumerate()
            .flat_map(|(level, files)| files.iter().map(move |f| (level, f)))
    }
}
