//! Hedging: when an idempotent request is slow to answer, send a second copy and take the first
//! good answer.
//!
//! [`Hedge`] sends the request; if no answer has come after the
//! [`delay`](HedgePolicyBuilder::delay), it sends a copy (up to
//! [`max_hedges`](HedgePolicyBuilder::max_hedges) copies, one per delay), and a copy goes at
//! once when an attempt ends in a failure. The first answer that is not a failure (by the
//! [`Classifier`], the type retry and the circuit breaker use) wins; the attempts still in
//! flight are cancelled, their connections closed. When every attempt fails, the first
//! failure is returned. Each attempt is its own request on the wire, marked with its
//! [`Attempt`] number, so its span carries `http.request.resend_count`, and the winner tells how
//! many were sent ([`Attempts`]).
//!
//! Only requests that may be sent twice are hedged: idempotent methods, or a request carrying
//! an `Idempotency-Key`; a request with a streaming body is sent once.
//!
//! ```
//! use std::time::Duration;
//! use stopover::client::Client;
//! use stopover::client::hedge::{Hedge, HedgePolicy};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // A copy after 50 ms (about the upstream's 95th percentile), two copies at most.
//! let policy = HedgePolicy::builder()
//!     .delay(Duration::from_millis(50))
//!     .max_hedges(2)
//!     .build()?;
//! let client = Client::builder().middleware(Hedge::new(policy)).build()?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! # Compared with the others
//!
//! Like Polly's hedging strategy (latency mode), a failure starts the next attempt at once and
//! the first acceptable answer wins, where tower's `Hedge` takes the first completion even if it
//! is an error. Unlike Polly's standard hedging handler, a request that cannot be replayed is
//! not an error: it is simply not hedged, and neither is a POST without an `Idempotency-Key`
//! (.NET and hedgedhttp leave that to the user). Not yet here: a delay read from a percentile
//! of the latencies seen (tower's rotating histogram) and a hedging budget; put the hedge
//! outside a circuit breaker so that every copy is counted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

use crate::client::classify::is_idempotent;
use crate::client::{
    Attempt, Attempts, Classifier, Error, ErrorKind, IDEMPOTENCY_KEY, Middleware, Next, Request,
    Response, Result,
};

/// A hedging configuration that cannot work, found when the policy is built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HedgePolicyError {
    /// `max_hedges` was outside 1 to 10.
    #[error("max_hedges {0} is outside 1 to 10")]
    MaxHedges(u32),
}

/// When a [`Hedge`] sends copies of a request, and how many.
///
/// Built with [`HedgePolicy::builder`]; the defaults are stated on each builder method.
#[derive(Debug, Clone)]
pub struct HedgePolicy {
    delay: Duration,
    max_hedges: u32,
    classifier: Classifier,
}

impl HedgePolicy {
    /// Starts a policy from the defaults: one copy after 2 s (Polly's defaults), and the
    /// failures of [`Classifier::default`].
    pub fn builder() -> HedgePolicyBuilder {
        HedgePolicyBuilder {
            policy: HedgePolicy {
                delay: Duration::from_secs(2),
                max_hedges: 1,
                classifier: Classifier::default(),
            },
        }
    }
}

/// Builds a [`HedgePolicy`]; see [`HedgePolicy::builder`].
#[derive(Debug, Clone)]
pub struct HedgePolicyBuilder {
    policy: HedgePolicy,
}

impl HedgePolicyBuilder {
    /// How long to wait for an answer before sending the next copy. Default 2 s; zero sends
    /// every copy at once.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.policy.delay = delay;
        self
    }

    /// The most copies sent besides the first request. Default 1; between 1 and 10.
    pub fn max_hedges(mut self, hedges: u32) -> Self {
        self.policy.max_hedges = hedges;
        self
    }

    /// Which answers are failures, that do not win and start the next copy at once. Default
    /// [`Classifier::default`].
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.policy.classifier = classifier;
        self
    }

    /// Checks the configuration and returns the policy.
    pub fn build(self) -> Result<HedgePolicy, HedgePolicyError> {
        if !(1..=10).contains(&self.policy.max_hedges) {
            return Err(HedgePolicyError::MaxHedges(self.policy.max_hedges));
        }
        Ok(self.policy)
    }
}

