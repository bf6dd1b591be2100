//! Retry: resend a request that failed in a way worth retrying, a bounded number of times.
//!
//! Unlike a loop around `send()` (or the aiohttp cookbook's `for _ in range(3)`), [`Retry`] only
//! replays methods that are safe to replay, honours `Retry-After` in both of its forms, backs off
//! with full jitter, stops at a total deadline, and shares a retry budget across every request
//! that goes through it, so a failing upstream sees a bounded amount of extra load instead of a
//! retry storm. A response it throws away is read away or dropped, never left holding its
//! connection; a streaming body is replayed only within its replay cap, and otherwise the first
//! answer comes back marked with why it was not retried ([`GaveUp`]; for an error,
//! [`Error::gave_up`](super::Error::gave_up), also in its message). Every response says how
//! many attempts it took ([`Attempts`]; for an error, [`Error::attempts`](super::Error::attempts))
//! and every retry is a tracing event.
//!
//! What is retried: connect errors (for any method: the request never left), timeouts,
//! connections closed before a response, and the statuses of the policy, for idempotent
//! methods or requests carrying an `Idempotency-Key`.
//!
//! ```
//! use std::time::Duration;
//! use http::StatusCode;
//! use stopover::client::Client;
//! use stopover::client::retry::{Attempts, Budget, Retry, RetryPolicy};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = RetryPolicy::builder()
//!     .max_attempts(4)
//!     .statuses([StatusCode::TOO_MANY_REQUESTS, StatusCode::SERVICE_UNAVAILABLE])
//!     .backoff(Duration::from_millis(50), Duration::from_secs(2))
//!     .retry_after_cap(Duration::from_secs(30))
//!     .total_deadline(Duration::from_secs(60))
//!     .budget(Budget::default().ratio(0.1))
//!     .build()?;
//! let client = Client::builder().middleware(Retry::new(policy)).build()?;
//!
//! let response = client.get("http://127.0.0.1:8080/flaky").send().await?;
//! if let Some(Attempts(attempts)) = response.extensions().get::<Attempts>() {
//!     println!("{} after {attempts} attempt(s)", response.status());
//! }
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, StatusCode};
use tokio::time::Instant;

pub use super::attempt::{Attempt, Attempts, GaveUp};
use super::{Error, ErrorKind, Middleware, Next, Request, Response, Result};

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
    max_attempts: u32,
    statuses: Vec<StatusCode>,
    retry_non_idempotent: bool,
    base_delay: Duration,
    max_delay: Duration,
    retry_after_cap: Duration,
    total_deadline: Option<Duration>,
    budget: Option<Budget>,
    wall_clock: WallClock,
    random: RandomSource,
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

    /// The retry budget shared by every request through one [`Retry`] middleware. Default
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

/// A retry budget: retries limited to a share of recent requests, plus a small floor.
///
/// Within a sliding `window`, the middleware allows `min_retries + ratio * requests` retries,
/// where `requests` counts the requests (not attempts) that went through it. When most
/// requests fail, retries stop well before every request has used its attempts, so an
/// upstream in trouble sees at most `1 + ratio` times its normal load, plus the floor. The
/// same scheme as Finagle's and tower's retry budgets. Default: a 10 s window, ratio 0.2,
/// 10 retries of floor.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    window: Duration,
    ratio: f64,
    min_retries: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            window: Duration::from_secs(10),
            ratio: 0.2,
            min_retries: 10,
        }
    }
}

impl Budget {
    /// The sliding window over which requests and retries are counted. Default 10 s; must be
    /// between 1 s and 60 s.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Retries allowed per request in the window. Default 0.2 (one retry per five requests);
    /// must be between 0 and 1000.
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// Retries allowed in every window whatever the traffic, so a client that sends few
    /// requests can still retry. Default 10.
    pub fn min_retries(mut self, retries: u32) -> Self {
        self.min_retries = retries;
        self
    }

    fn validate(&self) -> Result<(), RetryPolicyError> {
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(60) {
            return Err(RetryPolicyError::BudgetWindow(self.window));
        }
        if !self.ratio.is_finite() || !(0.0..=1000.0).contains(&self.ratio) {
            return Err(RetryPolicyError::BudgetRatio(self.ratio));
        }
        Ok(())
    }
}

