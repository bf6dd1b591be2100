//! Retry: resend a request that failed in a way worth retrying, a bounded number of times.
//!
//! Unlike a loop around `send()` (or the aiohttp cookbook's `for _ in range(3)`), [`Retry`] only
//! replays methods that are safe to replay, honours `Retry-After` in both of its forms, backs off
//! with full jitter, stops at a total deadline, and shares a retry budget across every request
//! that goes through it, so a failing upstream sees a bounded amount of extra load instead of a
//! retry storm. A response it throws away is read away or dropped, never left holding its
//! connection; a streaming body is replayed only within its replay cap, and otherwise the first
//! answer comes back marked with why it was not retried ([`GaveUp`]; for an error,
//! [`Error::gave_up`](super::Error::gave_up), also in its message). Every response says how
//! many attempts it took ([`Attempts`]; for an error, [`Error::attempts`](super::Error::attempts))
//! and every retry is a tracing event.
//!
//! What is retried: connect errors (for any method: the request never left), timeouts,
//! connections closed before a response, and the statuses of the policy, for idempotent
//! methods or requests carrying an `Idempotency-Key`.
//!
//! ```
//! use std::time::Duration;
//! use http::StatusCode;
//! use stopover::client::Client;
//! use stopover::client::retry::{Attempts, Budget, Retry, RetryPolicy};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = RetryPolicy::builder()
//!     .max_attempts(4)
//!     .statuses([StatusCode::TOO_MANY_REQUESTS, StatusCode::SERVICE_UNAVAILABLE])
//!     .backoff(Duration::from_millis(50), Duration::from_secs(2))
//!     .retry_after_cap(Duration::from_secs(30))
//!     .total_deadline(Duration::from_secs(60))
//!     .budget(Budget::default().ratio(0.1))
//!     .build()?;
//! let client = Client::builder().middleware(Retry::new(policy)).build()?;
//!
//! let response = client.get("http://127.0.0.1:8080/flaky").send().await?;
//! if let Some(Attempts(attempts)) = response.extensions().get::<Attempts>() {
//!     println!("{} after {attempts} attempt(s)", response.status());
//! }
//! # Ok(())
//! # }
//! ```

mod error;
mod middleware;
mod policy;
#[cfg(test)]
mod tests;

pub use crate::client::attempt::{Attempt, Attempts, GaveUp};
pub use crate::client::budget::Budget;
pub use crate::client::classify::{IDEMPOTENCY_KEY, parse_retry_after};
pub use error::RetryPolicyError;
pub use middleware::Retry;
pub use policy::{Delay, RetryPolicy, RetryPolicyBuilder};
