//! Hedging: when an idempotent request is slow to answer, send a second copy and take the first
//! good answer.
//!
//! [`Hedge`] sends the request; if no answer has come after the
//! [`delay`](HedgePolicyBuilder::delay), it sends a copy (up to
//! [`max_hedges`](HedgePolicyBuilder::max_hedges) copies, one per delay), and a copy goes at
//! once when an attempt ends in a failure. The first answer that is not a failure (by the
//! [`Classifier`](crate::client::Classifier), the type retry and the circuit breaker use)
//! wins; the attempts still in flight are cancelled, their connections closed. When every
//! attempt fails, the first failure is returned. Each attempt is its own request on the wire,
//! marked with its [`Attempt`](crate::client::Attempt) number, so its span carries
//! `http.request.resend_count`, and the winner tells how many were sent
//! ([`Attempts`](crate::client::Attempts), when copies were sent).
//!
//! ```
//! use std::time::Duration;
//! use stopover::client::Client;
//! use stopover::client::hedge::{Hedge, HedgePolicy};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // A copy once a request is slower than 95 % of the origin's recent answers (50 ms until
//! // enough were seen), two copies at most.
//! let policy = HedgePolicy::builder()
//!     .delay_quantile(0.95)
//!     .delay(Duration::from_millis(50))
//!     .max_hedges(2)
//!     .build()?;
//! let client = Client::builder().middleware(Hedge::new(policy)).build()?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! The delay is fixed, or read from a quantile of the latencies seen per origin
//! ([`delay_quantile`](HedgePolicyBuilder::delay_quantile); the fixed delay until enough answers
//! were seen). Copies are taken from a [`Budget`], the kind [`Retry`](super::retry::Retry)
//! spends, so an upstream that slows down as a whole is not sent twice its load.
//!
//! Only requests that may be sent twice are hedged: idempotent methods, or a request carrying
//! an `Idempotency-Key`. A streaming body is copied only within its replay cap
//! ([`Body::wrap_stream_replayable`](crate::client::Body::wrap_stream_replayable)): a copy goes
//! once the first request has sent the whole stream within the cap; a stream past its cap, or
//! one with no cap, is sent once and never copied, never sent empty.
//!
//! # Compared with the others
//!
//! Like Polly's hedging strategy (latency mode), a failure starts the next attempt at once and
//! the first acceptable answer wins, where tower's `Hedge` takes the first completion even if it
//! is an error. Unlike Polly's standard hedging handler, a request that cannot be replayed is
//! not an error: it is simply not hedged, and neither is a POST without an `Idempotency-Key`
//! (.NET and hedgedhttp leave that to the user). The quantile delay is tower's idea (a latency
//! record rotated per window, read from the window before), with a budget as gRPC throttles
//! hedges. Put the hedge outside a circuit breaker so that every copy is counted.

mod latency;
mod middleware;
mod policy;
#[cfg(test)]
mod tests;

pub use crate::client::budget::Budget;
pub use middleware::Hedge;
pub use policy::{HedgePolicy, HedgePolicyBuilder, HedgePolicyError};
