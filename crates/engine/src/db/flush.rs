//! Writing a memtable to a level-0 table: the flush thread's work, and the
//! last step of WAL recovery.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::compaction;
use crate::key::{self, SeqNo};
use crate::memtable::{MemEntry, Memtable};
use crate::table::TableBuilder;
use crate::version::{FileKind, FileMeta, file_path};
use crate::{MergeOperator, Options, Result};

/// Writes `mem` to a new, fsynced table; `None` when the memtable is
/// empty. A user key's versions that every reader sees the same way (at or
/// below `oldest_snapshot`) collapse as in a compaction
/// ([`compaction::collapse`]): overwritten values are not written, and a
/// chain of merge operands becomes one (folded onto its put or delete when
/// that is in the memtable too). Nothing is bottommost here: tombstones
/// stay.
pub(crate) fn write_level0(
    dir: &Path,
    options: &Options,
    next_file: &AtomicU64,
    mem: &Memtable,
    oldest_snapshot: SeqNo,
) -> Result<Option<FileMeta>> {
    if mem.is_empty() {
        return Ok(None);
    }
    let number = next_file.fetch_add(1, Ordering::SeqCst);
    let path = file_path(dir, FileKind::Table, number);
    let mut builder = TableBuilder::create(&path, options, 0, false)?;
    let merge_op = options.merge_operator.as_deref();
    let mut result = Ok(());
    mem.for_each_key(|entries| {
        if result.is_ok() {
            result = add_key(&mut builder, entries, oldest_snapshot, merge_op);
        }
    });
    result?;
    let info = builder.finish()?;
    Ok(Some(FileMeta::from_built(number, path, info)))
}

/// Adds one user key's entries (newest first), collapsed.
fn add_key(
    builder: &mut TableBuilder,
    entries: &[MemEntry<'_>],
    oldest_snapshot: SeqNo,
    merge_op: Option<&dyn MergeOperator>,
) -> Result<()> {
    // Most keys have one entry: nothing to collapse, nothing to copy.
    if let [only] = entries {
        return builder.add(only.ikey(), only.value());
    }
    let Some(first) = entries.first() else {
        return Ok(());
    };
    let user_key = key::user_key(first.ikey());
    let versions: Vec<compaction::Entry> = entries
        .iter()
        .map(|e| {
            let p = key::parse(e.ikey()).expect("memtables hold valid keys");
            (p.seq, p.kind, e.value().to_vec())
        })
        .collect();
    for (seq, kind, value) in
        compaction::collapse(user_key, versions, oldest_snapshot, false, merge_op, None)
    {
        builder.add(&key::encode(user_key, seq, kind), &value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::cache::BlockCache;
    use crate::iter::InternalIterator as _;
    use crate::key::Kind;
    use crate::merge::Append;
    use crate::table::Table;
    use crate::table::bloom;

    /// Flushes `mem` at `oldest_snapshot` and lists the table's entries.
    fn flushed(mem: &Memtable, oldest_snapshot: SeqNo) -> Vec<(String, SeqNo, Kind, String)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = Options {
            merge_operator: Some(Arc::new(Append)),
            ..Options::default()
        };
        let next = AtomicU64::new(7);
        let meta = write_level0(dir.path(), &options, &next, mem, oldest_snapshot)
            .expect("flush")
            .expect("a table");
        let table = Arc::new(
            Table::open(&meta.path, meta.number, Arc::new(BlockCache::new(1 << 20))).expect("open"),
        );
        let mut it = table.iter();
        it.seek_to_first().expect("seek");
        let mut out = Vec::new();
        while it.valid() {
            let p = key::parse(it.key()).expect("valid key");
            let text = |b: &[u8]| String::from_utf8(b.to_vec()).expect("utf-8");
            out.push((text(p.user_key), p.seq, p.kind, text(it.value())));
            it.next().expect("next");
        }
        out
    }

    fn memtable(entries: &[(SeqNo, Kind, &str, &str)]) -> Memtable {
        let mem = Memtable::new(1, 1 << 16);
        for (seq, kind, k, v) in entries {
            mem.insert(
                *seq,
                *kind,
                k.as_bytes(),
                bloom::hash(k.as_bytes()),
                v.as_bytes(),
            );
        }
        mem
    }

    #[test]
    fn a_flush_writes_what_readers_can_see_and_folds_merge_chains() {
        let mem = memtable(&[
            (1, Kind::Put, "a", "a1"),
            (2, Kind::Put, "a", "a2"),
            (3, Kind::Put, "b", "b1"),
            (4, Kind::Merge, "b", "x"),
            (5, Kind::Merge, "b", "y"),
            (6, Kind::Merge, "c", "p"),
            (7, Kind::Merge, "c", "q"),
            (8, Kind::Put, "d", "d1"),
            (9, Kind::Delete, "d", ""),
            (10, Kind::Put, "e", "only"),
        ]);
        let s = |k: &str, seq, kind, v: &str| (k.to_owned(), seq, kind, v.to_owned());
        assert_eq!(
            flushed(&mem, 10),
            vec![
                s("a", 2, Kind::Put, "a2"),
                s("b", 5, Kind::Put, "b1,x,y"),
                // No base here: the operands pre-combine into one.
                s("c", 7, Kind::Merge, "p,q"),
                // Not bottommost: the tombstone stays, what it hides goes.
                s("d", 9, Kind::Delete, ""),
                s("e", 10, Kind::Put, "only"),
            ]
        );
    }

    #[test]
    fn versions_a_snapshot_still_reads_survive_the_flush() {
        let mem = memtable(&[
            (1, Kind::Put, "a", "a1"),
            (2, Kind::Put, "a", "a2"),
            (3, Kind::Put, "a", "a3"),
            (4, Kind::Merge, "a", "m"),
        ]);
        let s = |seq, kind, v: &str| ("a".to_owned(), seq, kind, v.to_owned());
        // A reader at sequence 2 needs a2; a3 and the operand are newer.
        assert_eq!(
            flushed(&mem, 2),
            vec![
                s(4, Kind::Merge, "m"),
                s(3, Kind::Put, "a3"),
                s(2, Kind::Put, "a2")
            ]
        );
    }
}
