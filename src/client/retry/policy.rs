//! [`RetryPolicy`]: which requests and outcomes are retried, how often, and how long to wait.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, StatusCode};

use crate::client::classify::{
    IDEMPOTENCY_KEY, RandomSource, default_random_source, is_idempotent, retry_after_of, scale,
};
use crate::client::{Classifier, Result};

use super::error::RetryPolicyError;
use crate::client::budget::{Budget, BudgetState, InvalidBudget};

/// A source of wall-clock time, used to turn a `Retry-After` HTTP-date into a delay.
type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// A retry policy: which requests and outcomes are retried, how often, and how long to wait.
///
/// Built with [`RetryPolicy::builder`]; cheap to clone. The defaults are stated on each
/// builder method.
#[derive(Clone)]
pub struct RetryPolicy {
    pub(super) max_attempts: u32,
    pub(super) classifier: Classifier,
    pub(super) retry_non_idempotent: bool,
    pub(super) base_delay: Duration,
    pub(super) max_delay: Duration,
    pub(super) retry_after_cap: Duration,
    pub(super) total_deadline: Option<Duration>,
    pub(super) budget: Option<Budget>,
    pub(super) wall_clock: WallClock,
    pub(super) random: RandomSource,
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("statuses", &self.classifier.statuses())
            .field("retry_non_idempotent", &self.retry_non_idempotent)
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .field("retry_after_cap", &self.retry_after_cap)
            .field("total_deadline", &self.total_deadline)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            classifier: Classifier::default(),
            retry_non_idempotent: false,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            retry_after_cap: Duration::from_secs(60),
            total_deadline: None,
            budget: Some(Budget::default()),
            wall_clock: Arc::new(SystemTime::now),
            random: default_random_source(),
        }
    }
}

impl RetryPolicy {
    /// Starts a policy from the defaults: 3 attempts in all, statuses 408, 429, 500, 502, 503
    /// and 504, idempotent methods only, backoff between 100 ms and 10 s, `Retry-After` capped
    /// at 60 s, no total deadline, the default [`Budget`].
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            policy: RetryPolicy::default(),
        }
    }

    /// The number of attempts in all, the first one included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The total deadline across all attempts, if one is set.
    pub fn total_deadline(&self) -> Option<Duration> {
        self.total_deadline
    }

    /// Whether a response with this status is worth another attempt.
    pub fn is_retryable_status(&self, status: StatusCode) -> bool {
        self.classifier.classify_status(status).is_some()
    }

    /// The classifier that decides which outcomes are failures worth another attempt; the
    /// same type the circuit breaker counts failures with.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// Whether a request with this method and these headers may be sent more than once.
    ///
    /// GET, HEAD, OPTIONS, TRACE, PUT and DELETE may (RFC 9110, section 9.2.2); any other
    /// method only if the policy opts in with
    /// [`retry_non_idempotent`](RetryPolicyBuilder::retry_non_idempotent) or the request
    /// carries an `Idempotency-Key` header.
    pub fn is_replayable(&self, method: &Method, headers: &HeaderMap) -> bool {
        is_idempotent(method) || self.retry_non_idempotent || headers.contains_key(IDEMPOTENCY_KEY)
    }

    /// The wait before retry number `retry` (1 for the first retry) after a response with
    /// these headers, or after an error if `headers` is `None`.
    ///
    /// A `Retry-After` header (delta-seconds or HTTP-date) wins, capped at the
    /// [`retry_after_cap`](RetryPolicyBuilder::retry_after_cap); otherwise the delay is drawn
    /// uniformly from zero to `min(max, base * 2^(retry - 1))` ("full jitter").
    pub fn delay(&self, retry: u32, headers: Option<&HeaderMap>) -> Delay {
        let retry_after = headers.and_then(|headers| retry_after_of(headers, (self.wall_clock)()));
        match retry_after {
            Some(wait) => Delay::RetryAfter(wait.min(self.retry_after_cap)),
            None => Delay::Backoff(self.backoff(retry)),
        }
    }

    /// The jittered exponential backoff before retry number `retry` (1 for the first retry).
    pub fn backoff(&self, retry: u32) -> Duration {
        scale(self.backoff_ceiling(retry), (self.random)())
    }

    /// The upper bound of the backoff before retry number `retry`: `min(max, base * 2^(retry - 1))`.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(63);
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// A fresh budget for a middleware instance, if the policy has one.
    pub(crate) fn new_budget(&self) -> Option<BudgetState> {
        self.budget.clone().map(BudgetState::new)
    }
}

