//! Operation histories and the checker that no acknowledged write is lost.
//!
//! Every write puts a value unique to the whole run, with the context of
//! the read just before it, so the history says which values each write
//! saw (and so superseded). After heal and repair the checker reads the
//! final sibling values of every key and accounts for each acknowledged
//! write: its value is still there (current value or a sibling), or some
//! write that saw it took effect — its own value is accounted for in turn.
//! A write that failed may still have taken effect; it counts only when
//! its value (or a successor's) survives, so failures never hide a loss.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged at the requested consistency.
    Acked,
    /// Failed or timed out: it may or may not have taken effect.
    Failed,
}

/// One write in the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The key.
    pub key: String,
    /// The unique value written.
    pub value: String,
    /// The values its context came from (the read before it).
    pub saw: Vec<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// When its answer arrived.
    pub ended: std::time::Instant,
}

/// One read in the history: the values it returned, or `None` if it
/// failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The key.
    pub key: String,
    /// Sibling values returned.
    pub values: Option<Vec<String>>,
    /// When it was sent.
    pub started: std::time::Instant,
}

/// Everything clients did, shared by the client tasks.
#[derive(Debug, Default)]
pub struct History {
    writes: Mutex<Vec<Write>>,
    reads: Mutex<Vec<Read>>,
}

/// What the checker found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Writes acknowledged.
    pub acked_writes: usize,
    /// Writes that failed or timed out.
    pub failed_writes: usize,
    /// Reads sent after a write of their key was acknowledged that
    /// returned neither its value nor one that superseded it: `(key,
    /// value missed)`. With W + R > N there must be none.
    pub stale_reads: Vec<(String, String)>,
    /// Reads that succeeded / failed.
    pub reads: (u64, u64),
    /// Acknowledged writes whose value is gone with nothing that saw it
    /// surviving: `(key, value)`.
    pub lost: Vec<(String, String)>,
    /// Keys that ended with more than one sibling.
    pub keys_with_siblings: usize,
    /// Values a read returned that no client wrote to that key:
    /// `(key, value)`.
    pub phantoms: Vec<(String, String)>,
}

impl History {
    /// Records a write.
    pub fn write(&self, write: Write) {
        self.writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(write);
    }

    /// Records a read and its result.
    pub fn read(&self, read: Read) {
        self.reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(read);
    }

