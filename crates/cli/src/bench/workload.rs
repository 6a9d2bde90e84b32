//! YCSB core workloads as operation mixes.

use super::keys::{Distribution, Rng};

/// One operation of the run phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Op {
    /// Get an existing record.
    Read,
    /// Overwrite an existing record: read its context, then write with it
    /// (a blind write would add a sibling every time).
    Update,
    /// Write a new record.
    Insert,
    /// Read up to 100 consecutive records (BatchGet: keys are hashed onto
    /// the ring, so there is no range scan over user keys).
    Scan,
    /// Get a record, then write it with the context from the get (the same
    /// requests as `Update`; reported separately as YCSB does).
    ReadModifyWrite,
    /// Admin ping: the RPC round trip without storage.
    Ping,
}

impl Op {
    /// Name in reports.
    #[must_use]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Update => "update",
            Self::Insert => "insert",
            Self::Scan => "scan",
            Self::ReadModifyWrite => "rmw",
            Self::Ping => "ping",
        }
    }
}

/// A YCSB core workload, or the ping ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Workload {
    /// 50% read, 50% update.
    A,
    /// 95% read, 5% update.
    B,
    /// 100% read.
    C,
    /// 95% read, 5% insert; latest records are hot.
    D,
    /// 95% scan, 5% insert.
    E,
    /// 50% read, 50% read-modify-write.
    F,
    /// Admin ping only.
    Ping,
}

impl Workload {
    /// `(operation, weight in percent)`.
    #[must_use]
    pub(crate) fn mix(self) -> &'static [(Op, u32)] {
        match self {
            Self::A => &[(Op::Read, 50), (Op::Update, 50)],
            Self::B => &[(Op::Read, 95), (Op::Update, 5)],
            Self::C => &[(Op::Read, 100)],
            Self::D => &[(Op::Read, 95), (Op::Insert, 5)],
            Self::E => &[(Op::Scan, 95), (Op::Insert, 5)],
            Self::F => &[(Op::Read, 50), (Op::ReadModifyWrite, 50)],
            Self::Ping => &[(Op::Ping, 100)],
        }
    }

    /// The key distribution YCSB uses for the workload.
    #[must_use]
    pub(crate) fn default_distribution(self) -> Distribution {
        match self {
            Self::D => Distribution::Latest,
            _ => Distribution::Zipfian,
        }
    }

    /// Draws the next operation.
    pub(crate) fn next_op(self, rng: &mut Rng) -> Op {
        let mut roll = u32::try_from(rng.below(100)).expect("below 100");
        for &(op, weight) in self.mix() {
            if roll < weight {
                return op;
            }
            roll -= weight;
        }
        self.mix()[0].0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_sum_to_100_and_draws_follow_them() {
        use clap::ValueEnum as _;
        for w in Workload::value_variants() {
            assert_eq!(w.mix().iter().map(|(_, p)| p).sum::<u32>(), 100, "{w:?}");
        }
        let mut rng = Rng::new(11);
        let updates = (0..10_000)
            .filter(|_| Workload::B.next_op(&mut rng) == Op::Update)
            .count();
        assert!(
            (350..650).contains(&updates),
            "{updates} updates of 10000 in workload B"
        );
    }
}
