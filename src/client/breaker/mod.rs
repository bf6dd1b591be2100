//! Circuit breaker: stop sending requests to an upstream that keeps failing, for a while, and
//! fail them at once with the time until the next probe.
//!
//! [`CircuitBreaker`] keeps one circuit per key (the origin by default). A closed circuit lets
//! calls through and counts them over a [`Window`] (the last *n* calls, or the last stretch of
//! time); once the window holds [`minimum_calls`](CircuitBreakerPolicyBuilder::minimum_calls),
//! a failure rate or a slow-call rate at or above its threshold opens it. An open circuit
//! refuses every call with [`ErrorKind::CircuitOpen`](crate::client::ErrorKind::CircuitOpen)
//! and [`Error::retry_after`](crate::client::Error::retry_after) for the open duration (plus
//! jitter); then it turns half-open and lets a bounded number of probes through: if all
//! succeed it closes, at the first that fails or is slow it opens again. A probe that ends
//! without saying anything about the upstream (the caller dropped it, or a middleware inside
//! refused it) gives its slot back.
//!
//! What is a failure is a [`Classifier`](crate::client::Classifier), the type
//! [`Retry`](crate::client::retry::Retry) uses too; the breaker's default counts connect
//! errors, timeouts, closed connections and 500, 502, 503, 504 ([`BREAKER_FAILURE_STATUSES`]),
//! but not 429: a rate limit is about the client's pace, not the upstream's health. A 4xx is a
//! success: the upstream answered.
//!
//! ```
//! use std::time::Duration;
//! use stopover::client::Client;
//! use stopover::client::breaker::{CircuitBreaker, CircuitBreakerPolicy, Window};
//! use stopover::client::retry::{Retry, RetryPolicy};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let breaker = CircuitBreakerPolicy::builder()
//!     .failure_rate(0.5)
//!     .window(Window::Time(Duration::from_secs(30)))
//!     .minimum_calls(10)
//!     .slow_call_rate(0.8)
//!     .slow_call_duration(Duration::from_secs(2))
//!     .open_duration(Duration::from_secs(5))
//!     .half_open_calls(2)
//!     .build()?;
//! let client = Client::builder()
//!     // Outside the breaker, a retry sees its refusals and never retries them.
//!     .middleware(Retry::new(RetryPolicy::default()))
//!     .middleware(CircuitBreaker::new(breaker))
//!     .build()?;
//!
//! match client.get("http://127.0.0.1:8080/").send().await {
//!     Err(err) if err.is_circuit_open() => {
//!         println!("upstream unwell, next probe in {:?}", err.retry_after());
//!     }
//!     other => println!("{:?}", other.map(|response| response.status())),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Compared with the others
//!
//! The state machine is resilience4j's (count- or time-based window, a minimum number of
//! calls, failure rate and slow-call rate, a bounded number of half-open calls), with Polly's
//! `RetryAfter` on every refusal (the time actually left, not the whole break). Unlike Polly's
//! standard handler and tower-resilience, the circuit is per origin by default (Polly needs
//! `SelectPipelineByAuthority`; tower-resilience and hpx have one breaker per service), the
//! breaker runs inside the client's middleware chain so it sees every redirect hop, and 429 is
//! not a failure by default (Polly's breaker counts it). Half-open is lazy as in Polly and
//! resilience4j's default: an open circuit turns half-open when a call asks after its time is
//! up, and a probe the caller drops gives its slot back (resilience4j's `releasePermission`,
//! done here when the request's future is dropped), so a circuit is never stuck half-open by a
//! cancelled probe. A probe that hangs holds its slot until it ends: put an attempt timeout
//! inside the breaker.

mod middleware;
mod policy;
mod state;
#[cfg(test)]
mod tests;

pub use middleware::CircuitBreaker;
pub use policy::{
    BREAKER_FAILURE_STATUSES, CircuitBreakerPolicy, CircuitBreakerPolicyBuilder,
    CircuitBreakerPolicyError, Window,
};
pub use state::CircuitState;
