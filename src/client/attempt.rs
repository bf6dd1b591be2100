//! Attempts: what a retrying middleware and the middlewares around it tell each other.
//!
//! The vocabulary is the core's, not the retry middleware's, so that a logging middleware, a
//! circuit breaker or a retry of your own speak it without naming each other: a retrying
//! middleware marks each request it sends with its [`Attempt`], and sets [`Attempts`] (and,
//! when it stopped early, [`GaveUp`]) on the response it returns, or records both in the error
//! ([`Error::with_attempts`](super::Error::with_attempts)).
//!
//! ```
//! use stopover::client::{Attempts, Next, Request, Result, Response, from_fn};
//!
//! let log_attempts = from_fn(|req: Request, next: Next| async move {
//!     let response: Response = next.run(req).await?;
//!     if let Some(Attempts(n)) = response.extensions().get::<Attempts>() {
//!         println!("answered after {n} attempt(s)");
//!     }
//!     Result::Ok(response)
//! });
//! # let _ = log_attempts;
//! ```

use std::fmt;

/// Response extension: how many attempts a retrying middleware (the built-in
/// [`Retry`](super::retry::Retry) or one of your own) made for this response (1 when the first
/// attempt was kept). A logging middleware outside it reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Attempts(pub u32);

/// The number of an attempt a retrying middleware sends, from 1: it marks each request with
/// [`Request::set_attempt`](super::Request::set_attempt), and the middlewares inside it (logging)
/// read it with [`Request::attempt`](super::Request::attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Attempt(pub u32);

/// Why a retrying middleware returned a failure it would have retried: a response extension,
/// and [`Error::gave_up`](super::Error::gave_up) for an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GaveUp {
    /// Every attempt allowed by the policy was made.
    MaxAttempts,
    /// The method is not idempotent and the request has no `Idempotency-Key`.
    NotIdempotent,
    /// The request body is a stream larger than its replay cap.
    BodyNotReplayable,
    /// The next attempt would start after the total deadline.
    Deadline,
    /// The retry budget is spent: most recent requests failed.
    Budget,
}

impl fmt::Display for GaveUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl GaveUp {
    /// The reason in a few words, as logged: `max attempts reached`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            GaveUp::MaxAttempts => "max attempts reached",
            GaveUp::NotIdempotent => "method not idempotent",
            GaveUp::BodyNotReplayable => "body not replayable",
            GaveUp::Deadline => "total deadline reached",
            GaveUp::Budget => "retry budget spent",
        }
    }
}
