//! Executing a compaction: merge the input tables, keep what some reader can
//! still see, and write new tables on the output level.
//!
//! [`collapse`] is the policy for one user key, a pure function: versions
//! newer than the oldest live snapshot are kept as they are; the versions
//! every reader sees the same way collapse into one entry (the newest put,
//! a tombstone, or merge operands folded together); a tombstone or a
//! resolved merge at the bottommost level needs nothing below it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::filter::CompactionFilter;
use crate::iter::{ConcatIterator, InternalIterator, MergingIterator};
use crate::key::{self, Kind, SeqNo};
use crate::merge::{self, MergeOperator};
use crate::table::TableBuilder;
use crate::table_cache::TableCache;
use crate::version::{CompactionTask, FileKind, FileMeta, VersionEdit, file_path};
use crate::{Options, Result};

/// One entry of a user key: sequence number, kind, value.
pub(crate) type Entry = (SeqNo, Kind, Vec<u8>);

/// The entries to keep for one user key. `entries` are newest first.
/// The collapsed value every reader sees the same way is offered to
/// `filter`; a dropped value becomes a tombstone, or nothing at the
/// bottommost level.
pub(crate) fn collapse(
    user_key: &[u8],
    entries: Vec<Entry>,
    oldest_snapshot: SeqNo,
    bottommost: bool,
    merge_op: Option<&dyn MergeOperator>,
    filter: Option<&dyn CompactionFilter>,
) -> Vec<Entry> {
    let split = entries.partition_point(|(seq, _, _)| *seq > oldest_snapshot);
    let mut entries = entries;
    let older = entries.split_off(split);
    let newer = entries.len();
    let mut kept = collapse_older(user_key, entries, older, bottommost, merge_op);
    if let (Some(filter), Some((seq, Kind::Put, value))) = (filter, kept.get(newer))
        && filter.drop_value(user_key, value)
    {
        let seq = *seq;
        kept.truncate(newer);
        if !bottommost {
            kept.push((seq, Kind::Delete, Vec::new()));
        }
    }
    kept
}

/// `kept` plus what `older` (every reader sees it the same way) collapses to.
fn collapse_older(
    user_key: &[u8],
    kept: Vec<Entry>,
    older: Vec<Entry>,
    bottommost: bool,
    merge_op: Option<&dyn MergeOperator>,
) -> Vec<Entry> {
    let mut kept = kept;
    let Some(top) = older.first() else {
        return kept;
    };
    match top.1 {
        Kind::Put => kept.push(older.into_iter().next().expect("non-empty")),
        Kind::Delete => {
            if !bottommost {
                kept.push(older.into_iter().next().expect("non-empty"));
            }
        }
        Kind::Merge => {
            let Some(op) = merge_op else {
                // Without an operator nothing can be combined; keep it all
                // so a later open with the operator loses nothing.
                kept.extend(older);
                return kept;
            };
            let run = older.iter().take_while(|e| e.1 == Kind::Merge).count();
            let base = older.get(run);
            let operands = older[..run].iter().rev().map(|e| e.2.as_slice());
            let top_seq = top.0;
            match base {
                Some((_, Kind::Put, value)) => {
                    let merged = merge::fold(op, user_key, Some(value), operands);
                    kept.push((top_seq, Kind::Put, merged.expect("operands are non-empty")));
                }
                Some((_, Kind::Delete, _)) => {
                    let merged = merge::fold(op, user_key, None, operands);
                    kept.push((top_seq, Kind::Put, merged.expect("operands are non-empty")));
                }
                None if bottommost => {
                    let merged = merge::fold(op, user_key, None, operands);
                    kept.push((top_seq, Kind::Put, merged.expect("operands are non-empty")));
                }
                _ => {
                    // The base may be on a deeper level: pre-combine the
                    // operands into one (the operator is associative).
                    let mut operands = operands;
                    let first = operands.next().expect("operands are non-empty");
                    let combined = merge::fold(op, user_key, Some(first), operands);
                    kept.push((top_seq, Kind::Merge, combined.expect("has a base")));
                }
            }
        }
    }
    kept
}

/// What a compaction or flush needs from the database.
pub(crate) struct Context<'a> {
    pub(crate) dir: &'a std::path::Path,
    pub(crate) options: &'a Options,
    pub(crate) next_file: &'a AtomicU64,
    pub(crate) tables: &'a TableCache,
}

/// Output of one compaction.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) edit: VersionEdit,
    pub(crate) bytes_read: u64,
    pub(crate) bytes_written: u64,
}

