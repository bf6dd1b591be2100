//! [`Hedge`]: the middleware that applies a [`HedgePolicy`].

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::{Instant, Sleep};

use crate::client::budget::BudgetState;
use crate::client::classify::is_idempotent;
use crate::client::origin::with_origin_key;
use crate::client::{
    Attempt, Attempts, Error, ErrorKind, IDEMPOTENCY_KEY, Middleware, Next, Pending, Request,
    Response, Result,
};

use super::latency::{KeyLatency, Latencies, Reading};
use super::policy::HedgePolicy;

type KeyFn = Arc<dyn Fn(&Request) -> String + Send + Sync>;

/// The hedging middleware: applies a [`HedgePolicy`] to every request that goes through it.
///
/// Cheap to clone; clones share one budget and one latency record. Every copy sent is a
/// tracing event (`hedging request`) and, with the `metrics` feature, a count in
/// `stopover.client.hedges`; a copy the budget refuses is a DEBUG event
/// (`not hedging request`).
///
/// When copies were sent, the response tells how many requests went in all ([`Attempts`]; for
/// an error, [`Error::attempts`]); a response without it was answered by the only request
/// sent.
#[derive(Clone)]
pub struct Hedge {
    policy: Arc<HedgePolicy>,
    budget: Option<Arc<BudgetState>>,
    latencies: Option<Arc<Latencies>>,
    key: Option<KeyFn>,
}

