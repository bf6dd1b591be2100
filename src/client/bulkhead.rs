//! Bulkhead: at most so many requests in flight per key, a bounded queue behind them, and a
//! typed refusal past it.
//!
//! [`Bulkhead`] keeps one compartment per key (the origin by default): up to
//! `max_concurrent` requests in flight; the next ones wait in a queue of
//! [`queue`](BulkheadPolicyBuilder::queue) places (none by default), for at most
//! [`queue_timeout`](BulkheadPolicyBuilder::queue_timeout); a request that finds the queue full,
//! or waits past the timeout, fails with
//! [`ErrorKind::BulkheadFull`](crate::client::ErrorKind::BulkheadFull) without being sent. A
//! slow upstream then holds a bounded share of the client's connections and tasks instead of
//! all of them, and the calls to every other upstream go on.
//!
//! ```
//! use std::time::Duration;
//! use stopover::client::Client;
//! use stopover::client::bulkhead::{Bulkhead, BulkheadPolicy};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // 20 requests in flight per origin, 50 more waiting at most 1 s each.
//! let policy = BulkheadPolicy::builder(20)
//!     .queue(50)
//!     .queue_timeout(Duration::from_secs(1))
//!     .build()?;
//! let client = Client::builder().middleware(Bulkhead::new(policy)).build()?;
//!
//! match client.get("http://127.0.0.1:8080/").send().await {
//!     Err(err) if err.is_bulkhead_full() => println!("too many calls in flight, shedding"),
//!     other => println!("{:?}", other.map(|response| response.status())),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Compared with the others
//!
//! resilience4j's semaphore bulkhead (`maxConcurrentCalls` 25, `maxWaitDuration` 0) and .NET's
//! standard handler (a `ConcurrencyLimiter` of 1000, queue 0) keep one limit per pipeline;
//! this one is per key, so one slow origin cannot take every slot, and the queue is bounded by
//! length as well as time. tower's `ConcurrencyLimit` waits in `poll_ready` with no bound and
//! no refusal. The slot is held until the response head arrives (or the request fails, or its
//! caller drops it), not while the body is read.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::client::origin::{KeyOf, Keyed};
use crate::client::{Error, Middleware, Next, Pending, Request, Response, Result};

/// A bulkhead configuration that cannot work, found when the policy is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BulkheadPolicyError {
    /// `max_concurrent` was zero: no request could ever go.
    #[error("max_concurrent must be at least 1")]
    ZeroConcurrency,
    /// `max_concurrent` was above what a semaphore can hold.
    #[error("max_concurrent {0} is above the most a semaphore holds")]
    ConcurrencyTooLarge(usize),
    /// The queue timeout was zero (use a queue of 0 to refuse at once).
    #[error("queue_timeout must be greater than zero (a queue of 0 refuses at once)")]
    ZeroQueueTimeout,
    /// The most keys kept was zero.
    #[error("max_keys must be at least 1")]
    ZeroMaxKeys,
}

/// How many requests per key a [`Bulkhead`] lets be in flight, and how many may wait.
///
/// Built with [`BulkheadPolicy::builder`]; the defaults are stated on each builder method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadPolicy {
    max_concurrent: usize,
    queue: usize,
    queue_timeout: Option<Duration>,
    max_keys: usize,
}

impl BulkheadPolicy {
    /// Starts a policy of at most `max_concurrent` requests in flight per key, with no queue:
    /// the next request is refused at once.
    pub fn builder(max_concurrent: usize) -> BulkheadPolicyBuilder {
        BulkheadPolicyBuilder {
            policy: BulkheadPolicy {
                max_concurrent,
                queue: 0,
                queue_timeout: None,
                max_keys: 1024,
            },
        }
    }

    /// The most requests in flight per key.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent
    }
}

/// Builds a [`BulkheadPolicy`]; see [`BulkheadPolicy::builder`].
#[derive(Debug, Clone)]
pub struct BulkheadPolicyBuilder {
    policy: BulkheadPolicy,
}

impl BulkheadPolicyBuilder {
    /// How many requests may wait per key for a slot when all are taken; the next one is
    /// refused. Default 0: refuse at once.
    pub fn queue(mut self, places: usize) -> Self {
        self.policy.queue = places;
        self
    }

    /// The longest a request waits in the queue before it is refused. Default: no limit but
    /// the queue's length (and the caller's own timeout). Must not be zero.
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.policy.queue_timeout = Some(timeout);
        self
    }

    /// The most keys kept. When a new key would pass it, the compartments with nothing in
    /// flight are forgotten, which changes nothing. Default 1024; at least 1.
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.policy.max_keys = keys;
        self
    }

    /// Checks the configuration and returns the policy.
    pub fn build(self) -> Result<BulkheadPolicy, BulkheadPolicyError> {
        let policy = self.policy;
        if policy.max_concurrent == 0 {
            return Err(BulkheadPolicyError::ZeroConcurrency);
        }
        if policy.max_concurrent > Semaphore::MAX_PERMITS {
            return Err(BulkheadPolicyError::ConcurrencyTooLarge(
                policy.max_concurrent,
            ));
        }
        if policy.queue_timeout == Some(Duration::ZERO) {
            return Err(BulkheadPolicyError::ZeroQueueTimeout);
        }
        if policy.max_keys == 0 {
            return Err(BulkheadPolicyError::ZeroMaxKeys);
        }
        Ok(policy)
    }
}

