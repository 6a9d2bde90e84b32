//! Write stalls: why and for how long writers waited for background work.
//!
//! Every wait in the write path (`db/write.rs`, `make_room`) is recorded as
//! a [`StallEvent`] with its cause. A wait for flush or compaction is one
//! event from its start until the write proceeds (or its cause changes),
//! however many times the writer woke up meanwhile; a level-0 slowdown is
//! one event per 1 ms delay. Events are kept in a bounded log that
//! [`Db::drain_stalls`](crate::Db::drain_stalls) empties: a benchmark or a
//! monitor can report every stall with its length and cause, and the
//! engine's memory stays bounded when nobody drains (the oldest events are
//! dropped and counted).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Events kept until drained; older ones are dropped first.
const LOG_CAPACITY: usize = 4096;

/// Why a write waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StallCause {
    /// Level 0 reached `l0_slowdown_trigger` files: the write group was
    /// delayed by 1 ms so compaction can catch up.
    Level0Slowdown,
    /// `max_immutable_memtables` full memtables wait for flush: writes
    /// stop until one is flushed.
    TooManyMemtables,
    /// Level 0 reached `l0_stop_trigger` files: writes stop until
    /// compaction brings it down.
    TooManyLevel0Files,
}

impl StallCause {
    /// Every cause, in [`Stats::stalls_by_cause`](crate::Stats) order.
    pub const ALL: [Self; 3] = [
        Self::Level0Slowdown,
        Self::TooManyMemtables,
        Self::TooManyLevel0Files,
    ];

    fn index(self) -> usize {
        match self {
            Self::Level0Slowdown => 0,
            Self::TooManyMemtables => 1,
            Self::TooManyLevel0Files => 2,
        }
    }

    /// A metric label: `level0_slowdown`, `memtables_full`, `level0_full`.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Level0Slowdown => "level0_slowdown",
            Self::TooManyMemtables => "memtables_full",
            Self::TooManyLevel0Files => "level0_full",
        }
    }

    /// A short name for reports.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Level0Slowdown => "level-0 slowdown",
            Self::TooManyMemtables => "memtables waiting for flush",
            Self::TooManyLevel0Files => "level 0 full",
        }
    }
}

/// One wait of the write path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallEvent {
    /// Why.
    pub cause: StallCause,
    /// When the wait began.
    pub started: Instant,
    /// How long it lasted.
    pub duration: Duration,
}

/// Stalls of one cause since open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StallTotal {
    /// The cause.
    pub cause: StallCause,
    /// Stall events.
    pub count: u64,
    /// Their summed length in microseconds.
    pub micros: u64,
}

/// The bounded log of events plus running totals per cause, which stay
/// exact when nobody drains the log.
#[derive(Debug, Default)]
pub(crate) struct StallLog {
    events: Mutex<VecDeque<StallEvent>>,
    dropped: AtomicU64,
    counts: [AtomicU64; 3],
    micros: [AtomicU64; 3],
}

impl StallLog {
    pub(crate) fn record(&self, cause: StallCause, started: Instant) {
        let duration = started.elapsed();
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.counts[cause.index()].fetch_add(1, Ordering::Relaxed);
        self.micros[cause.index()].fetch_add(micros, Ordering::Relaxed);
        let mut events = self.events.lock().expect("stall log lock");
        if events.len() == LOG_CAPACITY {
            events.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        events.push_back(StallEvent {
            cause,
            started,
            duration,
        });
    }

    /// Takes every event logged since the last drain, oldest first.
    pub(crate) fn drain(&self) -> Vec<StallEvent> {
        self.events
            .lock()
            .expect("stall log lock")
            .drain(..)
            .collect()
    }

    /// Time writers spent delayed or stopped since open, in microseconds.
    pub(crate) fn total_micros(&self) -> u64 {
        self.micros
            .iter()
            .map(|m| m.load(Ordering::Relaxed))
            .fold(0, u64::saturating_add)
    }

    /// Count and time per cause since open, in [`StallCause::ALL`] order.
    pub(crate) fn totals(&self) -> Vec<StallTotal> {
        StallCause::ALL
            .iter()
            .map(|&cause| StallTotal {
                cause,
                count: self.counts[cause.index()].load(Ordering::Relaxed),
                micros: self.micros[cause.index()].load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Events dropped undrained because the log was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// One writer's stop, recorded when its cause changes or when the writer
/// proceeds (dropped): many wake-ups of one wait make one event.
#[derive(Debug)]
pub(crate) struct Stop<'a> {
    log: &'a StallLog,
    current: Option<(StallCause, Instant)>,
}

impl<'a> Stop<'a> {
    pub(crate) fn new(log: &'a StallLog) -> Self {
        Self { log, current: None }
    }

    /// The writer is about to wait because of `cause`.
    pub(crate) fn waiting(&mut self, cause: StallCause) {
        match self.current {
            Some((current, _)) if current == cause => {}
            _ => {
                self.end();
                self.current = Some((cause, Instant::now()));
            }
        }
    }

    fn end(&mut self) {
        if let Some((cause, started)) = self.current.take() {
            self.log.record(cause, started);
        }
    }
}

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_wait_with_many_wakeups_is_one_event_and_a_new_cause_starts_another() {
        let log = StallLog::default();
        {
            let mut stop = Stop::new(&log);
            stop.waiting(StallCause::TooManyMemtables);
            std::thread::sleep(Duration::from_millis(2));
            stop.waiting(StallCause::TooManyMemtables);
            stop.waiting(StallCause::TooManyLevel0Files);
        }
        let events = log.drain();
        let causes: Vec<_> = events.iter().map(|e| e.cause).collect();
        assert_eq!(
            causes,
            [StallCause::TooManyMemtables, StallCause::TooManyLevel0Files]
        );
        assert!(events[0].duration >= Duration::from_millis(2));
        assert!(log.total_micros() >= 2000);
        assert!(log.drain().is_empty(), "drained");
        {
            let _untouched = Stop::new(&log);
        }
        assert!(log.drain().is_empty(), "no wait, no event");
    }

    #[test]
    fn the_log_keeps_the_newest_events_and_counts_the_dropped() {
        let log = StallLog::default();
        let first = Instant::now();
        log.record(StallCause::Level0Slowdown, first);
        for _ in 0..LOG_CAPACITY {
            log.record(StallCause::TooManyLevel0Files, Instant::now());
        }
        let events = log.drain();
        assert_eq!(events.len(), LOG_CAPACITY);
        assert!(
            events
                .iter()
                .all(|e| e.cause == StallCause::TooManyLevel0Files)
        );
        assert_eq!(log.dropped(), 1);
        let counts: Vec<_> = log.totals().iter().map(|t| (t.cause, t.count)).collect();
        assert_eq!(
            counts,
            [
                (StallCause::Level0Slowdown, 1),
                (StallCause::TooManyMemtables, 0),
                (StallCause::TooManyLevel0Files, LOG_CAPACITY as u64),
            ],
            "totals count the dropped event too"
        );
    }
}
