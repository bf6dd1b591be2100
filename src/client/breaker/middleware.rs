//! [`CircuitBreaker`]: the middleware that keeps one circuit per key and applies a
//! [`CircuitBreakerPolicy`](super::CircuitBreakerPolicy).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

use tokio::time::Instant;

use crate::client::origin::{KeyOf, Keyed};
use crate::client::{Error, Middleware, Next, Pending, Request, Response, Result};

use super::policy::CircuitBreakerPolicy;
use super::state::{Circuit, CircuitState, Ticket, Transition, Verdict};

/// One key's circuit, shared by the map and the calls in flight, so that a call tells its
/// circuit how it went without looking the key up again.
struct Entry {
    key: Arc<str>,
    circuit: Mutex<Circuit>,
}

impl Entry {
    fn lock(&self) -> MutexGuard<'_, Circuit> {
        // A panic elsewhere cannot leave a circuit half-changed (every change is one
        // assignment), so a poisoned lock is fine to use.
        self.circuit
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

type Circuits = Keyed<Entry>;

/// The circuit breaker middleware: one circuit per key (the request's origin unless
/// [`key`](CircuitBreaker::key) says otherwise), each opened by failures and slow calls and
/// closed again by probes, as its [`CircuitBreakerPolicy`] says.
///
/// Cheap to clone; clones share their circuits. A refused request fails at once with
/// [`ErrorKind::CircuitOpen`](crate::client::ErrorKind::CircuitOpen) and
/// [`Error::retry_after`] set to the time until the next probe may go; it is never sent.
/// Every change of state is a tracing event (`circuit opened`, `circuit half-open`,
/// `circuit closed`) and, with the `metrics` feature, a count in
/// `stopover.client.circuit_breaker.transitions` (label `state`); refusals are counted in
/// `stopover.client.circuit_breaker.rejections`.
#[derive(Clone)]
pub struct CircuitBreaker {
    policy: Arc<CircuitBreakerPolicy>,
    key: KeyOf,
    circuits: Arc<Mutex<Circuits>>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("policy", &self.policy)
            .field("circuits", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        CircuitBreaker::new(CircuitBreakerPolicy::default())
    }
}

impl CircuitBreaker {
    /// A breaker applying `policy`, with one circuit per origin (scheme, host and port).
    pub fn new(policy: CircuitBreakerPolicy) -> Self {
        CircuitBreaker {
            policy: Arc::new(policy),
            key: KeyOf::Origin,
            circuits: Arc::new(Mutex::new(Keyed::new())),
        }
    }

    /// What the circuits are kept per: a function of the request returning its key. Default:
    /// the origin, written `scheme://host:port`. A key per host name serves several ports with
    /// one circuit; a key per tenant or per endpoint path splits them further.
    ///
    /// ```
    /// use stopover::client::breaker::CircuitBreaker;
    ///
    /// let per_host = CircuitBreaker::default()
    ///     .key(|request| request.url().host_str().unwrap_or_default().to_owned());
    /// # let _ = per_host;
    /// ```
    pub fn key(mut self, key: impl Fn(&Request) -> String + Send + Sync + 'static) -> Self {
        self.key = KeyOf::custom(key);
        self
    }

    /// The policy applied.
    pub fn policy(&self) -> &CircuitBreakerPolicy {
        &self.policy
    }

    /// The state of the circuit for `key` (as the key function writes it), or `None` when no
    /// request with that key was seen (or its closed circuit was forgotten). An open circuit
    /// whose time is up still reads as open until a request asks to go.
    pub fn state(&self, key: &str) -> Option<CircuitState> {
        self.lock().get(key).map(|entry| entry.lock().state())
    }

    fn lock(&self) -> MutexGuard<'_, Circuits> {
        // The map only gains and loses whole entries: a poisoned lock holds nothing half-done.
        self.circuits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The circuit of `request`'s key, made on its first request; the key is copied only
    /// then.
    fn entry(&self, request: &Request) -> Arc<Entry> {
        let policy = &*self.policy;
        self.lock().entry(
            &self.key,
            request,
            policy.max_keys,
            // A closed circuit with no call in flight is as good as a new one.
            |entry| Arc::strong_count(entry) == 1 && entry.lock().is_closed(),
            |key| Entry {
                key: Arc::clone(key),
                circuit: Mutex::new(Circuit::new(policy, Instant::now())),
            },
        )
    }
}

/// Leave for one call; tells the circuit how the call went, or, if dropped before (the caller
/// gave up on the request), gives the probe slot back.
struct Permit<'a> {
    policy: &'a CircuitBreakerPolicy,
    entry: Option<Arc<Entry>>,
    ticket: Ticket,
    /// From when the call counts as slow (`None`: never, the duration being past the clock's
    /// range).
    slow_from: Option<Instant>,
}