const BUDGET_SLOTS: usize = 10;

/// The live counters of a [`Budget`], shared by every request through one middleware.
///
/// The window is cut into slots; each counts the requests and retries that started in it.
/// The lock is a plain mutex held for a few additions, never across an await.
#[derive(Debug)]
pub(crate) struct BudgetState {
    budget: Budget,
    start: Instant,
    slot_len: Duration,
    slots: Mutex<[Slot; BUDGET_SLOTS]>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    index: u64,
    requests: u64,
    retries: u64,
}

impl BudgetState {
    pub(crate) fn new(budget: Budget) -> Self {
        let slot_len = budget.window / BUDGET_SLOTS as u32;
        BudgetState {
            budget,
            start: Instant::now(),
            slot_len,
            slots: Mutex::new([Slot::default(); BUDGET_SLOTS]),
        }
    }

    fn slot_index(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.start);
        // +1 so that index 0 never names a live slot and fresh slots read as empty.
        u64::try_from(elapsed.as_nanos() / self.slot_len.as_nanos().max(1)).unwrap_or(u64::MAX - 1)
            + 1
    }

    fn with_slots<T>(&self, f: impl FnOnce(&mut [Slot; BUDGET_SLOTS], u64) -> T) -> T {
        let now = self.slot_index();
        // A panic elsewhere cannot leave the counters inconsistent, so a poisoned lock is fine.
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = &mut slots[(now % BUDGET_SLOTS as u64) as usize];
        if slot.index != now {
            *slot = Slot {
                index: now,
                ..Slot::default()
            };
        }
        f(&mut slots, now)
    }

    /// Counts a new request (once per request, not per attempt).
    pub(crate) fn deposit(&self) {
        self.with_slots(|slots, now| slots[(now % BUDGET_SLOTS as u64) as usize].requests += 1);
    }

    /// Takes one retry from the budget; `false` if the budget is spent.
    pub(crate) fn withdraw(&self) -> bool {
        let budget = &self.budget;
        self.with_slots(|slots, now| {
            let live = |slot: &&Slot| now - slot.index < BUDGET_SLOTS as u64;
            let requests: u64 = slots.iter().filter(live).map(|slot| slot.requests).sum();
            let retries: u64 = slots.iter().filter(live).map(|slot| slot.retries).sum();
            let allowed = f64::from(budget.min_retries) + budget.ratio * requests as f64;
            if (retries as f64) < allowed {
                slots[(now % BUDGET_SLOTS as u64) as usize].retries += 1;
                true
            } else {
                false
            }
        })
    }
}

/// The retry middleware: applies a [`RetryPolicy`] to every request that goes through it.
///
/// Cheap to clone; clones share one retry budget. It runs once per redirect hop, like every
/// middleware, so each hop has its own attempts.
///
/// Where it sits in the chain decides what the others see: a logging middleware placed after
/// it (inner) logs every attempt with its number ([`Attempt`]), placed before it (outer) logs
/// the call once with the attempt count ([`Attempts`]). Place a token middleware after it, so
/// that every attempt carries the current token.
///
/// When a failure is not retried, the response comes back marked with the reason
/// ([`GaveUp`]), and so does an error ([`Error::gave_up`], also in its message); every
/// response and error that went through it tells the attempt count ([`Attempts`],
/// [`Error::attempts`]). The tracing event `not retrying request` says the same.
#[derive(Debug, Clone)]
pub struct Retry {
    policy: Arc<RetryPolicy>,
    budget: Option<Arc<BudgetState>>,
}

impl Default for Retry {
    fn default() -> Self {
        Retry::new(RetryPolicy::default())
    }
}

impl Retry {
    /// A middleware applying `policy`, with a fresh budget.
    pub fn new(policy: RetryPolicy) -> Self {
        Retry {
            budget: policy.new_budget().map(Arc::new),
            policy: Arc::new(policy),
        }
    }

    /// The policy applied.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

/// What went wrong with an attempt, if it is worth another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Status(StatusCode),
    /// The connection could not be made: the request never left, any method may be resent.
    Connect,
    Timeout,
    /// The connection failed after the request was (perhaps) sent: closed or reset before a
    /// response.
    Transport,
}

