//! A bound on bytes held at once, taken without waiting.
//!
//! Three queues of a node hold bytes whose amount the clients choose: the
//! client writes being coordinated (`admission.rs`), the replica writes
//! queued for each peer (`transport/batcher.rs`) and the hints waiting for
//! the disk (`hints/`). Each is bounded by a `ByteBudget`: a share is taken
//! before the bytes are held and returned when its [`Share`] is dropped; a
//! share that does not fit is refused at once, never waited for, so the
//! caller can answer "overloaded" (or hint) instead of piling up waiters.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most this many bytes held at once.
#[derive(Debug)]
pub struct ByteBudget {
    /// One permit per byte still free.
    room: Arc<Semaphore>,
    limit: usize,
}

/// Bytes taken from a budget, returned when this is dropped.
#[derive(Debug)]
pub struct Share {
    _room: OwnedSemaphorePermit,
}

/// A share refused: the budget's bytes are held by others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spent {
    /// Bytes asked for.
    pub bytes: usize,
    /// Bytes held when it was refused.
    pub held: usize,
    /// The budget.
    pub limit: usize,
}

impl ByteBudget {
    /// The largest budget: every share must be one `u32` permit count.
    pub const MAX: usize = if Semaphore::MAX_PERMITS < u32::MAX as usize {
        Semaphore::MAX_PERMITS
    } else {
        u32::MAX as usize
    };

    /// A budget of `limit` bytes, clamped to 1..=[`MAX`](Self::MAX).
    #[must_use]
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Self::MAX);
        Self {
            room: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// Takes `bytes`. Asking for more than the whole budget takes all of
    /// it, so it succeeds only when nothing else is held: a limit below the
    /// largest item slows such items down but never refuses them all.
    ///
    /// # Errors
    /// [`Spent`] when the bytes held leave no room for these.
    pub fn take(&self, bytes: usize) -> Result<Share, Spent> {
        let share = u32::try_from(bytes.clamp(1, self.limit)).unwrap_or(u32::MAX);
        // The semaphore is never closed, so the only refusal is no room.
        Arc::clone(&self.room)
            .try_acquire_many_owned(share)
            .map(|room| Share { _room: room })
            .map_err(|_| Spent {
                bytes,
                held: self.held(),
                limit: self.limit,
            })
    }

    /// Bytes taken and not yet returned.
    #[must_use]
    pub fn held(&self) -> usize {
        self.limit.saturating_sub(self.room.available_permits())
    }

    /// The budget's bytes.
    #[must_use]
    pub fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_taken_while_they_fit_and_returned_when_dropped() {
        let budget = ByteBudget::new(1000);
        let a = budget.take(600).expect("fits");
        let b = budget.take(400).expect("fits exactly");
        assert_eq!(budget.held(), 1000);
        assert_eq!(
            budget.take(1).expect_err("spent"),
            Spent {
                bytes: 1,
                held: 1000,
                limit: 1000
            }
        );
        drop(a);
        assert_eq!(budget.held(), 400);
        let _c = budget.take(600).expect("room again");
        drop(b);
        assert_eq!(budget.held(), 600);
    }

    #[test]
    fn a_share_larger_than_the_budget_goes_alone() {
        let budget = ByteBudget::new(1000);
        let small = budget.take(10).expect("fits");
        assert!(budget.take(5000).is_err(), "not beside another share");
        drop(small);
        let big = budget.take(5000).expect("alone");
        assert_eq!(budget.held(), 1000);
        assert!(budget.take(1).is_err(), "it holds the whole budget");
        drop(big);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn limits_are_clamped_to_what_a_permit_count_holds() {
        assert_eq!(ByteBudget::new(0).limit(), 1);
        assert_eq!(ByteBudget::new(usize::MAX).limit(), ByteBudget::MAX);
        let empty = ByteBudget::new(0);
        let _one = empty.take(0).expect("a zero-byte share still takes one");
        assert!(empty.take(0).is_err());
    }
}
