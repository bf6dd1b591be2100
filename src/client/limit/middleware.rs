//! [`RateLimit`]: the middleware that keeps one GCRA cell per key and applies a
//! [`RateLimitPolicy`](super::RateLimitPolicy).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use http::StatusCode;
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::client::classify::retry_after_of;
use crate::client::origin::{KeyOf, Keyed};
use crate::client::{Error, Middleware, Next, Pending, Request, Response, Result};

use super::gcra::Cell;
use super::policy::RateLimitPolicy;

/// One key's cell, shared by the map and the requests in flight, so that a response that
/// pauses the key finds it without looking it up again.
struct Entry {
    key: Arc<str>,
    cell: Mutex<Cell>,
}

impl Entry {
    fn lock(&self) -> MutexGuard<'_, Cell> {
        // Every change to a cell is one assignment: a poisoned lock holds nothing half-done.
        self.cell
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

type Cells = Keyed<Entry>;

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
    key: KeyOf,
    cells: Arc<Mutex<Cells>>,
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
            key: KeyOf::Origin,
            cells: Arc::new(Mutex::new(Keyed::new())),
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
        self.key = KeyOf::custom(key);
        self
    }

    /// The policy applied.
    pub fn policy(&self) -> &RateLimitPolicy {
        &self.policy
    }

    fn lock(&self) -> MutexGuard<'_, Cells> {
        // The map only gains and loses whole entries: a poisoned lock holds nothing half-done.
        self.cells
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cell of `request`'s key, made on its first request; the key is copied only then.
    fn entry(&self, request: &Request, now: Instant) -> Arc<Entry> {
        self.lock().entry(
            &self.key,
            request,
            self.policy.max_keys,
            // A cell with no request holding it and no turn taken ahead is as good as new.
            |entry| Arc::strong_count(entry) == 1 && entry.lock().is_idle(now),
            |key| Entry {
                key: Arc::clone(key),
                cell: Mutex::new(Cell::new(now)),
            },
        )
    }

    fn pause(&self, entry: &Entry, wait: Duration) {
        let wait = wait.min(self.policy.retry_after_cap);
        let Some(until) = Instant::now().checked_add(wait) else {
            return;
        };
        tracing::info!(
            key = &*entry.key,
            pause_ms = wait.as_millis() as u64,
            "rate limit paused by Retry-After"
        );
        #[cfg(feature = "metrics")]
        ::metrics::counter!("stopover.client.rate_limit.pauses").increment(1);
        entry.lock().pause(until);
    }
}

/// Waiting for a turn, then the rest of the chain. Boxed: only a request over the rate waits,
/// and a timer, the request and the chain held inline would make every request's future
/// larger.
type Waiting = Pin<Box<dyn Future<Output = Result<Response>> + Send>>;

impl Middleware for RateLimit {
    fn handle(
        &self,
        request: Request,
        next: Next,
    ) -> impl Future<Output = Result<Response>> + Send {
        // The turn and the hand-over to the rest of the chain happen here, so that the future
        // holds neither the request nor the chain: it stays small, which keeps the chain's box
        // of it cheap.
        let now = Instant::now();
        let entry = self.entry(&request, now);
        let turn = entry.lock().take(&self.policy, now);
        match turn {
            Ok(wait) if wait.is_zero() => Call::Now {
                pending: next.run(request),
                after: After { limit: self, entry },
            },
            Ok(wait) => Call::Later {
                waiting: Box::pin(async move {
                    tokio::time::sleep(wait).await;
                    next.run(request).await
                }),
                after: After { limit: self, entry },
            },
            Err(retry_after) => {
                tracing::debug!(
                    key = &*entry.key,
                    retry_after_ms = retry_after.as_millis() as u64,
                    "rate limit refused the request"
                );
                #[cfg(feature = "metrics")]
                ::metrics::counter!("stopover.client.rate_limit.rejections").increment(1);
                Call::Refused {
                    err: Some(
                        Error::rate_limited(Some(retry_after)).with_url(request.url().clone()),
                    ),
                }
            }
        }
    }
}

/// What a request let through does with its answer: a 429 or 503 with `Retry-After` pauses
/// its key.
struct After<'a> {
    limit: &'a RateLimit,
    entry: Arc<Entry>,
}

impl After<'_> {
    fn answer(&self, outcome: &Result<Response>) {
        if !self.limit.policy.pause_on_retry_after {
            return;
        }
        if let Ok(response) = outcome {
            let status = response.status();
            if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
            {
                if let Some(wait) = retry_after_of(response.headers(), SystemTime::now()) {
                    self.limit.pause(&self.entry, wait);
                }
            }
        }
    }
}

pin_project! {
    /// A request through the limit: at once, after its turn, or refused.
    #[project = CallProj]
    enum Call<'a> {
        Now { #[pin] pending: Pending, after: After<'a> },
        Later { waiting: Waiting, after: After<'a> },
        Refused { err: Option<Error> },
    }
}

impl Future for Call<'_> {
    type Output = Result<Response>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (outcome, after) = match self.project() {
            CallProj::Now { pending, after } => (std::task::ready!(pending.poll(cx)), after),
            CallProj::Later { waiting, after } => {
                (std::task::ready!(waiting.as_mut().poll(cx)), after)
            }
            CallProj::Refused { err } => {
                return Poll::Ready(Err(err.take().unwrap_or_else(|| Error::rate_limited(None))));
            }
        };
        after.answer(&outcome);
        Poll::Ready(outcome)
    }
}
