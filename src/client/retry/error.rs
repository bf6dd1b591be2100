//! [`RetryPolicyError`]: a retry configuration that cannot work.

use std::time::Duration;

use http::StatusCode;

/// A retry configuration that cannot work, found when the policy is built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RetryPolicyError {
    /// `max_attempts` was 0: a request needs at least one attempt.
    #[error("max_attempts must be at least 1 (1 turns retries off)")]
    ZeroAttempts,
    /// A status below 400 was listed as retryable.
    #[error("status {0} is not an error status and cannot be retried")]
    NotAnErrorStatus(StatusCode),
    /// The backoff base was greater than its maximum.
    #[error("backoff base {base:?} is greater than its maximum {max:?}")]
    BackoffBaseAboveMax {
        /// The base given.
        base: Duration,
        /// The maximum given.
        max: Duration,
    },
    /// The total deadline was zero.
    #[error("total_deadline must be greater than zero")]
    ZeroDeadline,
    /// The budget window was outside 1 s to 60 s.
    #[error("budget window {0:?} is outside 1 s to 60 s")]
    BudgetWindow(Duration),
    /// The budget ratio was negative, not finite, or above 1000.
    #[error("budget ratio {0} is outside 0 to 1000")]
    BudgetRatio(f64),
}