impl Failure {
    fn of(outcome: &Result<Response>, policy: &RetryPolicy) -> Option<Failure> {
        match outcome {
            Ok(response) if policy.is_retryable_status(response.status()) => {
                Some(Failure::Status(response.status()))
            }
            Ok(_) => None,
            Err(err) => match err.kind() {
                ErrorKind::Connect => Some(Failure::Connect),
                ErrorKind::Timeout => Some(Failure::Timeout),
                ErrorKind::Transport => Some(Failure::Transport),
                _ => None,
            },
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status(status) => write!(f, "status {}", status.as_u16()),
            Failure::Connect => f.write_str("connect error"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Transport => f.write_str("connection closed before a response"),
        }
    }
}

impl Middleware for Retry {
    async fn handle(&self, mut request: Request, next: Next) -> Result<Response> {
        let policy = &*self.policy;
        // A deadline too far to represent (`Duration::MAX`) is no deadline.
        let deadline = policy
            .total_deadline
            .and_then(|total| Instant::now().checked_add(total));
        if let Some(budget) = &self.budget {
            budget.deposit();
        }
        let idempotent = policy.is_replayable(request.method(), request.headers());
        let mut attempt = 1u32;
        loop {
            // A copy for the next attempt, taken before this one consumes the body.
            let spare = if attempt < policy.max_attempts {
                match request.try_clone() {
                    Ok(spare) => Some(spare),
                    Err(err) if err.kind() == ErrorKind::BodyNotReplayable => None,
                    Err(err) => return Err(err),
                }
            } else {
                None
            };
            request.extensions_mut().insert(Attempt(attempt));
            let outcome = match deadline {
                None => next.run(request).await,
                Some(deadline) => {
                    let url = request.url().clone();
                    match tokio::time::timeout_at(deadline, next.run(request)).await {
                        Ok(outcome) => outcome,
                        Err(_) => Err(Error::timeout()
                            .with_url(url)
                            .with_message("the retry deadline passed during the attempt")),
                    }
                }
            };
            let Some(failure) = Failure::of(&outcome, policy) else {
                return tag(outcome, attempt, None);
            };
            let gave_up = if attempt >= policy.max_attempts {
                Some(GaveUp::MaxAttempts)
            } else if !idempotent && failure != Failure::Connect {
                Some(GaveUp::NotIdempotent)
            } else {
                None
            };
            if let Some(reason) = gave_up {
                return give_up(outcome, attempt, failure, reason);
            }
            // A capped stream is replayable only if what it sent fitted under its cap.
            let Some(spare) = spare.filter(|spare| spare.body().is_replayable()) else {
                return give_up(outcome, attempt, failure, GaveUp::BodyNotReplayable);
            };
            let delay = policy.delay(
                attempt,
                outcome.as_ref().ok().map(|response| response.headers()),
            );
            // `checked_add`: the cap may be huge (`Duration::MAX` for "no cap"), the wait is the
            // peer's to choose, and an overflowing instant is past any deadline.
            if deadline.is_some_and(|deadline| {
                Instant::now()
                    .checked_add(delay.duration())
                    .is_none_or(|resumes_at| resumes_at >= deadline)
            }) {
                return give_up(outcome, attempt, failure, GaveUp::Deadline);
            }
            if self
                .budget
                .as_ref()
                .is_some_and(|budget| !budget.withdraw())
            {
                return give_up(outcome, attempt, failure, GaveUp::Budget);
            }
            tracing::info!(
                attempt,
                failure = %failure,
                delay_ms = delay.duration().as_millis() as u64,
                from_retry_after = matches!(delay, Delay::RetryAfter(_)),
                "retrying request"
            );
            #[cfg(feature = "metrics")]
            ::metrics::counter!("stopover.client.retries").increment(1);
            if let Ok(response) = outcome {
                response.discard().await;
            }
            tokio::time::sleep(delay.duration()).await;
            request = spare;
            attempt += 1;
        }
    }
}

/// Marks the outcome with the attempt count and, when a retryable failure was not retried,
/// the reason: as response extensions, or in the error ([`Error::attempts`],
/// [`Error::gave_up`]).
fn tag(outcome: Result<Response>, attempts: u32, gave_up: Option<GaveUp>) -> Result<Response> {
    match outcome {
        Ok(mut response) => {
            response.extensions_mut().insert(Attempts(attempts));
            if let Some(reason) = gave_up {
                response.extensions_mut().insert(reason);
            }
            Ok(response)
        }
        Err(err) => Err(err.with_attempts(attempts, gave_up)),
    }
}

fn give_up(
    outcome: Result<Response>,
    attempts: u32,
    failure: Failure,
    reason: GaveUp,
) -> Result<Response> {
    tracing::info!(attempts, failure = %failure, reason = reason.as_str(), "not retrying request");
    tag(outcome, attempts, Some(reason))
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn headers_with_retry_after(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn defaults_are_three_attempts_and_the_usual_statuses() {
        let policy = RetryPolicy::builder().build().unwrap();
        assert_eq!(policy.max_attempts(), 3);
        for code in [408, 429, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(policy.is_retryable_status(status), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 501, 505] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(!policy.is_retryable_status(status), "{code}");
        }
    }

    #[test]
    fn idempotent_methods_are_replayable_by_default() {
        let policy = RetryPolicy::default();
        for method in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            let method = Method::from_bytes(method.as_bytes()).unwrap();
            assert!(policy.is_replayable(&method, &HeaderMap::new()), "{method}");
        }
    }

    #[test]
    fn post_and_patch_are_not_replayable_by_default() {
        let policy = RetryPolicy::default();
        for method in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(
                !policy.is_replayable(&method, &HeaderMap::new()),
                "{method}"
            );
        }
    }

