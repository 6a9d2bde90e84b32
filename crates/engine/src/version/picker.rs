//! Leveled compaction policy, as pure functions over a [`Version`].
//!
//! Level 0 is compacted into level 1 when it holds `l0_trigger` files.
//! Level `n >= 1` is compacted into `n + 1` when its bytes exceed
//! `level_base_bytes * multiplier^(n-1)`. The level with the highest score
//! (fill ratio) goes first. Within a level the file whose overlap with the
//! next level is smallest relative to its size is chosen (RocksDB's
//! min-overlapping-ratio), which keeps write amplification down.

use std::sync::Arc;

use super::{FileMeta, Version};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PickerConfig {
    pub(crate) l0_trigger: usize,
    pub(crate) level_base_bytes: u64,
    pub(crate) level_multiplier: u64,
}

/// One compaction: merge `inputs` (from `level`) with `next_inputs` (from
/// `level + 1`) into new files on `level + 1`.
#[derive(Debug, Clone)]
pub(crate) struct CompactionTask {
    pub(crate) level: usize,
    pub(crate) inputs: Vec<Arc<FileMeta>>,
    pub(crate) next_inputs: Vec<Arc<FileMeta>>,
    /// No level below the output holds any key in the task's range, so
    /// tombstones and shadowed merge bases can be dropped.
    pub(crate) bottommost: bool,
}

impl CompactionTask {
    pub(crate) fn output_level(&self) -> usize {
        self.level + 1
    }

    /// A single file with nothing to merge: move it down without rewriting.
    pub(crate) fn is_trivial_move(&self) -> bool {
        self.inputs.len() == 1 && self.next_inputs.is_empty()
    }
}

pub(crate) fn level_target_bytes(config: &PickerConfig, level: usize) -> u64 {
    let exp = u32::try_from(level.saturating_sub(1)).unwrap_or(u32::MAX);
    config
        .level_base_bytes
        .saturating_mul(config.level_multiplier.saturating_pow(exp))
}

/// The most urgent compaction, if any level is over its target.
pub(crate) fn pick_compaction(version: &Version, config: &PickerConfig) -> Option<CompactionTask> {
    let last = version.levels.len() - 1;
    let mut best: Option<(f64, usize)> = None;
    for level in 0..last {
        let score = if level == 0 {
            version.levels[0].len() as f64 / config.l0_trigger as f64
        } else {
            version.level_bytes(level) as f64 / level_target_bytes(config, level) as f64
        };
        if score >= 1.0 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, level));
        }
    }
    let (_, level) = best?;
    let inputs = if level == 0 {
        version.levels[0].clone()
    } else {
        vec![min_overlap_file(version, level)?]
    };
    Some(task(version, level, inputs))
}

/// A compaction of every file of `level` overlapping user keys `[lo, hi]`
/// (`hi` of `None`: unbounded; all of level 0, whose files overlap each
/// other).
pub(crate) fn pick_manual(
    version: &Version,
    level: usize,
    lo: &[u8],
    hi: Option<&[u8]>,
) -> Option<CompactionTask> {
    if level + 1 >= version.levels.len() {
        return None;
    }
    let inputs: Vec<_> = if level == 0 {
        version.levels[0].clone()
    } else {
        version.levels[level]
            .iter()
            .filter(|f| f.user_largest() >= lo && hi.is_none_or(|hi| f.user_smallest() <= hi))
            .cloned()
            .collect()
    };
    if inputs.is_empty() {
        return None;
    }
    Some(task(version, level, inputs))
}

fn task(version: &Version, level: usize, inputs: Vec<Arc<FileMeta>>) -> CompactionTask {
    let (lo, hi) = user_range(&inputs);
    let next_inputs = version.overlapping(level + 1, lo, hi);
    let (lo, hi) = user_range(inputs.iter().chain(&next_inputs));
    let bottommost = (level + 2..version.levels.len())
        .all(|deeper| version.overlapping(deeper, lo, hi).is_empty());
    CompactionTask {
        level,
        inputs,
        next_inputs,
        bottommost,
    }
}

