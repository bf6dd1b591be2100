//! [`CircuitBreakerPolicy`]: when a circuit opens, how long it stays open, and how it closes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::client::Classifier;
use crate::client::classify::{RandomSource, default_random_source};

/// The window over which a circuit counts calls and failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `n` calls (resilience4j's COUNT_BASED window).
    Count(u32),
    /// The calls of the last stretch of time, counted in ten buckets of a tenth of it each
    /// (Polly's sampling duration; resilience4j's TIME_BASED window).
    Time(Duration),
}

/// A circuit breaker configuration that cannot work, found when the policy is built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CircuitBreakerPolicyError {
    /// The failure rate threshold was not above 0 and at most 1.
    #[error("failure_rate {0} is outside (0, 1]")]
    FailureRate(f64),
    /// The slow-call rate threshold was not above 0 and at most 1.
    #[error("slow_call_rate {0} is outside (0, 1]")]
    SlowCallRate(f64),
    /// The slow-call duration was zero.
    #[error("slow_call_duration must be greater than zero")]
    ZeroSlowCallDuration,
    /// A count window of no calls, or a time window shorter than 100 ms.
    #[error("window {0:?} is empty (a count window needs 1 call, a time window 100 ms)")]
    EmptyWindow(Window),
    /// The minimum number of calls was zero.
    #[error("minimum_calls must be at least 1")]
    ZeroMinimumCalls,
    /// The open duration was zero.
    #[error("open_duration must be greater than zero")]
    ZeroOpenDuration,
    /// The jitter was negative, not finite, or above 1.
    #[error("open_jitter {0} is outside 0 to 1")]
    Jitter(f64),
    /// The number of half-open probes was zero.
    #[error("half_open_calls must be at least 1")]
    ZeroHalfOpenCalls,
    /// The most keys kept was zero.
    #[error("max_keys must be at least 1")]
    ZeroMaxKeys,
}

/// When a circuit opens, how long it stays open, and how it closes again.
///
/// Built with [`CircuitBreakerPolicy::builder`]; cheap to clone. The defaults are stated on each
/// builder method.
#[derive(Clone)]
pub struct CircuitBreakerPolicy {
    pub(super) failure_rate: f64,
    pub(super) slow_call_rate: f64,
    pub(super) slow_call_duration: Duration,
    pub(super) window: Window,
    pub(super) minimum_calls: u32,
    pub(super) open_duration: Duration,
    pub(super) open_jitter: f64,
    pub(super) half_open_calls: u32,
    pub(super) classifier: Classifier,
    pub(super) max_keys: usize,
    pub(super) random: RandomSource,
}

impl fmt::Debug for CircuitBreakerPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerPolicy")
            .field("failure_rate", &self.failure_rate)
            .field("slow_call_rate", &self.slow_call_rate)
            .field("slow_call_duration", &self.slow_call_duration)
            .field("window", &self.window)
            .field("minimum_calls", &self.minimum_calls)
            .field("open_duration", &self.open_duration)
            .field("open_jitter", &self.open_jitter)
            .field("half_open_calls", &self.half_open_calls)
            .field("classifier", &self.classifier)
            .field("max_keys", &self.max_keys)
            .finish_non_exhaustive()
    }
}

/// The statuses a circuit breaker counts as failures by default: 500, 502, 503 and 504. Not
/// 408 or 429: a rate limit says the client is too fast, not that the upstream is unwell.
pub const BREAKER_FAILURE_STATUSES: [StatusCode; 4] = [
    StatusCode::INTERNAL_SERVER_ERROR,
    StatusCode::BAD_GATEWAY,
    StatusCode::SERVICE_UNAVAILABLE,
    StatusCode::GATEWAY_TIMEOUT,
];

impl Default for CircuitBreakerPolicy {
    fn default() -> Self {
        CircuitBreakerPolicy {
            failure_rate: 0.5,
            slow_call_rate: 1.0,
            slow_call_duration: Duration::from_secs(60),
            window: Window::Count(100),
            minimum_calls: 20,
            open_duration: Duration::from_secs(30),
            open_jitter: 0.1,
            half_open_calls: 1,
            classifier: Classifier::new(BREAKER_FAILURE_STATUSES),
            max_keys: 1024,
            random: default_random_source(),
        }
    }
}

impl CircuitBreakerPolicy {
    /// Starts a policy from the defaults: open at a failure rate of 50 % or when every call is
    /// slower than 60 s, over the last 100 calls once 20 were made; open for 30 s plus up to
    /// 10 % of jitter, then one probe; failures are connect errors, timeouts, closed
    /// connections and the statuses 500, 502, 503 and 504.
    pub fn builder() -> CircuitBreakerPolicyBuilder {
        CircuitBreakerPolicyBuilder {
            policy: CircuitBreakerPolicy::default(),
        }
    }

    /// The classifier that decides which calls are failures.
    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    /// The effective minimum number of calls before a rate is computed: a count window
    /// smaller than the minimum lowers it to its own size.
    pub(super) fn effective_minimum(&self) -> u32 {
        match self.window {
            Window::Count(size) => self.minimum_calls.min(size),
            Window::Time(_) => self.minimum_calls,
        }
    }

