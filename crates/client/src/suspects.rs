//! Nodes that recently left a request unanswered: a lost connection, or
//! no answer within the attempt's deadline (a paused or hung process).
//!
//! The ring a node reports says a peer is down only once gossip has
//! convicted it, seconds after it stopped answering; until then every
//! request whose key it holds would go to it first and wait for its
//! connection to fail. A suspect goes to the end of each key's candidate
//! list for [`SUSPECT_FOR`] (by then the ring knows), or until it answers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a node that failed a request stays at the end of the list.
pub(crate) const SUSPECT_FOR: Duration = Duration::from_secs(10);

/// Node addresses under suspicion, with when the suspicion ends.
#[derive(Debug, Default)]
pub(crate) struct Suspects {
    /// Whether `until` may hold anyone: requests skip the lock otherwise.
    any: AtomicBool,
    until: Mutex<HashMap<String, Instant>>,
}

impl Suspects {
    /// `address` failed a request at `now`.
    pub(crate) fn mark(&self, address: &str, now: Instant) {
        let mut until = self.lock();
        until.insert(address.to_owned(), now + SUSPECT_FOR);
        self.any.store(true, Ordering::Relaxed);
    }

    /// `address` answered: it is not suspect any more.
    pub(crate) fn clear(&self, address: &str) {
        if !self.any.load(Ordering::Relaxed) {
            return;
        }
        let mut until = self.lock();
        until.remove(address);
        self.any.store(!until.is_empty(), Ordering::Relaxed);
    }

    /// Moves the addresses suspect at `now` behind the others, keeping the
    /// order within each group (a suspect is still tried when nothing
    /// else is left).
    pub(crate) fn last(&self, candidates: &mut [String], now: Instant) {
        if !self.any.load(Ordering::Relaxed) {
            return;
        }
        let mut until = self.lock();
        until.retain(|_, end| *end > now);
        self.any.store(!until.is_empty(), Ordering::Relaxed);
        candidates.sort_by_key(|a| until.contains_key(a));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_suspect_goes_last_and_the_rest_keep_their_order() {
        let suspects = Suspects::default();
        let now = Instant::now();
        suspects.mark("b", now);
        let mut candidates = list(&["b", "a", "c"]);
        suspects.last(&mut candidates, now);
        assert_eq!(candidates, list(&["a", "c", "b"]));

        suspects.mark("a", now);
        let mut candidates = list(&["b", "a", "c"]);
        suspects.last(&mut candidates, now);
        assert_eq!(candidates, list(&["c", "b", "a"]));
    }

    #[test]
    fn suspicion_ends_after_its_time_or_when_the_node_answers() {
        let suspects = Suspects::default();
        let now = Instant::now();
        suspects.mark("a", now);
        suspects.mark("b", now);

        let mut candidates = list(&["a", "b", "c"]);
        suspects.last(
            &mut candidates,
            now + SUSPECT_FOR - Duration::from_millis(1),
        );
        assert_eq!(candidates, list(&["c", "a", "b"]), "still suspect");

        suspects.clear("a");
        let mut candidates = list(&["a", "b", "c"]);
        suspects.last(&mut candidates, now);
        assert_eq!(candidates, list(&["a", "c", "b"]), "a answered");

        let mut candidates = list(&["a", "b", "c"]);
        suspects.last(&mut candidates, now + SUSPECT_FOR);
        assert_eq!(candidates, list(&["a", "b", "c"]), "b's time is up");
    }
}