    #[test]
    fn idempotency_key_makes_post_replayable() {
        let policy = RetryPolicy::default();
        let mut headers = HeaderMap::new();
        headers.insert("Idempotency-Key", HeaderValue::from_static("8e03978e"));
        assert!(policy.is_replayable(&Method::POST, &headers));
        assert!(policy.is_replayable(&Method::PATCH, &headers));
    }

    #[test]
    fn opting_in_makes_post_replayable() {
        let policy = RetryPolicy::builder()
            .retry_non_idempotent(true)
            .build()
            .unwrap();
        assert!(policy.is_replayable(&Method::POST, &HeaderMap::new()));
    }

    #[test]
    fn retry_after_delta_seconds() {
        assert_eq!(parse_retry_after("0", at(0)), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(" 120 ", at(0)),
            Some(Duration::from_secs(120))
        );
    }

    #[test]
    fn retry_after_huge_number_saturates_instead_of_failing() {
        assert_eq!(
            parse_retry_after("99999999999999999999999", at(0)),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_http_date_is_relative_to_the_clock() {
        // Sun, 06 Nov 1994 08:49:37 GMT is 784111777 seconds after the epoch (RFC 9110 example).
        let now = at(784_111_777 - 30);
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(form, now),
                Some(Duration::from_secs(30)),
                "{form}"
            );
        }
    }

