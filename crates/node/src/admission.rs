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

use crate::byte_budget::{ByteBudget, Share, Spent};

/// Bytes of client writes a node holds at once at most.
#[derive(Debug)]
pub struct WriteBudget {
    bytes: ByteBudget,
}

/// A write admitted: its bytes return to the budget when this is dropped.
#[derive(Debug)]
pub struct Admitted {
    _share: Share,
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

impl From<Spent> for Overloaded {
    fn from(spent: Spent) -> Self {
        Self {
            bytes: spent.bytes,
            in_flight: spent.held,
            limit: spent.limit,
        }
    }
}

impl WriteBudget {
    /// A budget of `limit` bytes (1 to 4 GiB).
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self {
            bytes: ByteBudget::new(limit),
        }
    }

    /// Admits a write of `bytes`. A write larger than the whole budget is
    /// admitted only when nothing else is in flight, so a limit below the
    /// largest value slows such writes down but never refuses them all.
    ///
    /// # Errors
    /// [`Overloaded`] when the bytes in flight leave no room for it.
    pub fn admit(&self, bytes: usize) -> Result<Admitted, Overloaded> {
        let share = self.bytes.take(bytes)?;
        Ok(Admitted { _share: share })
    }

    /// Bytes admitted and not yet released.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.bytes.held()
    }

    /// The budget's bytes.
    #[must_use]
    pub fn limit(&self) -> usize {
        self.bytes.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_past_the_budget_is_refused_with_what_is_in_flight() {
        let budget = WriteBudget::new(1000);
        let held = budget.admit(600).expect("fits");
        let refused = budget.admit(401).expect_err("spent");
        assert_eq!(
            refused,
            Overloaded {
                bytes: 401,
                in_flight: 600,
                limit: 1000
            }
        );
        assert!(
            refused.to_string().contains("--max-write-bytes-in-flight"),
            "{refused}"
        );
        drop(held);
        assert_eq!(budget.in_flight(), 0);
        let _admitted = budget.admit(401).expect("room again");
        assert_eq!(budget.in_flight(), 401);
    }
}
