//! The failure classifier: which outcomes of an attempt the resilience middlewares count as
//! failures.
//!
//! One vocabulary for retry, the circuit breaker and the rate limiter, so that they agree on
//! what went wrong without naming each other: a [`Classifier`] turns the outcome of one attempt
//! into a [`Failure`] (a connect error, a timeout, a connection closed before a response, or a
//! status from its set) or into nothing (a success, or an answer that says nothing about the
//! upstream's health: a 404, a refusal by the SSRF policy, an open circuit, a rate limit of the
//! client's own). An error a resilience middleware made itself ([`ErrorKind::CircuitOpen`],
//! [`ErrorKind::RateLimited`], [`ErrorKind::BulkheadFull`]) is never a failure, so a retry never
//! retries into an open circuit and a breaker never counts its own refusals.
//!
//! ```
//! use http::StatusCode;
//! use stopover::client::{Classifier, Failure};
//!
//! let breaker_failures =
//!     Classifier::new([StatusCode::BAD_GATEWAY, StatusCode::SERVICE_UNAVAILABLE]);
//! assert_eq!(
//!     breaker_failures.classify_status(StatusCode::SERVICE_UNAVAILABLE),
//!     Some(Failure::Status(StatusCode::SERVICE_UNAVAILABLE)),
//! );
//! assert_eq!(breaker_failures.classify_status(StatusCode::TOO_MANY_REQUESTS), None);
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::StatusCode;

use super::error::{Error, ErrorKind, Result};
use super::response::Response;

/// What went wrong with one attempt, when a [`Classifier`] counts it as a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Failure {
    /// A response whose status is in the classifier's set.
    Status(StatusCode),
    /// No connection could be made: the request never left, so any method may be resent.
    Connect,
    /// A deadline passed during the attempt.
    Timeout,
    /// The connection failed after the request was (perhaps) sent: closed or reset before a
    /// response.
    Transport,
}

impl Failure {
    /// True when the request certainly never reached the server ([`Failure::Connect`]).
    pub fn never_sent(self) -> bool {
        self == Failure::Connect
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

/// The statuses [`Classifier::default`] counts as failures: 408, 429, 500, 502, 503 and 504.
pub const DEFAULT_FAILURE_STATUSES: [StatusCode; 6] = [
    StatusCode::REQUEST_TIMEOUT,
    StatusCode::TOO_MANY_REQUESTS,
    StatusCode::INTERNAL_SERVER_ERROR,
    StatusCode::BAD_GATEWAY,
    StatusCode::SERVICE_UNAVAILABLE,
    StatusCode::GATEWAY_TIMEOUT,
];

/// Decides which outcomes of an attempt are failures: connect errors, timeouts and connections
/// closed before a response always are; a response is one when its status is in the set.
///
/// Cheap to clone (the set is shared). Every other outcome is not a failure: any other status,
/// and every other error kind (a refusal by the SSRF policy, a TLS failure, a middleware's own
/// error, and the refusals of the resilience middlewares: an open circuit, a rate limit, a full
/// bulkhead).
#[derive(Clone, PartialEq, Eq)]
pub struct Classifier {
    statuses: Arc<[StatusCode]>,
}

impl Default for Classifier {
    /// The statuses worth another attempt: [`DEFAULT_FAILURE_STATUSES`].
    fn default() -> Self {
        Classifier::new(DEFAULT_FAILURE_STATUSES)
    }
}

impl fmt::Debug for Classifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Classifier")
            .field("statuses", &self.statuses)
            .finish()
    }
}

impl Classifier {
    /// A classifier counting the responses with these statuses as failures, besides connect
    /// errors, timeouts and closed connections.
    pub fn new(statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        Classifier {
            statuses: statuses.into_iter().collect(),
        }
    }

    /// The statuses counted as failures.
    pub fn statuses(&self) -> &[StatusCode] {
        &self.statuses
    }

    /// The failure a response with this status is, if it is one.
    pub fn classify_status(&self, status: StatusCode) -> Option<Failure> {
        self.statuses
            .contains(&status)
            .then_some(Failure::Status(status))
    }

    /// The failure an error is, if it is one: [`ErrorKind::Connect`], [`ErrorKind::Timeout`]
    /// and [`ErrorKind::Transport`] are; nothing else is.
    pub fn classify_error(&self, err: &Error) -> Option<Failure> {
        match err.kind() {
            ErrorKind::Connect => Some(Failure::Connect),
            ErrorKind::Timeout => Some(Failure::Timeout),
            ErrorKind::Transport => Some(Failure::Transport),
            _ => None,
        }
    }

    /// The failure the outcome of an attempt is, if it is one.
    pub fn classify(&self, outcome: &Result<Response>) -> Option<Failure> {
        match outcome {
            Ok(response) => self.classify_status(response.status()),
            Err(err) => self.classify_error(err),
        }
    }
}

/// The header that marks a request as safe to replay even if its method is not idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Whether a request with this method may be sent more than once: GET, HEAD, OPTIONS, TRACE,
/// PUT and DELETE (RFC 9110, section 9.2.2).
pub(crate) fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;

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
/// use stopover::client::parse_retry_after;
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

/// The `Retry-After` of a response's headers as a wait from `now`, if it has a valid one.
pub(crate) fn retry_after_of(headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_retry_after(value, now))
}

/// A source of uniformly distributed random `u64`s, for jitter.
pub(crate) type RandomSource = Arc<dyn Fn() -> u64 + Send + Sync>;

/// A SplitMix64 sequence seeded from the operating system: cheap, lock-free, and more than
/// random enough to spread retries and probes apart.
pub(crate) fn default_random_source() -> RandomSource {
    use std::sync::atomic::{AtomicU64, Ordering};

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

/// `ceiling * random / u64::MAX`: a duration drawn from zero to `ceiling` by `random`.
pub(crate) fn scale(ceiling: Duration, random: u64) -> Duration {
    let nanos = ceiling.as_nanos() * u128::from(random) / u128::from(u64::MAX);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}
