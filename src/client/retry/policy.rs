//! [`RetryPolicy`]: which requests and outcomes are retried, how often, and how long to wait.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, StatusCode};

use crate::client::Result;

use super::budget::{Budget, BudgetState};
use super::error::RetryPolicyError;

/// The header that marks a request as safe to replay even if its method is not idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A source of wall-clock time, used to turn a `Retry-After` HTTP-date into a delay.
type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;
/// A source of uniformly distributed random `u64`s, used for jitter.
type RandomSource = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A retry policy: which requests and outcomes are retried, how often, and how long to wait.
///
/// Built with [`RetryPolicy::builder`]; cheap to clone. The defaults are stated on each
/// builder method.
#[derive(Clone)]
pub struct RetryPolicy {
    pub(super) max_attempts: u32,
    pub(super) statuses: Vec<StatusCode>,
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
            .field("statuses", &self.statuses)
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
            statuses: DEFAULT_STATUSES.to_vec(),
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

const DEFAULT_STATUSES: [StatusCode; 6] = [
    StatusCode::REQUEST_TIMEOUT,
    StatusCode::TOO_MANY_REQUESTS,
    StatusCode::INTERNAL_SERVER_ERROR,
    StatusCode::BAD_GATEWAY,
    StatusCode::SERVICE_UNAVAILABLE,
    StatusCode::GATEWAY_TIMEOUT,
];

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
        self.statuses.contains(&status)
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
        let retry_after = headers
            .and_then(|headers| headers.get(http::header::RETRY_AFTER))
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, (self.wall_clock)()));
        match retry_after {
            Some(wait) => Delay::RetryAfter(wait.min(self.retry_after_cap)),
            None => Delay::Backoff(self.backoff(retry)),
        }
    }

    /// The jittered exponential backoff before retry number `retry` (1 for the first retry).
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.backoff_ceiling(retry);
        let fraction = (self.random)();
        let nanos = ceiling.as_nanos() * u128::from(fraction) / u128::from(u64::MAX);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
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

fn is_idempotent(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

/// Parses a `Retry-After` value (RFC 9110, section 10.2.3) into a wait from `now`.
///
/// Accepts delta-seconds (`120`) and an HTTP-date (`Fri, 31 Dec 1999 23:59:59 GMT`, and the
/// two obsolete date forms). A date in the past is a wait of zero. Anything else, including a
/// negative or fractional number, is `None`, so the caller falls back to its own backoff.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use stopover::client::retry::parse_retry_after;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
/// assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
/// assert_eq!(
///     parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
///     Some(Duration::from_secs(10)),
/// );
/// assert_eq!(parse_retry_after("soon", now), None);
/// ```
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // An absurdly long number is still a number: saturate, the cap applies later.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
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
        self.policy.statuses = statuses.into_iter().collect();
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
        if let Some(status) = policy.statuses.iter().find(|status| status.as_u16() < 400) {
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
            budget.validate()?;
        }
        Ok(policy)
    }
}

/// A SplitMix64 sequence seeded from the operating system: cheap, lock-free, and more than
/// random enough to spread retries apart.
fn default_random_source() -> RandomSource {
    let seed = getrandom::u64().unwrap_or_else(|_| {
        // No OS randomness: the time still differs between processes, which is all jitter needs.
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |since| since.as_nanos() as u64)
    });
    let state = AtomicU64::new(seed);
    Arc::new(move || {
        let mut z = state
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}
