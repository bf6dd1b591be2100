//! [`RateLimitPolicy`]: how many requests per key, how long one may wait, and how long a
//! `Retry-After` may pause a key.

use std::time::Duration;

/// A rate limit configuration that cannot work, found when the policy is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateLimitPolicyError {
    /// The number of requests per period was zero.
    #[error("the rate must allow at least 1 request per period")]
    ZeroRequests,
    /// The period was zero, or so short that the interval between requests rounds to zero.
    #[error("the period {period:?} is too short for {requests} requests")]
    PeriodTooShort {
        /// The number of requests given.
        requests: u32,
        /// The period given.
        period: Duration,
    },
    /// The burst was zero.
    #[error("burst must be at least 1")]
    ZeroBurst,
    /// The most keys kept was zero.
    #[error("max_keys must be at least 1")]
    ZeroMaxKeys,
}

/// How many requests per key a [`RateLimit`](super::RateLimit) lets through, how long a
/// request may wait for its turn, and how long a `Retry-After` may pause a key.
///
/// Built with [`RateLimitPolicy::builder`]; the defaults are stated on each builder method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitPolicy {
    pub(super) interval: Duration,
    pub(super) burst: u32,
    /// GCRA's tolerance, `interval × (burst − 1)`: how far ahead of now the turns may run.
    pub(super) tolerance: Duration,
    pub(super) max_wait: Duration,
    pub(super) pause_on_retry_after: bool,
    pub(super) retry_after_cap: Duration,
    pub(super) max_keys: usize,
}

impl RateLimitPolicy {
    /// Starts a policy of `requests` per `period` for each key, with a burst of `requests`
    /// (the whole period's share may go at once, as governor's `Quota` does), no wait (a
    /// request over the rate fails at once), and a `Retry-After` on a 429 or 503 pausing the
    /// key for up to 60 s.
    pub fn builder(requests: u32, period: Duration) -> RateLimitPolicyBuilder {
        RateLimitPolicyBuilder {
            requests,
            period,
            burst: None,
            max_wait: Duration::ZERO,
            pause_on_retry_after: true,
            retry_after_cap: Duration::from_secs(60),
            max_keys: 1024,
        }
    }

    /// The time between two requests at the steady rate: the period divided by the number of
    /// requests.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How many requests may go at once after a quiet stretch.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// How long a request may wait for its turn before it fails with
    /// [`ErrorKind::RateLimited`](crate::client::ErrorKind::RateLimited).
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }
}

/// Builds a [`RateLimitPolicy`]; see [`RateLimitPolicy::builder`].
#[derive(Debug, Clone)]
pub struct RateLimitPolicyBuilder {
    requests: u32,
    period: Duration,
    burst: Option<u32>,
    max_wait: Duration,
    pause_on_retry_after: bool,
    retry_after_cap: Duration,
    max_keys: usize,
}

impl RateLimitPolicyBuilder {
    /// How many requests may go at once after a quiet stretch (GCRA's tolerance): 1 spaces
    /// every request by the interval. Default: the number of requests per period; at least 1.
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// How long a request may wait for its turn; one that would wait longer fails at once with
    /// [`ErrorKind::RateLimited`](crate::client::ErrorKind::RateLimited) and the wait it would
    /// have needed. Default zero: never wait. A waiting request holds its turn: if its caller
    /// drops it, the turn is not given back.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Whether a 429 or 503 response with a `Retry-After` pauses the key, for every request
    /// through this limiter, until the time it names. Default `true`.
    pub fn pause_on_retry_after(mut self, yes: bool) -> Self {
        self.pause_on_retry_after = yes;
        self
    }

    /// The longest pause a `Retry-After` can ask for; a longer one is cut to this. Default 60 s.
    pub fn retry_after_cap(mut self, cap: Duration) -> Self {
        self.retry_after_cap = cap;
        self
    }

    /// The most keys kept. When a new key would pass it, the keys whose state is as good as
    /// new (no turn taken ahead, no pause) are forgotten, which changes nothing. Default 1024;
    /// at least 1.
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = keys;
        self
    }

    /// Checks the configuration and returns the policy.
    pub fn build(self) -> Result<RateLimitPolicy, RateLimitPolicyError> {
        if self.requests == 0 {
            return Err(RateLimitPolicyError::ZeroRequests);
        }
        let interval = self.period / self.requests;
        if interval.is_zero() {
            return Err(RateLimitPolicyError::PeriodTooShort {
                requests: self.requests,
                period: self.period,
            });
        }
        let burst = self.burst.unwrap_or(self.requests);
        if burst == 0 {
            return Err(RateLimitPolicyError::ZeroBurst);
        }
        if self.max_keys == 0 {
            return Err(RateLimitPolicyError::ZeroMaxKeys);
        }
        Ok(RateLimitPolicy {
            interval,
            burst,
            tolerance: interval.saturating_mul(burst - 1),
            max_wait: self.max_wait,
            pause_on_retry_after: self.pause_on_retry_after,
            retry_after_cap: self.retry_after_cap,
            max_keys: self.max_keys,
        })
    }
}
