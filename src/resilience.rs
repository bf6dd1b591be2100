//! The standard resilience pipeline: rate limit, total timeout, retry, circuit breaker and
//! attempt timeout, in that order, in one call.
//!
//! [`StandardPipeline`] is the client's answer to .NET's `AddStandardResilienceHandler`: the
//! middlewares a service calling other services wants, with defaults stated below, each
//! replaceable, in the one order in which they work together. It is a [`Chain`]: add it to a
//! client with [`ClientBuilder::middlewares`](crate::client::ClientBuilder::middlewares), or to
//! one request with [`RequestBuilder::middlewares`](crate::client::RequestBuilder::middlewares).
//!
//! ```
//! use std::time::Duration;
//! use stopover::client::Client;
//! use stopover::client::limit::{RateLimit, RateLimitPolicy};
//! use stopover::resilience::StandardPipeline;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = StandardPipeline::builder()
//!     .rate_limit(RateLimit::new(
//!         RateLimitPolicy::builder(50, Duration::from_secs(1)).build()?,
//!     ))
//!     .total_timeout(Duration::from_secs(20))
//!     .attempt_timeout(Duration::from_secs(5))
//!     .build()?;
//! let client = Client::builder().middlewares(pipeline.chain()).build()?;
//!
//! match client.get("http://127.0.0.1:8080/").send().await {
//!     Ok(response) => println!("{}", response.status()),
//!     Err(err) if err.is_circuit_open() || err.is_rate_limited() => {
//!         println!("shed without sending; retry after {:?}", err.retry_after());
//!     }
//!     Err(err) => println!("failed: {err}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # The defaults
//!
//! | piece | default | replace with |
//! |---|---|---|
//! | bulkhead | none | [`bulkhead`](StandardPipelineBuilder::bulkhead) |
//! | rate limit | none: a rate is a number only the caller knows | [`rate_limit`](StandardPipelineBuilder::rate_limit) |
//! | total timeout | 30 s, every attempt and every wait between them | [`total_timeout`](StandardPipelineBuilder::total_timeout) |
//! | retry | [`RetryPolicy::default`]: 3 attempts, idempotent requests only, full-jitter backoff from 100 ms to 10 s, `Retry-After` honoured up to 60 s, a retry budget of 20 % | [`retry`](StandardPipelineBuilder::retry) |
//! | circuit breaker | [`CircuitBreakerPolicy::default`]: per origin, opens at 50 % failures over the last 100 calls once 20 were made, 30 s open plus up to 10 % jitter, one probe | [`circuit_breaker`](StandardPipelineBuilder::circuit_breaker) |
//! | attempt timeout | 10 s, from sending until the response body is read; a client's or request's own attempt timeout wins | [`attempt_timeout`](StandardPipelineBuilder::attempt_timeout) |
//!
//! # Why this order, outermost first
//!
//! - **Bulkhead, then rate limit, outermost.** They decide whether a call starts at all, and
//!   count calls, not attempts: a call waiting for its turn does not spend its total timeout.
//!   The consequence: retries are not rate limited. For an upstream whose quota counts every
//!   attempt, keep the retry budget (it bounds retries to a share of calls) or add a second
//!   [`RateLimit`] inside the retry with [`Chain::with`].
//! - **Total timeout outside the retry.** It bounds the call as the caller sees it: every
//!   attempt and every backoff. Inside the retry it would bound each attempt, and a call could
//!   take three times as long as promised.
//! - **Retry outside the circuit breaker.** The breaker sees every attempt, so it opens after
//!   as many failures as its window says, not after as many retried calls; once it opens, the
//!   retry's next attempt fails at once with [`ErrorKind::CircuitOpen`], which the retry never
//!   retries. With the breaker outside, it would count only the last attempt of each call and
//!   the retries would keep hammering an upstream it would already have cut off.
//! - **Attempt timeout innermost.** A hanging attempt ends as a timeout that the breaker counts
//!   as a failure and the retry retries, and a half-open probe cannot hang forever. Outside the
//!   breaker, the timeout would drop the breaker's call unfinished, which the breaker counts as
//!   nothing: a hanging upstream would never open the circuit.
//!
//! # Compared with the others
//!
//! .NET's standard handler has the same order with a concurrency limiter of 1000 where this
//! has an optional bulkhead and rate limit, one circuit breaker per named client (this one is
//! per origin), and a breaker that counts 429 as a failure (this one does not). In both, a
//! `Retry-After` longer than the time left makes the retry sleep into the total timeout
//! (dotnet/extensions#7701); give the retry policy a
//! [`total_deadline`](crate::client::retry::RetryPolicyBuilder::total_deadline) equal to the
//! total timeout and it returns the last answer at once instead. Its
//! defaults are 3 retries from 2 s, a 10 % failure ratio over 30 s with 100 calls, 5 s open;
//! the ones here are resilience4j's shape with lower minimums, for clients that do not send
//! hundreds of calls a minute. tower-resilience and hpx leave the order to the user.
//!
//! [`RetryPolicy::default`]: crate::client::retry::RetryPolicy
//! [`CircuitBreakerPolicy::default`]: crate::client::breaker::CircuitBreakerPolicy
//! [`ErrorKind::CircuitOpen`]: crate::client::ErrorKind::CircuitOpen

