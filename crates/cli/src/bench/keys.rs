//! Key choosers for YCSB-style workloads.
//!
//! Zipfian follows Gray et al., "Quickly generating billion-record synthetic
//! databases" (SIGMOD 1994), as YCSB's `ZipfianGenerator` does (constant
//! 0.99), with ranks scrambled by a hash so hot keys spread over the ring.
//! "Latest" favours recently inserted records: a zipfian offset back from
//! the newest.

/// A small, fast, deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced by a constant).
    #[must_use]
    pub(crate) fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// Zipfian ranks in `0..n`, rank 0 the most popular.
#[derive(Debug, Clone)]
pub(crate) struct Zipfian {
    n: u64,
    theta: f64,
    alpha: f64,
    zeta_n: f64,
    eta: f64,
}

/// YCSB's default skew.
pub(crate) const ZIPFIAN_CONSTANT: f64 = 0.99;

fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl Zipfian {
    /// Ranks over `n` items (`n >= 1`). Costs O(n) once, for zeta(n).
    #[must_use]
    pub(crate) fn new(n: u64) -> Self {
        let n = n.max(1);
        let theta = ZIPFIAN_CONSTANT;
        let zeta_n = zeta(n, theta);
        let zeta_2 = zeta(2, theta);
        let alpha = 1.0 / (1.0 - theta);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n);
        Self {
            n,
            theta,
            alpha,
            zeta_n,
            eta,
        }
    }

    /// The next rank.
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "the float is in [0, n] by construction; `as` saturates and the result is clamped"
    )]
    pub(crate) fn next(&self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        let uz = u * self.zeta_n;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.n - 1);
        }
        let rank = (self.n as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        rank.min(self.n - 1)
    }
}

/// How the run phase picks existing records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Distribution {
    /// Every record equally likely.
    Uniform,
    /// A few records are hot (YCSB's default).
    Zipfian,
    /// Recently inserted records are hot.
    Latest,
}

/// Picks record numbers among `0..count`, where `count` grows with inserts.
#[derive(Debug, Clone)]
pub(crate) struct Chooser {
    distribution: Distribution,
    zipf: Zipfian,
}

impl Chooser {
    /// A chooser for `records` records at the start of the run.
    #[must_use]
    pub(crate) fn new(distribution: Distribution, records: u64) -> Self {
        Self {
            distribution,
            zipf: Zipfian::new(records),
        }
    }

    /// A record number in `0..count`.
    pub(crate) fn pick(&self, rng: &mut Rng, count: u64) -> u64 {
        let count = count.max(1);
        match self.distribution {
            Distribution::Uniform => rng.below(count),
            Distribution::Zipfian => scramble(self.zipf.next(rng)) % count,
            Distribution::Latest => count - 1 - self.zipf.next(rng).min(count - 1),
        }
    }
}

/// Spreads ranks over the key space (FNV-1a of the rank), as YCSB's
/// scrambled zipfian does, so rank 0 is not always record 0.
#[must_use]
pub(crate) fn scramble(rank: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rank.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The key of record `n`.
#[must_use]
pub(crate) fn record_key(n: u64) -> Vec<u8> {
    format!("user{n:012}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipfian_is_skewed_toward_low_ranks() {
        let z = Zipfian::new(10_000);
        let mut rng = Rng::new(7);
        let mut counts = vec![0u32; 10_000];
        for _ in 0..200_000 {
            counts[usize::try_from(z.next(&mut rng)).expect("rank < n")] += 1;
        }
        // Rank 0 takes several percent of all draws; the median rank far less.
        assert!(counts[0] > 10_000, "rank 0 drawn {} times", counts[0]);
        assert!(counts[0] > 20 * counts[5_000].max(1));
        assert!(counts.iter().all(|&c| c < 200_000));
    }

    #[test]
    fn uniform_covers_the_range_evenly() {
        let chooser = Chooser::new(Distribution::Uniform, 100);
        let mut rng = Rng::new(1);
        let mut counts = [0u32; 100];
        for _ in 0..100_000 {
            counts[usize::try_from(chooser.pick(&mut rng, 100)).expect("< 100")] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn latest_favours_the_newest_records() {
        let chooser = Chooser::new(Distribution::Latest, 1000);
        let mut rng = Rng::new(3);
        let recent = (0..10_000)
            .filter(|_| chooser.pick(&mut rng, 5000) >= 4990)
            .count();
        assert!(recent > 3000, "{recent} of 10000 picks among the newest 10");
    }
}