pub(crate) fn run(
    ctx: &Context<'_>,
    task: &CompactionTask,
    oldest_snapshot: SeqNo,
) -> Result<Outcome> {
    let mut edit = VersionEdit::default();
    for f in &task.inputs {
        edit.deleted.push((task.level, f.number));
    }
    for f in &task.next_inputs {
        edit.deleted.push((task.output_level(), f.number));
    }
    if task.is_trivial_move() {
        edit.added
            .push((task.output_level(), Arc::clone(&task.inputs[0])));
        return Ok(Outcome {
            edit,
            bytes_read: 0,
            bytes_written: 0,
        });
    }
    let mut bytes_read = 0;
    let mut open = |files: &[Arc<FileMeta>]| -> Result<Vec<Box<dyn InternalIterator>>> {
        let mut iters: Vec<Box<dyn InternalIterator>> = Vec::with_capacity(files.len());
        for f in files {
            // Read ahead, and keep the inputs (soon deleted) out of the cache.
            iters.push(Box::new(ctx.tables.get(f)?.iter_bulk()));
            bytes_read += f.size;
        }
        Ok(iters)
    };
    // Level-0 tables overlap: one child each. A deeper level's tables are
    // disjoint: one concatenated child, so each step compares few keys.
    let mut children = if task.level == 0 {
        open(&task.inputs)?
    } else {
        vec![Box::new(ConcatIterator::new(open(&sorted(&task.inputs))?))
            as Box<dyn InternalIterator>]
    };
    if !task.next_inputs.is_empty() {
        children.push(Box::new(ConcatIterator::new(open(&sorted(
            &task.next_inputs,
        ))?)));
    }
    let mut input = MergingIterator::new(children);
    input.seek_to_first()?;

    let mut output = Output::new(ctx, task.output_level());
    let merge_op = ctx.options.merge_operator.as_deref();
    let filter = ctx.options.compaction_filter.as_deref();
    let mut user_key: Vec<u8> = Vec::new();
    let mut group: Vec<Entry> = Vec::new();
    loop {
        // Whether the input's entry is another version of `user_key`.
        let same = match input.valid().then(|| key::user_key(input.key())) {
            Some(next) if !group.is_empty() => match next.cmp(user_key.as_slice()) {
                std::cmp::Ordering::Equal => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Less => return Err(out_of_order(ctx, task)),
            },
            _ => false,
        };
        if !same && !group.is_empty() {
            let kept = collapse(
                &user_key,
                std::mem::take(&mut group),
                oldest_snapshot,
                task.bottommost,
                merge_op,
                filter,
            );
            output.add_user_key(&user_key, &kept)?;
        }
        if !input.valid() {
            break;
        }
        let parsed = key::parse(input.key()).expect("table iterators yield valid keys");
        if !same {
            user_key.clear();
            user_key.extend_from_slice(parsed.user_key);
        }
        group.push((parsed.seq, parsed.kind, input.value().to_vec()));
        input.next()?;
    }
    let (files, bytes_written) = output.finish()?;
    for f in files {
        edit.added.push((task.output_level(), Arc::new(f)));
    }
    Ok(Outcome {
        edit,
        bytes_read,
        bytes_written,
    })
}

/// The error for inputs whose merged keys go backwards: tables of one level
/// above 0 overlap, which the MANIFEST must never record (a damaged one).
fn out_of_order(ctx: &Context<'_>, task: &CompactionTask) -> crate::Error {
    let file = task.next_inputs.first().unwrap_or(&task.inputs[0]);
    crate::Error::corruption(
        file_path(ctx.dir, FileKind::Table, file.number),
        0,
        format!(
            "compaction inputs of levels {} and {} yield keys out of order: tables of one level overlap",
            task.level,
            task.output_level()
        ),
    )
}

/// A level's tables in key order (they do not overlap).
fn sorted(files: &[Arc<FileMeta>]) -> Vec<Arc<FileMeta>> {
    let mut files = files.to_vec();
    files.sort_by(|a, b| key::compare(&a.smallest, &b.smallest));
    files
}

/// Writes a sequence of output tables, starting a new one at a user-key
/// boundary once the current one reaches the target size (so that all
/// versions of a key stay in one file per level).
struct Output<'a> {
    ctx: &'a Context<'a>,
    level: usize,
    builder: Option<(u64, TableBuilder)>,
    files: Vec<FileMeta>,
    bytes_written: u64,
}

