//! A bytes-per-second pacer for background transfers (hint replay,
//! anti-entropy), so they never crowd out client traffic.

use std::time::Duration;

use tokio::time::Instant;

/// Paces a stream of transfers to an average rate.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_second: u64,
    next: Instant,
}

impl Throttle {
    /// A pacer for `bytes_per_second` (0: unlimited).
    #[must_use]
    pub fn new(bytes_per_second: u64) -> Self {
        Self {
            bytes_per_second,
            next: Instant::now(),
        }
    }

    /// How long `bytes` take at the rate.
    #[must_use]
    pub fn cost(&self, bytes: u64) -> Duration {
        if self.bytes_per_second == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64)
        }
    }

    /// Accounts for `bytes` just sent and waits until the average rate
    /// allows more.
    pub async fn consume(&mut self, bytes: u64) {
        let until = self.reserve(bytes);
        tokio::time::sleep_until(until).await;
    }

    /// Accounts for `bytes` just sent; returns when the average rate allows
    /// more (for callers that share one pacer and must not hold it while
    /// they wait).
    pub fn reserve(&mut self, bytes: u64) -> Instant {
        let now = Instant::now();
        self.next = self.next.max(now) + self.cost(bytes);
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_to_the_rate_and_zero_is_unlimited() {
        let start = Instant::now();
        let mut throttle = Throttle::new(1000);
        for _ in 0..4 {
            throttle.consume(500).await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2));

        let start = Instant::now();
        let mut unlimited = Throttle::new(0);
        unlimited.consume(u64::MAX).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