impl fmt::Debug for Hedge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("policy", &self.policy)
            .field("custom_key", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Hedge {
    fn default() -> Self {
        Hedge::new(HedgePolicy::default())
    }
}

impl Hedge {
    /// A middleware applying `policy`, with a fresh budget and, for a quantile delay, a fresh
    /// latency record kept per origin (scheme, host and port).
    pub fn new(policy: HedgePolicy) -> Self {
        let latencies = policy.quantile.map(|quantile| {
            Arc::new(Latencies::new(
                Reading {
                    quantile,
                    window: policy.quantile_window,
                    min_samples: policy.min_samples,
                },
                policy.max_keys,
            ))
        });
        Hedge {
            budget: policy.budget.clone().map(|b| Arc::new(BudgetState::new(b))),
            latencies,
            policy: Arc::new(policy),
            key: None,
        }
    }

    /// What the latency record of a quantile delay is kept per: a function of the request
    /// returning its key. Default: the origin (scheme, host and port), looked up by the URL's
    /// own text without an allocation; a key function makes its `String` on every request.
    ///
    /// ```
    /// use stopover::client::hedge::{Hedge, HedgePolicy};
    ///
    /// // One record per endpoint path: a search and a lookup answer in different times.
    /// let policy = HedgePolicy::builder().delay_quantile(0.95).build()?;
    /// let hedge = Hedge::new(policy).key(|request| request.url().path().to_owned());
    /// # let _ = hedge;
    /// # Ok::<(), stopover::client::hedge::HedgePolicyError>(())
    /// ```
    pub fn key(mut self, key: impl Fn(&Request) -> String + Send + Sync + 'static) -> Self {
        self.key = Some(Arc::new(key));
        self
    }

    /// The policy applied.
    pub fn policy(&self) -> &HedgePolicy {
        &self.policy
    }

    /// Whether `request` may be sent more than once: an idempotent method or an
    /// `Idempotency-Key`, and a body that is buffered or a stream with a replay cap.
    fn may_send_twice(request: &Request) -> bool {
        (is_idempotent(request.method()) || request.headers().contains_key(IDEMPOTENCY_KEY))
            && (!request.body().is_stream() || request.body().is_replayable_stream())
    }

    fn latency_of(&self, request: &Request, now: Instant) -> Option<Arc<KeyLatency>> {
        let latencies = self.latencies.as_ref()?;
        match &self.key {
            Some(key) => latencies.of(&key(request), now),
            None => with_origin_key(request.url(), |key| latencies.of(key, now)),
        }
    }
}

impl Middleware for Hedge {
    async fn handle(&self, mut request: Request, next: Next) -> Result<Response> {
        if !Hedge::may_send_twice(&request) {
            return next.run(request).await;
        }
        // The copy every hedge is made from: the request's parts and a handle on its body
        // (shared bytes, or the recording of a capped stream).
        let template = match request.try_clone() {
            Ok(template) => template,
            Err(err) if err.kind() == ErrorKind::BodyNotReplayable => {
                return next.run(request).await;
            }
            Err(err) => return Err(err),
        };
        if let Some(budget) = &self.budget {
            budget.deposit();
        }
        // Only a quantile delay reads the clock here; a fixed one arms its timer from the
        // first poll that finds the request still out.
        let started = self.latencies.as_ref().map(|_| Instant::now());
        let latency = started.and_then(|now| self.latency_of(&request, now));
        let reading = self.latencies.as_ref().map(|latencies| latencies.reading);
        let quantile_delay = match (&latency, started, &reading) {
            (Some(latency), Some(now), Some(reading)) => latency.delay(now, reading),
            _ => None,
        };
        let delay = quantile_delay.unwrap_or(self.policy.delay);

        request.set_attempt(Attempt(1));
        let mut first = pin!(next.run(request));
        let mut timer = pin!(None::<Sleep>);
        let first_outcome = poll_fn(|cx| {
            if let Poll::Ready(outcome) = first.as_mut().poll(cx) {
                return Poll::Ready(Some(outcome));
            }
            if timer.is_none() {
                match Instant::now().checked_add(delay) {
                    Some(at) => timer.set(Some(tokio::time::sleep_until(at))),
                    // A delay too long to represent: copies go only after failures.
                    None => return Poll::Pending,
                }
            }
            match timer.as_mut().as_pin_mut() {
                Some(timer) => timer.poll(cx).map(|()| None),
                None => Poll::Pending,
            }
        })
        .await;

        let record = |latency: &Option<Arc<KeyLatency>>| {
            if let (Some(latency), Some(started), Some(reading)) = (latency, started, &reading) {
                let now = Instant::now();
                latency.record(now, now.saturating_duration_since(started), reading);
            }
        };
        let (first_failure, started_by) = match first_outcome {
            Some(outcome) if self.policy.classifier.classify(&outcome).is_none() => {
                if outcome.is_ok() {
                    record(&latency);
                }
                return outcome;
            }
            Some(failure) => (Some(failure), "failure"),
            None => (None, "delay"),
        };
        let hedging = Hedging {
            policy: &self.policy,
            budget: self.budget.as_deref(),
            template,
            next,
            delay,
            delay_from: if quantile_delay.is_some() {
                "quantile"
            } else {
                "fixed"
            },
        };
        let first = first_failure.is_none().then_some(first);
        let ended = hedging.run(first, first_failure, started_by).await;
        // The first request's latency: when it answered, or how long it had run when a copy
        // overtook it (a lower bound, above the delay, so it stays in the tail it belongs to).
        if ended.first_counts && ended.result.is_ok() {
            record(&latency);
        }
        ended.result
    }
}

/// The state of a request once a copy is due: only requests that get this far pay for it.
struct Hedging<'a> {
    policy: &'a HedgePolicy,
    budget: Option<&'a BudgetState>,
    template: Request,
    next: Next,
    delay: Duration,
    delay_from: &'static str,
}

/// What the hedging ended with, and whether the first request's time counts as a latency: it
/// won, or it was still out when a copy won.
struct Ended {
    result: Result<Response>,
    first_counts: bool,
}

/// Whether a copy can be made now.
#[expect(
    clippy::large_enum_variant,
    reason = "made and taken apart at once, never stored"
)]
enum NextCopy {
    Ready(Request),
    /// A capped stream still being sent by an earlier attempt: perhaps at the next turn.
    NotYet,
    /// The body cannot be sent again (a stream past its cap): no copies for this request.
    Never,
}

type Attempting = Pin<Box<dyn Future<Output = Result<Response>> + Send>>;

