//! Rate limit: at most so many requests per key in this process, and a whole key paused when
//! the upstream answers 429 or 503 with `Retry-After`.
//!
//! [`RateLimit`] keeps one GCRA cell per key (the origin by default): `n` requests per period
//! at a steady pace, with a burst of up to [`burst`](RateLimitPolicyBuilder::burst) after a
//! quiet stretch, so that in any stretch of time `t` at most `burst + t / interval` requests
//! go. A request over the rate waits for its turn up to
//! [`max_wait`](RateLimitPolicyBuilder::max_wait), or fails at once with
//! [`ErrorKind::RateLimited`](crate::client::ErrorKind::RateLimited) and
//! [`Error::retry_after`](crate::client::Error::retry_after) (the caller chooses by setting the
//! bound; zero, the default, never waits). When a response is a 429 or 503 with a
//! `Retry-After`, the key is paused until then for every request, not just for the one that
//! got it: the others wait (within the bound) or fail fast instead of hammering an upstream
//! that asked for quiet.
//!
//! ```
//! use std::time::Duration;
//! use stopover::client::Client;
//! use stopover::client::limit::{RateLimit, RateLimitPolicy};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // 10 requests a second per origin, 5 at once at most, waiting up to 2 s for a turn.
//! let policy = RateLimitPolicy::builder(10, Duration::from_secs(1))
//!     .burst(5)
//!     .max_wait(Duration::from_secs(2))
//!     .build()?;
//! let client = Client::builder().middleware(RateLimit::new(policy)).build()?;
//!
//! match client.get("http://127.0.0.1:8080/").send().await {
//!     Err(err) if err.is_rate_limited() => println!("try again in {:?}", err.retry_after()),
//!     other => println!("{:?}", other.map(|response| response.status())),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Compared with the others
//!
//! The algorithm is governor's GCRA (one timestamp per key, `burst` requests at once; same
//! meaning of `n per period` with a burst of `n` by default), kept on tokio's clock so that the
//! paused test clock drives it (governor's waits use their own timer thread). Unlike tower's
//! `RateLimit` (a fixed window per service instance, up to twice the rate across a window
//! boundary) and tower-resilience's limiters, it is per key and runs inside the client's chain,
//! so it sees every redirect hop; unlike resilience4j's limiter and Polly's, it reads the
//! upstream's `Retry-After` and pauses the whole key, so that no request keeps hammering an API
//! that answered 429. It limits one process; `RedisRateLimit` (in `limit::redis`, feature
//! `redis`) shares the same limit and the same pause between every replica of a fleet.

mod gcra;
mod middleware;
mod policy;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(test)]
mod tests;

pub use middleware::RateLimit;
pub use policy::{RateLimitPolicy, RateLimitPolicyBuilder, RateLimitPolicyError};
#[cfg(feature = "redis")]
pub use redis::{RedisRateLimit, Unreachable};