/// One key's slots and the number of requests waiting for one.
#[derive(Debug)]
struct Compartment {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// The bulkhead middleware: at most the policy's number of requests in flight per key (the
/// request's origin unless [`key`](Bulkhead::key) says otherwise), a bounded queue, and
/// [`ErrorKind::BulkheadFull`](crate::client::ErrorKind::BulkheadFull) past it.
///
/// Cheap to clone; clones share their compartments. A refusal is a tracing event
/// (`bulkhead refused the request`) and, with the `metrics` feature, a count in
/// `stopover.client.bulkhead.rejections`.
#[derive(Clone)]
pub struct Bulkhead {
    policy: Arc<BulkheadPolicy>,
    key: KeyOf,
    compartments: Arc<Mutex<Keyed<Compartment>>>,
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("policy", &self.policy)
            .field("keys", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl Bulkhead {
    /// A bulkhead applying `policy`, with one compartment per origin (scheme, host and port).
    pub fn new(policy: BulkheadPolicy) -> Self {
        Bulkhead {
            policy: Arc::new(policy),
            key: KeyOf::Origin,
            compartments: Arc::new(Mutex::new(Keyed::new())),
        }
    }

    /// What the compartments are kept per: a function of the request returning its key.
    /// Default: the origin, written `scheme://host:port`; a constant key bounds everything the
    /// client sends.
    pub fn key(mut self, key: impl Fn(&Request) -> String + Send + Sync + 'static) -> Self {
        self.key = KeyOf::custom(key);
        self
    }

    /// The policy applied.
    pub fn policy(&self) -> &BulkheadPolicy {
        &self.policy
    }

    /// How many requests for `key` are in flight now.
    pub fn in_flight(&self, key: &str) -> usize {
        self.lock().get(key).map_or(0, |compartment| {
            self.policy.max_concurrent - compartment.slots.available_permits()
        })
    }

    fn lock(&self) -> MutexGuard<'_, Keyed<Compartment>> {
        // The map only gains and loses whole entries: a poisoned lock holds nothing half-done.
        self.compartments
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The compartment of `request`'s key, made on its first request.
    fn compartment(&self, request: &Request) -> Arc<Compartment> {
        self.lock().entry(
            &self.key,
            request,
            self.policy.max_keys,
            // Only the map holds an idle compartment: forgetting it changes nothing.
            |compartment| Arc::strong_count(compartment) == 1,
            |_| Compartment {
                slots: Arc::new(Semaphore::new(self.policy.max_concurrent)),
                waiting: AtomicUsize::new(0),
            },
        )
    }

    /// A slot after waiting in the queue, when none was free.
    async fn queue(
        &self,
        compartment: &Compartment,
    ) -> std::result::Result<OwnedSemaphorePermit, &'static str> {
        if let Ok(slot) = Arc::clone(&compartment.slots).try_acquire_owned() {
            return Ok(slot);
        }
        let policy = &*self.policy;
        if compartment.waiting.fetch_add(1, Ordering::AcqRel) >= policy.queue {
            compartment.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err("every slot is taken and the queue is full");
        }
        let _place = Waiting(&compartment.waiting);
        let acquire = Arc::clone(&compartment.slots).acquire_owned();
        let slot = match policy.queue_timeout {
            None => acquire.await,
            Some(timeout) => match tokio::time::timeout(timeout, acquire).await {
                Ok(slot) => slot,
                Err(_) => return Err("no slot came free within the queue timeout"),
            },
        };
        // The semaphore is never closed.
        slot.map_err(|_| "the bulkhead was closed")
    }
}

/// A place in a compartment's queue, given back when the wait ends however it ends.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How a request goes on: with a slot taken at once, or after waiting in the queue.
// The large variant is the healthy path, kept inline on purpose: boxing it would cost every
// request an allocation to save bytes on the rare one that queues.
#[allow(clippy::large_enum_variant)]
enum Start {
    Now(OwnedSemaphorePermit, Pending),
    /// Boxed: only a request that finds every slot taken waits, and the wait, the request and
    /// the chain held inline would make every request's future larger.
    Queued(Pin<Box<dyn Future<Output = Result<Response>> + Send>>),
}

impl Middleware for Bulkhead {
    fn handle(
        &self,
        request: Request,
        next: Next,
    ) -> impl Future<Output = Result<Response>> + Send {
        // A free slot is taken and the request handed over here, so that the future below
        // holds neither the request nor the chain: it stays small, which keeps the chain's
        // box of it cheap.
        let compartment = self.compartment(&request);
        let start = match Arc::clone(&compartment.slots).try_acquire_owned() {
            Ok(slot) => Start::Now(slot, next.run(request)),
            Err(_) => {
                let bulkhead = self.clone();
                Start::Queued(Box::pin(async move {
                    let slot = match bulkhead.queue(&compartment).await {
                        Ok(slot) => slot,
                        Err(why) => return Err(bulkhead.refuse(&request, why)),
                    };
                    let outcome = next.run(request).await;
                    drop(slot);
                    outcome
                }))
            }
        };
        async move {
            match start {
                Start::Now(slot, pending) => {
                    let outcome = pending.await;
                    drop(slot);
                    outcome
                }
                Start::Queued(queued) => queued.await,
            }
        }
    }
}

impl Bulkhead {
    fn refuse(&self, request: &Request, why: &'static str) -> Error {
        tracing::debug!(
            key = self.key.of(request),
            why,
            "bulkhead refused the request"
        );
        #[cfg(feature = "metrics")]
        ::metrics::counter!("stopover.client.bulkhead.rejections").increment(1);
        Error::bulkhead_full()
            .with_url(request.url().clone())
            .with_message(why)
    }
}
