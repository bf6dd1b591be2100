//! [`Retry`]: the middleware that applies a [`RetryPolicy`](super::RetryPolicy).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::budget::BudgetState;
use crate::client::{
    Attempt, Attempts, Error, ErrorKind, Failure, GaveUp, Middleware, Next, Request, Response,
    Result,
};

use super::policy::{Delay, RetryPolicy};

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
            request.set_attempt(Attempt(attempt));
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
            let Some(failure) = policy.classifier.classify(&outcome) else {
                return tag(outcome, attempt, None);
            };
            let gave_up = if attempt >= policy.max_attempts {
                Some(GaveUp::MaxAttempts)
            } else if !idempotent && !failure.never_sent() {
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
            pause(outcome, delay.duration()).await;
            request = spare;
            attempt += 1;
        }
    }
}

/// Lets a failed attempt's response go and waits out the delay before the next attempt.
///
/// Boxed: it runs only when a retry happens, and its state (a response being drained, a timer)
/// would otherwise make every request's future larger, and larger to move.
fn pause(outcome: Result<Response>, delay: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        if let Ok(response) = outcome {
            response.discard().await;
        }
        tokio::time::sleep(delay).await;
    })
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
