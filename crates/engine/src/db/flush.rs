//! Writing a memtable to a level-0 table: the flush thread's work, and the
//! last step of WAL recovery.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::memtable::Memtable;
use crate::table::TableBuilder;
use crate::version::{FileKind, FileMeta, file_path};
use crate::{Options, Result};

/// Writes every entry of `mem` to a new, fsynced table; `None` when the
/// memtable is empty.
pub(crate) fn write_level0(
    dir: &Path,
    options: &Options,
    next_file: &AtomicU64,
    mem: &Memtable,
) -> Result<Option<FileMeta>> {
    if mem.is_empty() {
        return Ok(None);
    }
    let number = next_file.fetch_add(1, Ordering::SeqCst);
    let path = file_path(dir, FileKind::Table, number);
    let mut builder = TableBuilder::create(&path, options, 0, false)?;
    let mut result = Ok(());
    mem.for_each(|k, v| {
        if result.is_ok() {
            result = builder.add(k, v);
        }
    });
    result?;
    let info = builder.finish()?;
    Ok(Some(FileMeta::from_built(number, path, info)))
}