/// Where a retry delay came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    /// The server's `Retry-After`, after the cap.
    RetryAfter(Duration),
    /// Jittered exponential backoff.
    Backoff(Duration),
}

impl Delay {
    /// The wait itself.
    pub fn duration(self) -> Duration {
        match self {
            Delay::RetryAfter(wait) | Delay::Backoff(wait) => wait,
        }
    }
}

/// Builds a [`RetryPolicy`]; see [`RetryPolicy::builder`].
#[derive(Debug, Clone)]
pub struct RetryPolicyBuilder {
    policy: RetryPolicy,
}

impl RetryPolicyBuilder {
    /// The number of attempts in all, the first one included. Default 3; must be at least 1
    /// (1 turns retries off).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.policy.max_attempts = attempts;
        self
    }

    /// The response statuses that are retried. Default 408, 429, 500, 502, 503 and 504.
    /// Statuses below 400 are refused when the policy is built.
    pub fn statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.policy.classifier = Classifier::new(statuses);
        self
    }

    /// The classifier deciding which outcomes are retried, in place of
    /// [`statuses`](Self::statuses): share one with a circuit breaker so that both count the
    /// same failures. Default [`Classifier::default`] (the statuses above).
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.policy.classifier = classifier;
        self
    }

    /// Whether methods that are not idempotent (POST, PATCH, ...) are retried too. Default
    /// `false`: they are retried only when the request carries an `Idempotency-Key` header, or
    /// after a connect error (the request never left). Turn this on only if the server
    /// deduplicates requests.
    pub fn retry_non_idempotent(mut self, yes: bool) -> Self {
        self.policy.retry_non_idempotent = yes;
        self
    }

    /// The base and the maximum of the exponential backoff. Default 100 ms and 10 s. The wait
    /// before retry `n` is drawn uniformly from zero to `min(max, base * 2^(n - 1))`. `base` must
    /// not be greater than `max`.
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.policy.base_delay = base;
        self.policy.max_delay = max;
        self
    }

    /// The longest wait a `Retry-After` header can ask for; a longer one is cut to this.
    /// Default 60 s.
    pub fn retry_after_cap(mut self, cap: Duration) -> Self {
        self.policy.retry_after_cap = cap;
        self
    }

    /// A deadline across all attempts, counted from the first one: no retry starts (or sleeps)
    /// past it, and an attempt in flight is cut at it. Default: none. Must not be zero.
    pub fn total_deadline(mut self, deadline: Duration) -> Self {
        self.policy.total_deadline = Some(deadline);
        self
    }

    /// The retry budget shared by every request through one [`Retry`](super::Retry) middleware. Default
    /// [`Budget::default`].
    pub fn budget(mut self, budget: Budget) -> Self {
        self.policy.budget = Some(budget);
        self
    }

    /// Removes the retry budget: every request may use all its attempts.
    pub fn no_budget(mut self) -> Self {
        self.policy.budget = None;
        self
    }

    /// The wall clock used to turn a `Retry-After` HTTP-date into a wait. Default
    /// [`SystemTime::now`]; tests pass a fixed time.
    pub fn wall_clock(mut self, now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.policy.wall_clock = Arc::new(now);
        self
    }

    /// The random source for jitter: uniformly distributed `u64`s. Default: a SplitMix64
    /// sequence seeded from the operating system. Tests pass a constant (`u64::MAX` waits the
    /// full backoff ceiling, `0` does not wait).
    pub fn random_source(mut self, random: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.policy.random = Arc::new(random);
        self
    }

    /// Checks the configuration and returns the policy.
    pub fn build(self) -> Result<RetryPolicy, RetryPolicyError> {
        let policy = self.policy;
        if policy.max_attempts == 0 {
            return Err(RetryPolicyError::ZeroAttempts);
        }
        if let Some(status) = policy
            .classifier
            .statuses()
            .iter()
            .find(|status| status.as_u16() < 400)
        {
            return Err(RetryPolicyError::NotAnErrorStatus(*status));
        }
        if policy.base_delay > policy.max_delay {
            return Err(RetryPolicyError::BackoffBaseAboveMax {
                base: policy.base_delay,
                max: policy.max_delay,
            });
        }
        if policy.total_deadline == Some(Duration::ZERO) {
            return Err(RetryPolicyError::ZeroDeadline);
        }
        if let Some(budget) = &policy.budget {
            budget.validate().map_err(|invalid| match invalid {
                InvalidBudget::Window(window) => RetryPolicyError::BudgetWindow(window),
                InvalidBudget::Ratio(ratio) => RetryPolicyError::BudgetRatio(ratio),
            })?;
        }
        Ok(policy)
    }
}
