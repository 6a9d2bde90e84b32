//! Admission of client writes by the bytes they carry.
//!
//! Every Put, Delete and BatchWrite a node coordinates holds its request's
//! bytes (and several working copies: the merged sibling set, the replica
//! messages) until it is answered. The number of requests in flight is the
//! clients' choice, so without a bound a burst of large values from many
//! clients grows the node's memory until the kernel kills it, taking every
//! request with it. The budget bounds the request bytes in flight: a write
//! that does not fit is refused at once with `RESOURCE_EXHAUSTED` (nothing
//! written, the client backs off), which Cassandra calls an overloaded
//! coordinator. Reads are not admitted: their answer's size is unknown
//! until read, and their requests are small.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Bytes of client writes a node holds at once at most.
#[derive(Debug)]
pub struct WriteBudget {
    room: Arc<Semaphore>,
    limit: usize,
}

/// A write admitted: its bytes return to the budget when this is dropped.
#[derive(Debug)]
pub struct Admitted {
    _room: OwnedSemaphorePermit,
}

/// A write refused because the budget is spent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "node overloaded: {in_flight} bytes of writes in flight and this one carries {bytes}; the limit is {limit} (--max-write-bytes-in-flight); retry after a backoff"
)]
pub struct Overloaded {
    /// Bytes of the refused write.
    pub bytes: usize,
    /// Bytes admitted and not yet answered.
    pub in_flight: usize,
    /// The budget.
    pub limit: usize,
}

impl WriteBudget {
    /// A budget of `limit` bytes (at least 1).
    #[must_use]
    pub fn new(limit: usize) -> Self {
        // At most 4 GiB, so that every share is one u32 permit count.
        let limit = limit.clamp(1, usize::try_from(u32::MAX).unwrap_or(usize::MAX));
        Self {
            room: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// Admits a write of `bytes`. A write larger than the whole budget is
    /// admitted only when nothing else is in flight, so a limit below the
    /// largest value slows such writes down but never refuses them all.
    ///
    /// # Errors
    /// [`Overloaded`] when the bytes in flight leave no room for it.
    pub fn admit(&self, bytes: usize) -> Result<Admitted, Overloaded> {
        let share = u32::try_from(bytes.clamp(1, self.limit)).unwrap_or(u32::MAX);
        match Arc::clone(&self.room).try_acquire_many_owned(share) {
            Ok(permit) => Ok(Admitted { _room: permit }),
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => Err(Overloaded {
                bytes,
                in_flight: self.in_flight(),
                limit: self.limit,
            }),
        }
    }

    /// Bytes admitted and not yet released.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.limit.saturating_sub(self.room.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_admitted_while_their_bytes_fit_and_released_when_done() {
        let budget = WriteBudget::new(1000);
        let a = budget.admit(600).expect("fits");
        let b = budget.admit(400).expect("fits exactly");
        assert_eq!(budget.in_flight(), 1000);
        let refused = budget.admit(1).expect_err("spent");
        assert_eq!(
            refused,
            Overloaded {
                bytes: 1,
                in_flight: 1000,
                limit: 1000
            }
        );
        assert!(
            refused.to_string().contains("--max-write-bytes-in-flight"),
            "{refused}"
        );
        drop(a);
        assert_eq!(budget.in_flight(), 400);
        let _c = budget.admit(600).expect("room again");
        drop(b);
        assert_eq!(budget.in_flight(), 600);
    }

    #[test]
    fn a_write_larger_than_the_budget_goes_alone() {
        let budget = WriteBudget::new(1000);
        let small = budget.admit(10).expect("fits");
        assert!(budget.admit(5000).is_err(), "not beside another write");
        drop(small);
        let big = budget.admit(5000).expect("alone");
        assert_eq!(budget.in_flight(), 1000);
        assert!(budget.admit(1).is_err(), "it holds the whole budget");
        drop(big);
        assert_eq!(budget.in_flight(), 0);
    }
}