    #[test]
    fn retry_after_date_in_the_past_is_no_wait() {
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at(784_111_777 + 5)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_garbage_is_ignored() {
        for value in ["", "-5", "1.5", "soon", "Sun, 06 Nov 1994", "0x10"] {
            assert_eq!(parse_retry_after(value, at(0)), None, "{value:?}");
        }
    }

    #[test]
    fn retry_after_wins_over_backoff_and_is_capped() {
        let policy = RetryPolicy::builder()
            .retry_after_cap(Duration::from_secs(20))
            .wall_clock(|| at(784_111_777 - 300))
            .build()
            .unwrap();
        assert_eq!(
            policy.delay(1, Some(&headers_with_retry_after("7"))),
            Delay::RetryAfter(Duration::from_secs(7))
        );
        assert_eq!(
            policy.delay(1, Some(&headers_with_retry_after("3600"))),
            Delay::RetryAfter(Duration::from_secs(20))
        );
        assert_eq!(
            policy.delay(
                1,
                Some(&headers_with_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"))
            ),
            Delay::RetryAfter(Duration::from_secs(20))
        );
    }

    #[test]
    fn unparsable_retry_after_falls_back_to_backoff() {
        let policy = RetryPolicy::builder()
            .backoff(Duration::from_secs(1), Duration::from_secs(8))
            .random_source(|| u64::MAX)
            .build()
            .unwrap();
        assert_eq!(
            policy.delay(2, Some(&headers_with_retry_after("later"))),
            Delay::Backoff(Duration::from_secs(2))
        );
        assert_eq!(
            policy.delay(2, None),
            Delay::Backoff(Duration::from_secs(2))
        );
    }

    #[test]
    fn backoff_ceiling_doubles_up_to_the_maximum() {
        let policy = RetryPolicy::builder()
            .backoff(Duration::from_millis(100), Duration::from_millis(750))
            .build()
            .unwrap();
        let ceilings: Vec<_> = (1..=6).map(|n| policy.backoff_ceiling(n)).collect();
        assert_eq!(
            ceilings,
            [100, 200, 400, 750, 750, 750].map(Duration::from_millis)
        );
        assert_eq!(policy.backoff_ceiling(u32::MAX), Duration::from_millis(750));
    }

    #[test]
    fn backoff_is_full_jitter_below_the_ceiling() {
        let max = RetryPolicy::builder()
            .backoff(Duration::from_secs(1), Duration::from_secs(30))
            .random_source(|| u64::MAX)
            .build()
            .unwrap();
        assert_eq!(max.backoff(3), Duration::from_secs(4));
        let zero = RetryPolicy::builder().random_source(|| 0).build().unwrap();
        assert_eq!(zero.backoff(3), Duration::ZERO);
        let half = RetryPolicy::builder()
            .backoff(Duration::from_secs(1), Duration::from_secs(30))
            .random_source(|| u64::MAX / 2)
            .build()
            .unwrap();
        assert_eq!(half.backoff(2).as_millis(), 999);
    }

    #[test]
    fn default_random_source_spreads_delays() {
        let policy = RetryPolicy::builder()
            .backoff(Duration::from_secs(1), Duration::from_secs(1))
            .build()
            .unwrap();
        let delays: std::collections::HashSet<_> = (0..32).map(|_| policy.backoff(1)).collect();
        assert!(delays.len() > 16, "{delays:?}");
        assert!(delays.iter().all(|delay| *delay <= Duration::from_secs(1)));
    }

    #[test]
    fn invalid_configurations_name_the_bad_input() {
        let err = |builder: RetryPolicyBuilder| builder.build().unwrap_err();
        assert_eq!(
            err(RetryPolicy::builder().max_attempts(0)),
            RetryPolicyError::ZeroAttempts
        );
        assert_eq!(
            err(RetryPolicy::builder().statuses([StatusCode::OK])),
            RetryPolicyError::NotAnErrorStatus(StatusCode::OK)
        );
        assert_eq!(
            err(RetryPolicy::builder().backoff(Duration::from_secs(2), Duration::from_secs(1))),
            RetryPolicyError::BackoffBaseAboveMax {
                base: Duration::from_secs(2),
                max: Duration::from_secs(1)
            }
        );
        assert_eq!(
            err(RetryPolicy::builder().total_deadline(Duration::ZERO)),
            RetryPolicyError::ZeroDeadline
        );
        assert_eq!(
            err(RetryPolicy::builder().budget(Budget::default().window(Duration::from_secs(61)))),
            RetryPolicyError::BudgetWindow(Duration::from_secs(61))
        );
        assert_eq!(
            err(RetryPolicy::builder().budget(Budget::default().ratio(-1.0))),
            RetryPolicyError::BudgetRatio(-1.0)
        );
        assert!(matches!(
            err(RetryPolicy::builder().budget(Budget::default().ratio(f64::NAN))),
            RetryPolicyError::BudgetRatio(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn budget_floor_allows_a_few_retries_without_traffic() {
        let budget = BudgetState::new(Budget::default().min_retries(2).ratio(0.0));
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn budget_allows_a_share_of_requests() {
        let budget = BudgetState::new(Budget::default().min_retries(0).ratio(0.25));
        for _ in 0..8 {
            budget.deposit();
        }
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
        for _ in 0..4 {
            budget.deposit();
        }
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn budget_refills_when_the_window_slides_past() {
        let budget = BudgetState::new(
            Budget::default()
                .window(Duration::from_secs(10))
                .min_retries(1)
                .ratio(0.0),
        );
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!budget.withdraw(), "the retry is still inside the window");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(budget.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn old_requests_stop_paying_for_retries() {
        let budget = BudgetState::new(Budget::default().min_retries(0).ratio(1.0));
        budget.deposit();
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!budget.withdraw());
    }
}