    /// How long a circuit opened now stays open: the open duration plus a random share of it
    /// up to the jitter.
    pub(super) fn open_for(&self) -> Duration {
        let extra = self.open_duration.mul_f64(self.open_jitter);
        self.open_duration + crate::client::classify::scale(extra, (self.random)())
    }
}

/// Builds a [`CircuitBreakerPolicy`]; see [`CircuitBreakerPolicy::builder`].
#[derive(Debug, Clone)]
pub struct CircuitBreakerPolicyBuilder {
    policy: CircuitBreakerPolicy,
}

impl CircuitBreakerPolicyBuilder {
    /// The share of failed calls in the window at or above which the circuit opens. Default
    /// 0.5; must be above 0 and at most 1.
    pub fn failure_rate(mut self, rate: f64) -> Self {
        self.policy.failure_rate = rate;
        self
    }

    /// The share of slow calls in the window at or above which the circuit opens. Default 1
    /// (every call slow); must be above 0 and at most 1.
    pub fn slow_call_rate(mut self, rate: f64) -> Self {
        self.policy.slow_call_rate = rate;
        self
    }

    /// A call that took at least this long (until the response head, failed or not) is slow.
    /// Default 60 s; must not be zero.
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.policy.slow_call_duration = duration;
        self
    }

    /// The window the rates are computed over. Default [`Window::Count`]`(100)`.
    pub fn window(mut self, window: Window) -> Self {
        self.policy.window = window;
        self
    }

    /// The number of calls the window must hold before a rate is computed: below it the
    /// circuit stays closed whatever the failures. Default 20; at least 1. A count window
    /// smaller than this lowers it to the window's size.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.policy.minimum_calls = calls;
        self
    }

    /// How long an open circuit refuses calls before it lets probes through. Default 30 s;
    /// must not be zero.
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.policy.open_duration = duration;
        self
    }

    /// The most added at random to the open duration, as a share of it, so that a fleet of
    /// clients does not probe in step. Default 0.1; between 0 and 1.
    pub fn open_jitter(mut self, share: f64) -> Self {
        self.policy.open_jitter = share;
        self
    }

    /// The number of probe calls a half-open circuit lets through: it closes when all of them
    /// succeed and opens again at the first that fails or is slow. Calls beyond it are refused
    /// while the probes run. Default 1; at least 1.
    pub fn half_open_calls(mut self, calls: u32) -> Self {
        self.policy.half_open_calls = calls;
        self
    }

    /// The classifier that decides which calls are failures. Default: connect errors,
    /// timeouts, closed connections and [`BREAKER_FAILURE_STATUSES`]. Share the one a
    /// [`RetryPolicy`](crate::client::retry::RetryPolicyBuilder::classifier) uses to count
    /// the same failures.
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.policy.classifier = classifier;
        self
    }

    /// The most keys whose circuits are kept. When a new key would pass it, the closed
    /// circuits are forgotten (open and half-open ones are kept). Default 1024; at least 1.
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.policy.max_keys = keys;
        self
    }

    /// The random source for the jitter: uniformly distributed `u64`s. Default: a SplitMix64
    /// sequence seeded from the operating system. Tests pass a constant (`0` adds no jitter).
    pub fn random_source(mut self, random: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.policy.random = Arc::new(random);
        self
    }

    /// Checks the configuration and returns the policy.
    pub fn build(self) -> Result<CircuitBreakerPolicy, CircuitBreakerPolicyError> {
        let policy = self.policy;
        let is_rate = |rate: f64| rate.is_finite() && rate > 0.0 && rate <= 1.0;
        if !is_rate(policy.failure_rate) {
            return Err(CircuitBreakerPolicyError::FailureRate(policy.failure_rate));
        }
        if !is_rate(policy.slow_call_rate) {
            return Err(CircuitBreakerPolicyError::SlowCallRate(
                policy.slow_call_rate,
            ));
        }
        if policy.slow_call_duration.is_zero() {
            return Err(CircuitBreakerPolicyError::ZeroSlowCallDuration);
        }
        let empty = match policy.window {
            Window::Count(size) => size == 0,
            Window::Time(span) => span < Duration::from_millis(100),
        };
        if empty {
            return Err(CircuitBreakerPolicyError::EmptyWindow(policy.window));
        }
        if policy.minimum_calls == 0 {
            return Err(CircuitBreakerPolicyError::ZeroMinimumCalls);
        }
        if policy.open_duration.is_zero() {
            return Err(CircuitBreakerPolicyError::ZeroOpenDuration);
        }
        if !policy.open_jitter.is_finite() || !(0.0..=1.0).contains(&policy.open_jitter) {
            return Err(CircuitBreakerPolicyError::Jitter(policy.open_jitter));
        }
        if policy.half_open_calls == 0 {
            return Err(CircuitBreakerPolicyError::ZeroHalfOpenCalls);
        }
        if policy.max_keys == 0 {
            return Err(CircuitBreakerPolicyError::ZeroMaxKeys);
        }
        Ok(policy)
    }
}
