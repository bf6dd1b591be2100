//! [`CircuitBreaker`]: the middleware that keeps one circuit per key and applies a
//! [`CircuitBreakerPolicy`](super::CircuitBreakerPolicy).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use crate::client::origin::origin_key;
use crate::client::{Error, Middleware, Next, Request, Response, Result};

use super::policy::CircuitBreakerPolicy;
use super::state::{Circuit, CircuitState, Ticket, Transition, Verdict};

type KeyFn = Arc<dyn Fn(&Request) -> String + Send + Sync>;

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
    key: KeyFn,
    circuits: Arc<Mutex<HashMap<String, Circuit>>>,
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
            key: Arc::new(|request: &Request| origin_key(request.url())),
            circuits: Arc::new(Mutex::new(HashMap::new())),
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
        self.key = Arc::new(key);
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
        self.lock().get(key).map(Circuit::state)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Circuit>> {
        // A panic elsewhere cannot leave a circuit half-changed (every change is one
        // assignment), so a poisoned lock is fine to use.
        self.circuits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Leave for one call; tells the circuit how the call went, or, if dropped before (the caller
/// gave up on the request), gives the probe slot back.
struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    key: Option<String>,
    ticket: Ticket,
}

impl Permit<'_> {
    fn record(mut self, verdict: Verdict) {
        self.finish(verdict);
    }

    fn finish(&mut self, verdict: Verdict) {
        let Some(key) = self.key.take() else {
            return;
        };
        let breaker = self.breaker;
        let now = Instant::now();
        let transition = breaker
            .lock()
            .get_mut(&key)
            .and_then(|circuit| circuit.record(&breaker.policy, self.ticket, verdict, now));
        if let Some(transition) = transition {
            report(&key, transition);
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.finish(Verdict::Neutral);
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
    async fn handle(&self, request: Request, next: Next) -> Result<Response> {
        let key = (self.key)(&request);
        let now = Instant::now();
        let admission = {
            let policy = &*self.policy;
            let mut circuits = self.lock();
            match circuits.get_mut(&key) {
                Some(circuit) => circuit.admit(policy, now),
                None => {
                    if circuits.len() >= policy.max_keys {
                        circuits.retain(|_, circuit| !circuit.is_closed());
                    }
                    let mut circuit = Circuit::new(policy, now);
                    let admission = circuit.admit(policy, now);
                    // The key is copied only for a key seen for the first time.
                    circuits.insert(key.clone(), circuit);
                    admission
                }
            }
        };
        let (admission, transition) = admission;
        if let Some(transition) = transition {
            report(&key, transition);
        }
        let ticket = match admission {
            Ok(ticket) => ticket,
            Err(retry_after) => {
                tracing::debug!(key, "circuit refused the request");
                #[cfg(feature = "metrics")]
                ::metrics::counter!("stopover.client.circuit_breaker.rejections").increment(1);
                let mut err = Error::circuit_open(retry_after).with_url(request.url().clone());
                if retry_after.is_none() {
                    err = err.with_message("every half-open probe is in flight");
                }
                return Err(err);
            }
        };
        let permit = Permit {
            breaker: self,
            key: Some(key),
            ticket,
        };
        let started = Instant::now();
        let outcome = next.run(request).await;
        let slow = started.elapsed() >= self.policy.slow_call_duration;
        let verdict = match (&outcome, self.policy.classifier.classify(&outcome)) {
            (_, Some(_)) => Verdict::Failure { slow },
            (Ok(_), None) => Verdict::Success { slow },
            // An error that is no failure (a refusal, a middleware's own error) never reached
            // the upstream, or says nothing about it.
            (Err(_), None) => Verdict::Neutral,
        };
        permit.record(verdict);
        outcome
    }
}