impl Permit<'_> {
    /// Tells the circuit how the call went.
    fn finish_call(mut self, outcome: &Result<Response>) {
        let ended = Instant::now();
        let slow = self.slow_from.is_some_and(|slow_from| ended >= slow_from);
        let verdict = match (outcome, self.policy.classifier.classify(outcome)) {
            (_, Some(_)) => Verdict::Failure { slow },
            (Ok(_), None) => Verdict::Success { slow },
            // An error that is no failure (a refusal, a middleware's own error) never reached
            // the upstream, or says nothing about it.
            (Err(_), None) => Verdict::Neutral,
        };
        self.finish(verdict, ended);
    }

    fn finish(&mut self, verdict: Verdict, now: Instant) {
        let Some(entry) = self.entry.take() else {
            return;
        };
        let transition = entry.lock().record(self.policy, self.ticket, verdict, now);
        if let Some(transition) = transition {
            report(&entry.key, transition);
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.entry.is_some() {
            self.finish(Verdict::Neutral, Instant::now());
        }
    }
}

fn report(key: &str, transition: Transition) {
    let state = match transition {
        Transition::Opened {
            open_for,
            failure_rate,
            slow_call_rate,
        } => {
            tracing::warn!(
                key,
                failure_rate,
                slow_call_rate,
                open_ms = open_for.as_millis() as u64,
                "circuit opened"
            );
            CircuitState::Open
        }
        Transition::HalfOpened => {
            tracing::info!(key, "circuit half-open");
            CircuitState::HalfOpen
        }
        Transition::Closed => {
            tracing::info!(key, "circuit closed");
            CircuitState::Closed
        }
    };
    #[cfg(feature = "metrics")]
    ::metrics::counter!("stopover.client.circuit_breaker.transitions", "state" => state.as_str())
        .increment(1);
    let _ = state;
}

impl Middleware for CircuitBreaker {
    fn handle(
        &self,
        request: Request,
        next: Next,
    ) -> impl Future<Output = Result<Response>> + Send {
        // Admission and the hand-over to the rest of the chain happen here, so that the
        // future holds neither the request nor the chain: it stays small, which keeps the
        // chain's box of it cheap.
        match self.admit(&request) {
            Ok(permit) => Call::Running {
                pending: next.run(request),
                permit: Some(permit),
            },
            Err(err) => Call::Refused { err: Some(err) },
        }
    }
}

pin_project! {
    /// A call through the breaker: the rest of the chain's answer, told to the circuit.
    #[project = CallProj]
    enum Call<'a> {
        Running { #[pin] pending: Pending, permit: Option<Permit<'a>> },
        Refused { err: Option<Error> },
    }
}

impl Future for Call<'_> {
    type Output = Result<Response>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            CallProj::Running { pending, permit } => {
                let outcome = std::task::ready!(pending.poll(cx));
                if let Some(permit) = permit.take() {
                    permit.finish_call(&outcome);
                }
                Poll::Ready(outcome)
            }
            CallProj::Refused { err } => {
                Poll::Ready(Err(err.take().unwrap_or_else(|| Error::circuit_open(None))))
            }
        }
    }
}

impl CircuitBreaker {
    /// Lets a request through its circuit, or refuses it.
    fn admit(&self, request: &Request) -> Result<Permit<'_>> {
        let entry = self.entry(request);
        let now = Instant::now();
        let (admission, transition) = entry.lock().admit(&self.policy, now);
        if let Some(transition) = transition {
            report(&entry.key, transition);
        }
        match admission {
            Ok(ticket) => Ok(Permit {
                policy: &self.policy,
                entry: Some(entry),
                ticket,
                slow_from: now.checked_add(self.policy.slow_call_duration),
            }),
            Err(retry_after) => {
                tracing::debug!(key = &*entry.key, "circuit refused the request");
                #[cfg(feature = "metrics")]
                ::metrics::counter!("stopover.client.circuit_breaker.rejections").increment(1);
                let mut err = Error::circuit_open(retry_after).with_url(request.url().clone());
                if retry_after.is_none() {
                    err = err.with_message("every half-open probe is in flight");
                }
                Err(err)
            }
        }
    }
}