/// The hedging middleware: applies a [`HedgePolicy`] to every request that goes through it.
///
/// Cheap to clone. Every copy sent is a tracing event (`hedging request`) and, with the
/// `metrics` feature, a count in `stopover.client.hedges`.
#[derive(Debug, Clone)]
pub struct Hedge {
    policy: Arc<HedgePolicy>,
}

impl Hedge {
    /// A middleware applying `policy`.
    pub fn new(policy: HedgePolicy) -> Self {
        Hedge {
            policy: Arc::new(policy),
        }
    }
}

type Attempting = Pin<Box<dyn Future<Output = Result<Response>> + Send>>;

impl Middleware for Hedge {
    async fn handle(&self, request: Request, next: Next) -> Result<Response> {
        let policy = &*self.policy;
        let may_send_twice = (is_idempotent(request.method())
            || request.headers().contains_key(IDEMPOTENCY_KEY))
            && !request.body().is_stream();
        if !may_send_twice {
            return next.run(request).await;
        }
        let template = match request.try_clone() {
            Ok(template) => template,
            Err(err) if err.kind() == ErrorKind::BodyNotReplayable => {
                return next.run(request).await;
            }
            Err(err) => return Err(err),
        };
        hedge(policy, request, template, next).await
    }
}

/// Sends `first`, then copies of `template` as the policy says; the first good answer.
///
/// Boxed where it starts: only requests that may be hedged pay for the state of several
/// attempts in flight.
fn hedge(
    policy: &HedgePolicy,
    mut first: Request,
    template: Request,
    next: Next,
) -> Pin<Box<dyn Future<Output = Result<Response>> + Send + '_>> {
    Box::pin(async move {
        let mut in_flight: FuturesUnordered<Attempting> = FuturesUnordered::new();
        first.set_attempt(Attempt(1));
        in_flight.push(Box::pin(next.run(first)));
        let mut sent = 1u32;
        let mut first_failure: Option<Result<Response>> = None;
        let timer = tokio::time::sleep(policy.delay);
        tokio::pin!(timer);
        loop {
            let can_hedge = sent <= policy.max_hedges;
            let started_by = tokio::select! {
                Some(outcome) = in_flight.next() => {
                    if policy.classifier.classify(&outcome).is_none() {
                        return match outcome {
                            Ok(mut response) => {
                                response.extensions_mut().insert(Attempts(sent));
                                Ok(response)
                            }
                            Err(err) => Err(err),
                        };
                    }
                    if first_failure.is_none() {
                        first_failure = Some(outcome);
                    }
                    if !can_hedge {
                        if in_flight.is_empty() {
                            break;
                        }
                        continue;
                    }
                    "failure"
                }
                () = &mut timer, if can_hedge => "delay",
                else => break,
            };
            let mut copy = match template.try_clone() {
                Ok(copy) => copy,
                Err(_) => break,
            };
            sent += 1;
            copy.set_attempt(Attempt(sent));
            tracing::info!(attempt = sent, started_by, "hedging request");
            #[cfg(feature = "metrics")]
            ::metrics::counter!("stopover.client.hedges").increment(1);
            in_flight.push(Box::pin(next.run(copy)));
            if let Some(at) = tokio::time::Instant::now().checked_add(policy.delay) {
                timer.as_mut().reset(at);
            }
        }
        // Every attempt failed, or no copy could be made: wait for those in flight, if any,
        // and keep the first failure.
        while let Some(outcome) = in_flight.next().await {
            if policy.classifier.classify(&outcome).is_none() {
                return outcome;
            }
            first_failure.get_or_insert(outcome);
        }
        match first_failure {
            Some(Ok(mut response)) => {
                response.extensions_mut().insert(Attempts(sent));
                Ok(response)
            }
            Some(Err(err)) => Err(err.with_attempts(sent, None)),
            // Not reached: the first attempt was sent, and every attempt that ended without
            // winning was kept here.
            None => Err(Error::middleware(std::io::Error::other(
                "hedging ended with no attempt",
            ))),
        }
    })
}
