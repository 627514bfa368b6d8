//! Retry policy of durable calls, and how errors say they must not be retried.

use std::time::Duration;

/// Longest wait between two attempts, whatever the policy says.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

/// How the wait between attempts grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Retry k waits `delay * 2^(k-1)` (the default).
    ExponentialBackoff,
    /// Every retry waits `delay`.
    FixedDelay,
}

/// Retry policy of one durable function: `#[durable(max_retries = 3, strategy = ExponentialBackoff, delay = 1000)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retries.
    pub max_retries: u32,
    /// How the wait grows.
    pub strategy: Strategy,
    /// Base wait in milliseconds.
    pub delay_ms: u64,
}

impl RetryPolicy {
    /// Default number of retries.
    pub const DEFAULT_MAX_RETRIES: u32 = 3;
    /// Default base delay in milliseconds.
    pub const DEFAULT_DELAY_MS: u64 = 1_000;

    /// The wait before retry `attempt` (1-based), capped at [`MAX_RETRY_DELAY`].
    pub fn delay_for(&self, attempt: u32) -> Duration {
        let base = Duration::from_millis(self.delay_ms);
        let delay = match self.strategy {
            Strategy::FixedDelay => base,
            Strategy::ExponentialBackoff => {
                let factor = 1u32
                    .checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX);
                base.saturating_mul(factor)
            }
        };
        delay.min(MAX_RETRY_DELAY)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: Self::DEFAULT_MAX_RETRIES,
            strategy: Strategy::ExponentialBackoff,
            delay_ms: Self::DEFAULT_DELAY_MS,
        }
    }
}

/// Lets an error type say which of its values must not be retried.
///
/// Errors of types that do not implement it are always retried (up to `max_retries`).
///
/// ```
/// #[derive(Debug)]
/// enum PaymentError { Declined, Timeout, Sdk(runtara_sdk::SdkError) }
///
/// impl runtara_sdk::Retryable for PaymentError {
///     fn is_retryable(&self) -> bool {
///         matches!(self, PaymentError::Timeout)
///     }
/// }
/// ```
pub trait Retryable {
    /// Whether a durable call that failed with this error may run again.
    fn is_retryable(&self) -> bool;
}

impl Retryable for crate::SdkError {
    fn is_retryable(&self) -> bool {
        matches!(self, crate::SdkError::Persistence(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            max_retries: 40,
            strategy: Strategy::ExponentialBackoff,
            delay_ms: 100,
        };
        assert_eq!(policy.delay_for(1), Duration::from_millis(100));
        assert_eq!(policy.delay_for(2), Duration::from_millis(200));
        assert_eq!(policy.delay_for(4), Duration::from_millis(800));
        assert_eq!(policy.delay_for(40), MAX_RETRY_DELAY);
    }

    #[test]
    fn fixed_delay_stays_the_same() {
        let policy = RetryPolicy {
            max_retries: 3,
            strategy: Strategy::FixedDelay,
            delay_ms: 50,
        };
        assert_eq!(policy.delay_for(3), Duration::from_millis(50));
    }
}