impl Hedging<'_> {
    fn copy(&self) -> NextCopy {
        let body = self.template.body();
        if body.is_stream() && !body.is_replayable() {
            return if body.is_past_replay() {
                NextCopy::Never
            } else {
                NextCopy::NotYet
            };
        }
        match self.template.try_clone() {
            Ok(copy) => NextCopy::Ready(copy),
            Err(_) => NextCopy::Never,
        }
    }

    /// Sends copies as the policy says until an answer wins or every attempt has ended. `first`
    /// is the first request still out (none when it failed: `first_failure`).
    ///
    /// Boxed: the state of several attempts in flight is paid for only by requests that are
    /// hedged.
    fn run<'a>(
        self,
        mut first: Option<Pin<&'a mut Pending>>,
        first_failure: Option<Result<Response>>,
        started_by: &'static str,
    ) -> Pin<Box<dyn Future<Output = Ended> + Send + 'a>>
    where
        Self: 'a,
    {
        Box::pin(async move {
            let policy = self.policy;
            let mut copies: FuturesUnordered<Attempting> = FuturesUnordered::new();
            let mut sent = 1u32;
            let mut first_failure = first_failure;
            let mut stopped = false;
            let mut due = Some(started_by);
            let timer = tokio::time::sleep(self.delay);
            tokio::pin!(timer);
            loop {
                let due_now = due.take().filter(|_| !stopped && sent <= policy.max_hedges);
                if let Some(started_by) = due_now {
                    match self.copy() {
                        NextCopy::Ready(mut copy) => {
                            if self.budget.is_some_and(|budget| !budget.withdraw()) {
                                tracing::debug!(
                                    attempt = sent + 1,
                                    reason = "budget spent",
                                    "not hedging request"
                                );
                                stopped = true;
                            } else {
                                sent += 1;
                                copy.set_attempt(Attempt(sent));
                                tracing::info!(
                                    attempt = sent,
                                    started_by,
                                    delay_ms = self.delay.as_millis() as u64,
                                    delay_from = self.delay_from,
                                    "hedging request"
                                );
                                #[cfg(feature = "metrics")]
                                ::metrics::counter!("stopover.client.hedges").increment(1);
                                copies.push(Box::pin(self.next.run(copy)));
                            }
                        }
                        NextCopy::NotYet => {}
                        NextCopy::Never => {
                            tracing::debug!(
                                attempt = sent + 1,
                                reason = "body past its replay cap",
                                "not hedging request"
                            );
                            stopped = true;
                        }
                    }
                    if let Some(at) = Instant::now().checked_add(self.delay) {
                        timer.as_mut().reset(at);
                    }
                }
                if first.is_none() && copies.is_empty() {
                    break;
                }
                let can_hedge = !stopped && sent <= policy.max_hedges;
                let (outcome, from_first) = tokio::select! {
                    outcome = async { first.as_mut().map(Pin::as_mut).expect("guarded").await },
                        if first.is_some() => (outcome, true),
                    Some(outcome) = copies.next(), if !copies.is_empty() => (outcome, false),
                    () = &mut timer, if can_hedge => {
                        due = Some("delay");
                        continue;
                    }
                    else => break,
                };
                if policy.classifier.classify(&outcome).is_none() {
                    return Ended {
                        result: tag(outcome, sent),
                        first_counts: from_first || first.is_some(),
                    };
                }
                if from_first {
                    first = None;
                }
                if first_failure.is_none() {
                    first_failure = Some(outcome);
                }
                due = Some("failure");
            }
            let result = match first_failure {
                Some(outcome) => tag(outcome, sent),
                // Not reached: the first attempt was sent, and every attempt that ended without
                // winning was kept here.
                None => Err(Error::middleware(std::io::Error::other(
                    "hedging ended with no attempt",
                ))),
            };
            Ended {
                result,
                first_counts: false,
            }
        })
    }
}

/// Marks the outcome with the number of requests sent, when copies were sent.
fn tag(outcome: Result<Response>, sent: u32) -> Result<Response> {
    if sent == 1 {
        return outcome;
    }
    match outcome {
        Ok(mut response) => {
            response.extensions_mut().insert(Attempts(sent));
            Ok(response)
        }
        Err(err) => Err(err.with_attempts(sent, None)),
    }
}