    /// Every read so far.
    #[must_use]
    pub fn reads(&self) -> Vec<Read> {
        self.reads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Every write so far.
    #[must_use]
    pub fn writes(&self) -> Vec<Write> {
        self.writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Checks the history against the final live values of each key.
    #[must_use]
    pub fn check(&self, last: &HashMap<String, Vec<String>>) -> Verdict {
        let reads = self.reads();
        let writes = self.writes();
        let ok = reads.iter().filter(|r| r.values.is_some()).count() as u64;
        let mut verdict = check(&writes, last);
        verdict.reads = (ok, reads.len() as u64 - ok);
        let written: HashSet<(&str, &str)> = writes
            .iter()
            .map(|w| (w.key.as_str(), w.value.as_str()))
            .collect();
        for read in &reads {
            for value in read.values.iter().flatten() {
                if !written.contains(&(read.key.as_str(), value.as_str())) {
                    verdict.phantoms.push((read.key.clone(), value.clone()));
                }
            }
        }
        verdict.stale_reads = stale_reads(&writes, &reads);
        verdict
    }
}

/// The checker (pure): see the module docs.
#[must_use]
pub fn check(writes: &[Write], last: &HashMap<String, Vec<String>>) -> Verdict {
    // Per key: which writes saw each value.
    let mut seen_by: BTreeMap<(&str, &str), Vec<&Write>> = BTreeMap::new();
    for w in writes {
        for v in &w.saw {
            seen_by.entry((&w.key, v)).or_default().push(w);
        }
    }
    let mut memo: HashMap<(String, String), bool> = HashMap::new();
    let mut lost = Vec::new();
    for w in writes.iter().filter(|w| w.outcome == Outcome::Acked) {
        if !accounted(
            &w.key,
            &w.value,
            last,
            &seen_by,
            &mut memo,
            &mut HashSet::new(),
        ) {
            lost.push((w.key.clone(), w.value.clone()));
        }
    }
    Verdict {
        acked_writes: writes
            .iter()
            .filter(|w| w.outcome == Outcome::Acked)
            .count(),
        failed_writes: writes
            .iter()
            .filter(|w| w.outcome == Outcome::Failed)
            .count(),
        reads: (0, 0),
        stale_reads: Vec::new(),
        lost,
        keys_with_siblings: last.values().filter(|v| v.len() > 1).count(),
        phantoms: Vec::new(),
    }
}

/// Reads that missed a write acknowledged before they were sent: the value
/// is neither among the values read nor superseded by one of them.
///
/// Per read: the values it covers are its own and, transitively, those
/// their writes saw; every write of the key acknowledged before the read
/// was sent must be among them. Linear in reads times the key's writes.
fn stale_reads(writes: &[Write], reads: &[Read]) -> Vec<(String, String)> {
    // Per key: value -> the values its write saw.
    let mut saw: HashMap<(&str, &str), &[String]> = HashMap::new();
    // Per key: acknowledged writes by the time they ended.
    let mut acked: HashMap<&str, Vec<&Write>> = HashMap::new();
    for w in writes {
        saw.insert((w.key.as_str(), w.value.as_str()), &w.saw);
        if w.outcome == Outcome::Acked {
            acked.entry(w.key.as_str()).or_default().push(w);
        }
    }
    for list in acked.values_mut() {
        list.sort_by_key(|w| w.ended);
    }
    let mut stale = Vec::new();
    for read in reads {
        let Some(values) = &read.values else { continue };
        let Some(before) = acked.get(read.key.as_str()) else {
            continue;
        };
        let earlier = &before[..before.partition_point(|w| w.ended < read.started)];
        if earlier.is_empty() {
            continue;
        }
        let mut covered: HashSet<&str> = HashSet::new();
        let mut stack: Vec<&str> = values.iter().map(String::as_str).collect();
        while let Some(v) = stack.pop() {
            if covered.insert(v) {
                for seen in saw
                    .get(&(read.key.as_str(), v))
                    .copied()
                    .unwrap_or_default()
                {
                    stack.push(seen.as_str());
                }
            }
        }
        for w in earlier {
            if !covered.contains(w.value.as_str()) {
                stale.push((w.key.clone(), w.value.clone()));
            }
        }
    }
    stale
}

/// Whether `value` of `key` survives or was superseded by a write that
/// itself is accounted for.
fn accounted(
    key: &str,
    value: &str,
    last: &HashMap<String, Vec<String>>,
    seen_by: &BTreeMap<(&str, &str), Vec<&Write>>,
    memo: &mut HashMap<(String, String), bool>,
    visiting: &mut HashSet<(String, String)>,
) -> bool {
    let id = (key.to_owned(), value.to_owned());
    if let Some(&known) = memo.get(&id) {
        return known;
    }
    if last
        .get(key)
        .is_some_and(|vs| vs.iter().any(|v| v == value))
    {
        memo.insert(id, true);
        return true;
    }
    // Values are unique and a write only sees earlier values, so there
    // are no cycles; the guard keeps a malformed history from recursing.
    if !visiting.insert(id.clone()) {
        return false;
    }
    let successors: Vec<&Write> = seen_by.get(&(key, value)).cloned().unwrap_or_default();
    let result = successors
        .iter()
        .any(|s| accounted(&s.key, &s.value, last, seen_by, memo, visiting));
    memo.insert(id, result);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(key: &str, value: &str, saw: &[&str], outcome: Outcome) -> Write {
        Write {
            key: key.to_owned(),
            value: value.to_owned(),
            saw: saw.iter().map(|s| (*s).to_owned()).collect(),
            outcome,
            ended: std::time::Instant::now(),
        }
    }

    #[test]
    fn a_read_after_an_acknowledged_write_must_return_it_or_a_successor() {
        let before = std::time::Instant::now();
        let mut a = w("k", "a", &[], Outcome::Acked);
        a.ended = before;
        let b = w("k", "b", &["a"], Outcome::Acked);
        let after = std::time::Instant::now() + std::time::Duration::from_millis(1);
        let read = |values: &[&str], started| Read {
            key: "k".into(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
            started,
        };
        let writes = vec![a, b];
        // "b" superseded "a": a read of "b" is not stale; a read of
        // nothing, sent after both, misses both.
        assert!(stale_reads(&writes, &[read(&["b"], after)]).is_empty());
        assert_eq!(
            stale_reads(&writes, &[read(&[], after)]),
            [
                ("k".to_owned(), "a".to_owned()),
                ("k".to_owned(), "b".to_owned())
            ]
        );
        // A read sent before the write ended may miss it.
        assert!(stale_reads(&writes[..1], &[read(&[], before)]).is_empty());
    }

    fn last(entries: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
        entries
            .iter()
            .map(|(k, vs)| {
                (
                    (*k).to_owned(),
                    vs.iter().map(|v| (*v).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn superseded_values_are_accounted_for_through_chains() {
        let writes = [
            w("k", "a", &[], Outcome::Acked),
            w("k", "b", &["a"], Outcome::Acked),
            w("k", "c", &["b"], Outcome::Failed),
            w("k", "d", &[], Outcome::Acked),
        ];
        // c took effect (it survives), so a and b are superseded; d is a sibling.
        let verdict = check(&writes, &last(&[("k", &["c", "d"])]));
        assert_eq!(verdict.lost, []);
        assert_eq!((verdict.acked_writes, verdict.failed_writes), (3, 1));
        assert_eq!(verdict.keys_with_siblings, 1);
    }

    #[test]
    fn a_vanished_value_with_no_surviving_successor_is_lost() {
        let writes = [
            w("k", "a", &[], Outcome::Acked),
            // Saw a, but never took effect: its value is nowhere.
            w("k", "b", &["a"], Outcome::Failed),
            w("j", "x", &[], Outcome::Acked),
        ];
        let verdict = check(&writes, &last(&[("k", &[]), ("j", &["x"])]));
        assert_eq!(verdict.lost, [("k".to_owned(), "a".to_owned())]);
        // A failed write that vanished is not a loss.
        let verdict = check(&writes[1..], &last(&[("j", &["x"])]));
        assert_eq!(verdict.lost, []);
    }
}
