//! [`RateLimit`]: the middleware that keeps one GCRA cell per key and applies a
//! [`RateLimitPolicy`](super::RateLimitPolicy).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use http::StatusCode;
use tokio::time::Instant;

use crate::client::classify::retry_after_of;
use crate::client::origin::origin_key;
use crate::client::{Error, Middleware, Next, Request, Response, Result};

use super::gcra::Cell;
use super::policy::RateLimitPolicy;

type KeyFn = Arc<dyn Fn(&Request) -> String + Send + Sync>;

/// The rate limit middleware: at most the policy's rate of requests per key (the request's
/// origin unless [`key`](RateLimit::key) says otherwise), in this process, and a pause of the
/// whole key when the upstream answers 429 or 503 with `Retry-After`.
///
/// Cheap to clone; clones share their keys. A request over the rate waits for its turn up to
/// the policy's [`max_wait`](super::RateLimitPolicyBuilder::max_wait), or fails at once with
/// [`ErrorKind::RateLimited`](crate::client::ErrorKind::RateLimited) and
/// [`Error::retry_after`] set to the wait it would have needed; it is never sent. A refusal
/// and a pause are tracing events (`rate limit refused the request`, `rate limit paused by
/// Retry-After`) and, with the `metrics` feature, counts in
/// `stopover.client.rate_limit.rejections` and `stopover.client.rate_limit.pauses`.
#[derive(Clone)]
pub struct RateLimit {
    policy: Arc<RateLimitPolicy>,
    key: KeyFn,
    cells: Arc<Mutex<HashMap<String, Cell>>>,
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("policy", &self.policy)
            .field("keys", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl RateLimit {
    /// A limiter applying `policy`, with one rate per origin (scheme, host and port).
    pub fn new(policy: RateLimitPolicy) -> Self {
        RateLimit {
            policy: Arc::new(policy),
            key: Arc::new(|request: &Request| origin_key(request.url())),
            cells: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// What the rate is kept per: a function of the request returning its key. Default: the
    /// origin, written `scheme://host:port`. A constant key limits everything the client
    /// sends; a key per API account limits each account's quota.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stopover::client::limit::{RateLimit, RateLimitPolicy};
    ///
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let policy = RateLimitPolicy::builder(100, Duration::from_secs(1)).build()?;
    /// let per_account = RateLimit::new(policy).key(|request| {
    ///     let account = request.headers().get("x-account").and_then(|v| v.to_str().ok());
    ///     account.unwrap_or("anonymous").to_owned()
    /// });
    /// # let _ = per_account;
    /// # Ok(())
    /// # }
    /// ```
    pub fn key(mut self, key: impl Fn(&Request) -> String + Send + Sync + 'static) -> Self {
        self.key = Arc::new(key);
        self
    }

    /// The policy applied.
    pub fn policy(&self) -> &RateLimitPolicy {
        &self.policy
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Cell>> {
        // Every change to a cell is one assignment: a poisoned lock holds nothing half-done.
        self.cells
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take(&self, key: &str, now: Instant) -> std::result::Result<Duration, Duration> {
        let policy = &*self.policy;
        let mut cells = self.lock();
        if let Some(cell) = cells.get_mut(key) {
            return cell.take(policy, now);
        }
        if cells.len() >= policy.max_keys {
            cells.retain(|_, cell| !cell.is_idle(now));
        }
        let mut cell = Cell::new(now);
        let turn = cell.take(policy, now);
        cells.insert(key.to_owned(), cell);
        turn
    }

    fn pause(&self, key: &str, wait: Duration) {
        let wait = wait.min(self.policy.retry_after_cap);
        let now = Instant::now();
        let Some(until) = now.checked_add(wait) else {
            return;
        };
        tracing::info!(
            key,
            pause_ms = wait.as_millis() as u64,
            "rate limit paused by Retry-After"
        );
        #[cfg(feature = "metrics")]
        ::metrics::counter!("stopover.client.rate_limit.pauses").increment(1);
        let mut cells = self.lock();
        cells
            .entry(key.to_owned())
            .or_insert_with(|| Cell::new(now))
            .pause(until);
    }
}

impl Middleware for RateLimit {
    async fn handle(&self, request: Request, next: Next) -> Result<Response> {
        let key = (self.key)(&request);
        match self.take(&key, Instant::now()) {
            Ok(wait) if wait.is_zero() => {}
            Ok(wait) => sleep(wait).await,
            Err(retry_after) => {
                tracing::debug!(
                    key,
                    retry_after_ms = retry_after.as_millis() as u64,
                    "rate limit refused the request"
                );
                #[cfg(feature = "metrics")]
                ::metrics::counter!("stopover.client.rate_limit.rejections").increment(1);
                return Err(Error::rate_limited(Some(retry_after)).with_url(request.url().clone()));
            }
        }
        let outcome = next.run(request).await;
        if self.policy.pause_on_retry_after {
            if let Ok(response) = &outcome {
                let status = response.status();
                if status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::SERVICE_UNAVAILABLE
                {
                    if let Some(wait) = retry_after_of(response.headers(), SystemTime::now()) {
                        self.pause(&key, wait);
                    }
                }
            }
        }
        outcome
    }
}

/// Waits for a turn. Boxed: it runs only for a request over the rate, and a timer held inline
/// would make every request's future larger.
fn sleep(wait: Duration) -> std::pin::Pin<Box<tokio::time::Sleep>> {
    Box::pin(tokio::time::sleep(wait))
}