impl<'a> Output<'a> {
    fn new(ctx: &'a Context<'a>, level: usize) -> Self {
        Self {
            ctx,
            level,
            builder: None,
            files: Vec::new(),
            bytes_written: 0,
        }
    }

    fn add_user_key(&mut self, user_key: &[u8], entries: &[Entry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        if self.builder.is_none() {
            let number = self.ctx.next_file.fetch_add(1, Ordering::SeqCst);
            let path = file_path(self.ctx.dir, FileKind::Table, number);
            let level = self.level;
            self.builder = Some((
                number,
                TableBuilder::create(&path, self.ctx.options, level, false)?,
            ));
        }
        let (_, builder) = self.builder.as_mut().expect("just created");
        for (seq, kind, value) in entries {
            builder.add(&key::encode(user_key, *seq, *kind), value)?;
        }
        if builder.estimated_size() >= self.ctx.options.target_file_bytes {
            self.close_table()?;
        }
        Ok(())
    }

    fn close_table(&mut self) -> Result<()> {
        if let Some((number, builder)) = self.builder.take() {
            let info = builder.finish()?;
            self.bytes_written += info.size;
            let path = file_path(self.ctx.dir, FileKind::Table, number);
            self.files.push(FileMeta::from_built(number, path, info));
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(Vec<FileMeta>, u64)> {
        self.close_table()?;
        Ok((self.files, self.bytes_written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::Append;

    fn e(seq: SeqNo, kind: Kind, v: &str) -> Entry {
        (seq, kind, v.as_bytes().to_vec())
    }

    #[test]
    fn newest_put_shadows_older_versions_when_no_snapshot_needs_them() {
        let kept = collapse(
            b"k",
            vec![e(9, Kind::Put, "new"), e(5, Kind::Put, "old")],
            100,
            false,
            None,
            None,
        );
        assert_eq!(kept, vec![e(9, Kind::Put, "new")]);
    }

    #[test]
    fn versions_newer_than_the_oldest_snapshot_are_kept() {
        let input = vec![
            e(9, Kind::Put, "c"),
            e(7, Kind::Put, "b"),
            e(3, Kind::Put, "a"),
        ];
        let kept = collapse(b"k", input, 7, false, None, None);
        assert_eq!(kept, vec![e(9, Kind::Put, "c"), e(7, Kind::Put, "b")]);
    }

    #[test]
    fn tombstones_drop_only_at_the_bottommost_level() {
        let input = vec![e(9, Kind::Delete, ""), e(5, Kind::Put, "old")];
        assert_eq!(
            collapse(b"k", input.clone(), 100, false, None, None),
            vec![e(9, Kind::Delete, "")]
        );
        assert_eq!(collapse(b"k", input, 100, true, None, None), vec![]);
    }

    #[test]
    fn merges_fold_onto_their_base_or_precombine_without_one() {
        let with_base = vec![
            e(9, Kind::Merge, "c"),
            e(8, Kind::Merge, "b"),
            e(5, Kind::Put, "a"),
        ];
        assert_eq!(
            collapse(b"k", with_base, 100, false, Some(&Append), None),
            vec![e(9, Kind::Put, "a,b,c")]
        );

        let after_delete = vec![e(9, Kind::Merge, "c"), e(5, Kind::Delete, "")];
        assert_eq!(
            collapse(b"k", after_delete, 100, false, Some(&Append), None),
            vec![e(9, Kind::Put, "c")]
        );

        let no_base = vec![e(9, Kind::Merge, "c"), e(8, Kind::Merge, "b")];
        assert_eq!(
            collapse(b"k", no_base.clone(), 100, false, Some(&Append), None),
            vec![e(9, Kind::Merge, "b,c")]
        );
        assert_eq!(
            collapse(b"k", no_base.clone(), 100, true, Some(&Append), None),
            vec![e(9, Kind::Put, "b,c")]
        );
        assert_eq!(
            collapse(b"k", no_base.clone(), 100, true, None, None),
            no_base,
            "no operator: keep all"
        );
    }

    /// Drops values that start with "dead".
    #[derive(Debug)]
    struct DropDead;

    impl CompactionFilter for DropDead {
        fn drop_value(&self, _: &[u8], value: &[u8]) -> bool {
            value.starts_with(b"dead")
        }
    }

    #[test]
    fn a_filtered_value_becomes_a_tombstone_or_disappears_at_the_bottom() {
        let input = vec![e(9, Kind::Put, "dead:1"), e(5, Kind::Put, "alive")];
        assert_eq!(
            collapse(b"k", input.clone(), 100, false, None, Some(&DropDead)),
            vec![e(9, Kind::Delete, "")],
            "the older value below must stay hidden"
        );
        assert_eq!(
            collapse(b"k", input, 100, true, None, Some(&DropDead)),
            vec![]
        );
        // A live value is untouched; so is one a snapshot still needs
        // (newer than the oldest snapshot), and the merge result decides.
        let live = vec![e(9, Kind::Put, "alive")];
        assert_eq!(
            collapse(b"k", live.clone(), 100, true, None, Some(&DropDead)),
            live
        );
        let snapshot = vec![e(9, Kind::Put, "dead:2"), e(5, Kind::Put, "dead:1")];
        assert_eq!(
            collapse(b"k", snapshot, 7, true, None, Some(&DropDead)),
            vec![e(9, Kind::Put, "dead:2")]
        );
        let merged = vec![e(9, Kind::Merge, "x"), e(5, Kind::Put, "dead")];
        assert_eq!(
            collapse(b"k", merged, 100, true, Some(&Append), Some(&DropDead)),
            vec![],
            "the folded value 'dead,x' is offered to the filter"
        );
    }

    /// A table of `keys` (each a put at `seq`) on `level`.
    fn table(ctx: &Context<'_>, level: usize, keys: &[&str], seq: SeqNo) -> Arc<FileMeta> {
        let number = ctx.next_file.fetch_add(1, Ordering::SeqCst);
        let path = file_path(ctx.dir, FileKind::Table, number);
        let mut builder = TableBuilder::create(&path, ctx.options, level, false).expect("create");
        for k in keys {
            builder
                .add(&key::encode(k.as_bytes(), seq, Kind::Put), k.as_bytes())
                .expect("add");
        }
        Arc::new(FileMeta::from_built(
            number,
            path,
            builder.finish().expect("finish"),
        ))
    }

    fn with_context(f: impl FnOnce(&Context<'_>)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = Options::default();
        let next_file = AtomicU64::new(1);
        let tables = TableCache::new(16, Arc::new(crate::cache::BlockCache::new(1 << 20)));
        f(&Context {
            dir: dir.path(),
            options: &options,
            next_file: &next_file,
            tables: &tables,
        });
    }

    /// Every (user key, seq) in the tables, in order.
    fn contents(ctx: &Context<'_>, files: &[Arc<FileMeta>]) -> Vec<(String, SeqNo)> {
        let mut out = Vec::new();
        for f in files {
            let mut it = ctx.tables.get(f).expect("open").iter();
            it.seek_to_first().expect("seek");
            while it.valid() {
                let p = key::parse(it.key()).expect("key");
                out.push((String::from_utf8(p.user_key.to_vec()).expect("utf8"), p.seq));
                it.next().expect("next");
            }
        }
        out
    }

    #[test]
    fn merges_overlapping_level0_tables_into_the_disjoint_level_below() {
        with_context(|ctx| {
            let task = CompactionTask {
                level: 0,
                inputs: vec![
                    table(ctx, 0, &["b", "m", "x"], 9),
                    table(ctx, 0, &["a", "m", "y"], 8),
                ],
                // Given out of key order: the compaction sorts them.
                next_inputs: vec![
                    table(ctx, 1, &["n", "x", "z"], 2),
                    table(ctx, 1, &["c", "m"], 1),
                ],
                bottommost: true,
            };
            let out = run(ctx, &task, key::MAX_SEQ).expect("compaction");
            let added: Vec<_> = out.edit.added.iter().map(|(_, f)| Arc::clone(f)).collect();
            let keys = ["a", "b", "c", "m", "n", "x", "y", "z"];
            let seqs = [8, 9, 1, 9, 2, 9, 8, 2];
            let expected: Vec<_> = keys.iter().map(ToString::to_string).zip(seqs).collect();
            assert_eq!(contents(ctx, &added), expected);
        });
    }

    #[test]
    fn overlapping_tables_on_a_deeper_level_are_reported_not_merged_out_of_order() {
        with_context(|ctx| {
            let task = CompactionTask {
                level: 1,
                inputs: vec![table(ctx, 1, &["k"], 5)],
                // A damaged MANIFEST: two level-2 tables that overlap.
                next_inputs: vec![table(ctx, 2, &["a", "m"], 1), table(ctx, 2, &["c", "z"], 2)],
                bottommost: true,
            };
            let err = run(ctx, &task, 0).expect_err("overlap must be refused");
            assert!(
                matches!(err, crate::Error::Corruption { .. })
                    && err.to_string().contains("out of order"),
                "{err}"
            );
        });
    }
}
