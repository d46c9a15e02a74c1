//! Restart strategies: after a task failure, whether to restart the job from its latest
//! completed checkpoint, and after what delay. Pure: time is passed in.

use std::time::{Duration, Instant};

pub use crate::job::Strategy;

/// Applies a strategy to a job's failures.
#[derive(Debug, Clone)]
pub struct Restarts {
    strategy: Strategy,
    failures: Vec<Instant>,
    next_delay: Option<Duration>,
}

impl Restarts {
    /// A fresh record of failures.
    pub fn new(strategy: Strategy) -> Restarts {
        Restarts {
            strategy,
            failures: Vec::new(),
            next_delay: None,
        }
    }

    /// Number of failures so far.
    pub fn failures(&self) -> usize {
        self.failures.len()
    }

    /// A failure at `now`: the wait before restarting, or `None` to fail the job.
    pub fn on_failure(&mut self, now: Instant) -> Option<Duration> {
        let previous = self.failures.last().copied();
        self.failures.push(now);
        match &self.strategy {
            Strategy::None => None,
            Strategy::FixedDelay { attempts, delay } => {
                (self.failures.len() as u32 <= *attempts).then_some(*delay)
            }
            Strategy::ExponentialDelay {
                initial_delay,
                max_delay,
                multiplier,
                reset_after,
            } => {
                let quiet = previous.is_none_or(|p| now.duration_since(p) >= *reset_after);
                let delay = match self.next_delay {
                    Some(next) if !quiet => next,
                    _ => *initial_delay,
                };
                self.next_delay = Some(delay.mul_f64(multiplier.max(1.0)).min(*max_delay));
                Some(delay.min(*max_delay))
            }
            Strategy::FailureRate {
                max_failures,
                interval,
                delay,
            } => {
                let recent = self
                    .failures
                    .iter()
                    .filter(|t| now.duration_since(**t) < *interval)
                    .count();
                (recent as u32 <= *max_failures).then_some(*delay)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn none_fails_at_once() {
        assert_eq!(
            Restarts::new(Strategy::None).on_failure(Instant::now()),
            None
        );
    }

    #[test]
    fn fixed_delay_allows_its_attempts() {
        let mut r = Restarts::new(Strategy::FixedDelay {
            attempts: 2,
            delay: S,
        });
        let t = Instant::now();
        assert_eq!(r.on_failure(t), Some(S));
        assert_eq!(r.on_failure(t), Some(S));
        assert_eq!(r.on_failure(t), None);
        assert_eq!(r.failures(), 3);
    }

    #[test]
    fn exponential_delay_grows_to_its_cap_and_resets_after_quiet() {
        let mut r = Restarts::new(Strategy::ExponentialDelay {
            initial_delay: S,
            max_delay: 5 * S,
            multiplier: 2.0,
            reset_after: 60 * S,
        });
        let t = Instant::now();
        let delays: Vec<_> = (0..5).map(|i| r.on_failure(t + i * S).unwrap()).collect();
        assert_eq!(delays, [S, 2 * S, 4 * S, 5 * S, 5 * S]);
        assert_eq!(r.on_failure(t + 200 * S), Some(S));
    }

    #[test]
    fn failure_rate_counts_failures_in_the_interval() {
        let mut r = Restarts::new(Strategy::FailureRate {
            max_failures: 2,
            interval: 10 * S,
            delay: S,
        });
        let t = Instant::now();
        assert_eq!(r.on_failure(t), Some(S));
        assert_eq!(r.on_failure(t + S), Some(S));
        assert_eq!(r.on_failure(t + 2 * S), None);
        // Long after, the old failures are outside the interval.
        let mut r = Restarts::new(Strategy::FailureRate {
            max_failures: 2,
            interval: 10 * S,
            delay: S,
        });
        for i in 0..10 {
            assert_eq!(r.on_failure(t + i * 6 * S), Some(S), "failure {i}");
        }
    }
}