fn min_overlap_file(version: &Version, level: usize) -> Option<Arc<FileMeta>> {
    version.levels[level]
        .iter()
        .map(|f| {
            let overlap: u64 = version
                .overlapping(level + 1, f.user_smallest(), f.user_largest())
                .iter()
                .map(|g| g.size)
                .sum();
            (overlap as f64 / f.size.max(1) as f64, f)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.number.cmp(&b.1.number)))
        .map(|(_, f)| Arc::clone(f))
}

fn user_range<'a>(files: impl IntoIterator<Item = &'a Arc<FileMeta>>) -> (&'a [u8], &'a [u8]) {
    let mut files = files.into_iter();
    let first = files.next().expect("compactions have inputs");
    files.fold(
        (first.user_smallest(), first.user_largest()),
        |(lo, hi), f| (lo.min(f.user_smallest()), hi.max(f.user_largest())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{self, Kind};
    use crate::version::VersionEdit;

    const CONFIG: PickerConfig = PickerConfig {
        l0_trigger: 4,
        level_base_bytes: 1000,
        level_multiplier: 10,
    };

    fn file(number: u64, lo: &str, hi: &str, size: u64) -> Arc<FileMeta> {
        Arc::new(FileMeta::new(
            number,
            size,
            1,
            key::encode(lo.as_bytes(), 1, Kind::Put),
            key::encode(hi.as_bytes(), 1, Kind::Put),
            format!("/db/{number}.sst").into(),
        ))
    }

    fn version(files: Vec<(usize, Arc<FileMeta>)>) -> Version {
        Version::new(4).apply(&VersionEdit {
            added: files,
            ..VersionEdit::default()
        })
    }

    #[test]
    fn nothing_to_do_below_the_triggers() {
        let v = version(vec![
            (0, file(1, "a", "z", 10)),
            (1, file(2, "a", "m", 999)),
        ]);
        assert!(pick_compaction(&v, &CONFIG).is_none());
    }

    #[test]
    fn level0_at_trigger_takes_all_l0_files_and_overlapping_l1() {
        let mut files: Vec<_> = (1..=4).map(|n| (0, file(n, "c", "f", 10))).collect();
        files.push((1, file(10, "a", "b", 10)));
        files.push((1, file(11, "d", "e", 10)));
        let t = pick_compaction(&version(files), &CONFIG).expect("task");
        assert_eq!(t.level, 0);
        assert_eq!(t.inputs.len(), 4);
        assert_eq!(
            t.next_inputs.iter().map(|f| f.number).collect::<Vec<_>>(),
            [11]
        );
        assert!(t.bottommost);
    }

    #[test]
    fn oversized_level_picks_the_file_with_least_overlap_below() {
        let v = version(vec![
            (1, file(1, "a", "c", 600)),
            (1, file(2, "d", "f", 600)),
            (2, file(3, "a", "b", 5000)),
            (3, file(4, "x", "z", 10)),
        ]);
        let t = pick_compaction(&v, &CONFIG).expect("level 1 is over 1000 bytes");
        assert_eq!(t.level, 1);
        assert_eq!(t.inputs[0].number, 2, "file 2 overlaps nothing on level 2");
        assert!(t.is_trivial_move());
        assert!(t.bottommost, "level 3 holds only x..z");
    }

    #[test]
    fn deeper_overlap_clears_bottommost() {
        let v = version(vec![(1, file(1, "a", "c", 10)), (3, file(2, "b", "b", 10))]);
        let t = pick_manual(&v, 1, b"a", Some(b"z")).expect("task");
        assert!(!t.bottommost);
        assert!(
            pick_manual(&v, 1, b"d", None).is_none(),
            "nothing at or after d on level 1"
        );
        assert!(
            pick_manual(&v, 3, b"a", None).is_none(),
            "no level below the last"
        );
        assert!(pick_manual(&v, 2, b"a", None).is_none(), "level 2 is empty");
    }

    #[test]
    fn targets_grow_by_the_multiplier() {
        assert_eq!(level_target_bytes(&CONFIG, 1), 1000);
        assert_eq!(level_target_bytes(&CONFIG, 3), 100_000);
    }
}