use std::time::Duration;

use crate::client::breaker::CircuitBreaker;
use crate::client::bulkhead::Bulkhead;
use crate::client::limit::RateLimit;
use crate::client::retry::Retry;
use crate::client::{Chain, Error, Middleware, Next, Request, Response, Result};

/// A pipeline that cannot work, found when it is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StandardPipelineError {
    /// A timeout was zero.
    #[error("{0} must be greater than zero")]
    ZeroTimeout(&'static str),
    /// The attempt timeout was longer than the total timeout: no retry could ever start.
    #[error("attempt_timeout {attempt:?} is longer than total_timeout {total:?}")]
    AttemptAboveTotal {
        /// The attempt timeout given.
        attempt: Duration,
        /// The total timeout given.
        total: Duration,
    },
}

/// The standard resilience pipeline, built; see the [module](self) for the order and the
/// defaults.
#[derive(Debug, Clone)]
pub struct StandardPipeline {
    chain: Chain,
}

impl StandardPipeline {
    /// Starts from the defaults of the [module](self)'s table.
    pub fn builder() -> StandardPipelineBuilder {
        StandardPipelineBuilder {
            bulkhead: None,
            rate_limit: None,
            total_timeout: Duration::from_secs(30),
            retry: Retry::default(),
            breaker: CircuitBreaker::default(),
            attempt_timeout: Duration::from_secs(10),
        }
    }

    /// The middlewares in order, outermost first, for
    /// [`ClientBuilder::middlewares`](crate::client::ClientBuilder::middlewares).
    pub fn chain(&self) -> Chain {
        self.chain.clone()
    }
}

/// Builds a [`StandardPipeline`]; see [`StandardPipeline::builder`].
#[derive(Debug, Clone)]
pub struct StandardPipelineBuilder {
    bulkhead: Option<Bulkhead>,
    rate_limit: Option<RateLimit>,
    total_timeout: Duration,
    retry: Retry,
    breaker: CircuitBreaker,
    attempt_timeout: Duration,
}

impl StandardPipelineBuilder {
    /// A bulkhead, outermost. Default: none.
    pub fn bulkhead(mut self, bulkhead: Bulkhead) -> Self {
        self.bulkhead = Some(bulkhead);
        self
    }

    /// A rate limit, inside the bulkhead and outside everything else. Default: none.
    pub fn rate_limit(mut self, rate_limit: RateLimit) -> Self {
        self.rate_limit = Some(rate_limit);
        self
    }

    /// The longest a call may take, every attempt and wait included; past it the call fails
    /// with [`ErrorKind::Timeout`](crate::client::ErrorKind::Timeout). Default 30 s; not zero,
    /// and not shorter than the attempt timeout.
    pub fn total_timeout(mut self, timeout: Duration) -> Self {
        self.total_timeout = timeout;
        self
    }

    /// The retry. Default [`Retry::default`].
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The circuit breaker. Default [`CircuitBreaker::default`].
    pub fn circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.breaker = breaker;
        self
    }

    /// The longest one attempt may take, from sending until its response body is read, unless
    /// the client or the request set one of their own. Default 10 s; not zero.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Checks the timeouts and returns the pipeline.
    pub fn build(self) -> Result<StandardPipeline, StandardPipelineError> {
        if self.total_timeout.is_zero() {
            return Err(StandardPipelineError::ZeroTimeout("total_timeout"));
        }
        if self.attempt_timeout.is_zero() {
            return Err(StandardPipelineError::ZeroTimeout("attempt_timeout"));
        }
        if self.attempt_timeout > self.total_timeout {
            return Err(StandardPipelineError::AttemptAboveTotal {
                attempt: self.attempt_timeout,
                total: self.total_timeout,
            });
        }
        let mut chain = Chain::new();
        if let Some(bulkhead) = self.bulkhead {
            chain = chain.with(bulkhead);
        }
        if let Some(rate_limit) = self.rate_limit {
            chain = chain.with(rate_limit);
        }
        let chain = chain
            .with(TotalTimeout(self.total_timeout))
            .with(self.retry)
            .with(self.breaker)
            .with(AttemptTimeout(self.attempt_timeout));
        Ok(StandardPipeline { chain })
    }
}

/// Bounds everything inside it: every attempt, every wait between them.
struct TotalTimeout(Duration);

impl Middleware for TotalTimeout {
    async fn handle(&self, request: Request, next: Next) -> Result<Response> {
        // The URL is not kept for the error: the redirect loop names the hop's URL on any
        // error that has none.
        match tokio::time::timeout(self.0, next.run(request)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::timeout().with_message(format!(
                "the total timeout of {} ms passed",
                self.0.as_millis()
            ))),
        }
    }
}

/// Gives each attempt a timeout on the wire, unless it has one.
struct AttemptTimeout(Duration);

impl Middleware for AttemptTimeout {
    fn handle(
        &self,
        mut request: Request,
        next: Next,
    ) -> impl std::future::Future<Output = Result<Response>> + Send {
        if request.attempt_timeout().is_none() {
            request.set_attempt_timeout(Some(self.0));
        }
        next.run(request)
    }
}
