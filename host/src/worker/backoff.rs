//! How long a failed task waits before its next attempt.

use std::time::Duration;

use rand::RngExt;

/// The retry delay policy of a worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backoff {
    /// `n^4 + 15 + rand(0..30) * (n + 1)` seconds after the n-th failure:
    /// the curve Sidekiq and Asynq use, from 15 s up to days.
    #[default]
    Polynomial,
    /// `base * 2^(n-1)` after the n-th failure, capped at `max`, with up to
    /// 25% random jitter added: for tests and latency-sensitive queues.
    Exponential {
        /// The first delay.
        base: Duration,
        /// The longest delay.
        max: Duration,
    },
}

impl Backoff {
    /// The delay after the `failures`-th failed attempt (1-based).
    pub fn delay(&self, failures: u32, rng: &mut impl RngExt) -> Duration {
        let n = u64::from(failures.max(1));
        match *self {
            Backoff::Polynomial => {
                let jitter = rng.random_range(0..30) * (n + 1);
                Duration::from_secs(
                    n.saturating_pow(4)
                        .saturating_add(15)
                        .saturating_add(jitter),
                )
            }
            Backoff::Exponential { base, max } => {
                let factor = 1u32
                    .checked_shl(failures.saturating_sub(1).min(31))
                    .unwrap_or(u32::MAX);
                let delay = base.saturating_mul(factor).min(max);
                let jitter = delay.mul_f64(rng.random_range(0.0..0.25));
                (delay + jitter).min(max.max(base))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn polynomial_grows_from_fifteen_seconds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let first = Backoff::Polynomial.delay(1, &mut rng);
        assert!(
            first >= Duration::from_secs(16) && first < Duration::from_secs(16 + 60),
            "{first:?}"
        );
        let tenth = Backoff::Polynomial.delay(10, &mut rng);
        assert!(tenth >= Duration::from_secs(10_015), "{tenth:?}");
    }

    #[test]
    fn exponential_doubles_and_stays_under_its_cap() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let policy = Backoff::Exponential {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let d1 = policy.delay(1, &mut rng);
        let d3 = policy.delay(3, &mut rng);
        assert!(
            d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(125),
            "{d1:?}"
        );
        assert!(
            d3 >= Duration::from_millis(400) && d3 <= Duration::from_millis(500),
            "{d3:?}"
        );
        for failures in [10, 40, u32::MAX] {
            assert!(policy.delay(failures, &mut rng) <= Duration::from_secs(1));
        }
    }
}
