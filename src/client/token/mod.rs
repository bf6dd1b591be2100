//! Token refresh: a bearer token fetched from a [`TokenSource`], cached, sent to the origins it
//! is meant for, and renewed at most once per token value however many requests need it at the
//! same time.
//!
//! The aiohttp cookbook's recipes hold an `asyncio.Lock` while they refresh through the same
//! session, so the refresh request re-enters the middleware and waits on the lock its own caller
//! holds: a deadlock. Here the lock guards only the call to the source, the built-in source
//! sends its request without middleware, and a refresh that re-enters the cache anyway (a custom
//! source sending through the full chain) is detected and never waits on itself. Concurrent
//! callers share one refresh and its outcome, including its error; a 401 after the refresh is
//! returned as that 401, never as the refresh endpoint's answer.
//!
//! - [`TokenAuth`]: the middleware (on a 401, refresh once and replay once; before sending,
//!   refresh a token within the skew of its expiry).
//! - [`TokenCache`]: the single-flight cache it is built on, shareable.
//! - [`RefreshTokenSource`]: an OAuth 2 refresh-token grant, with rotated refresh tokens kept and
//!   handed to a callback to persist.
//! - [`BackgroundRefresh`]: renews ahead of expiry from a task that stops when dropped.
//! - [`TokenStore`]: where the token lives when several processes share it (default: in
//!   process); with the `redis` feature, [`redis::RedisTokenStore`](redis/struct.RedisTokenStore.html) gives a fleet one token and
//!   one refresh per expiry.
//!
//! ```
//! use std::sync::Arc;
//! use stopover::client::{Client, Origin};
//! use stopover::client::token::{BackgroundRefresh, RefreshTokenSource, TokenAuth};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let source = RefreshTokenSource::new("https://auth.example/oauth/token", "refresh-123")?
//!     .client_id("my-app")
//!     .on_rotate(|rotated| println!("persist the new refresh token {} bytes long", rotated.len()));
//! let auth = TokenAuth::new(source).origins([Origin::parse("https://api.example")?]);
//! let client = Client::builder().middleware(auth.clone()).build()?;
//! // Optional: renew ahead of expiry instead of on the request that finds it expiring.
//! let _refresher = BackgroundRefresh::spawn(auth.cache(), client.clone());
//!
//! let me = client.get("https://api.example/me").send().await?;
//! # let _ = me;
//! # Ok(())
//! # }
//! ```

mod auth;
mod background;
mod cache;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
mod refresh;
mod source;
mod store;
#[cfg(test)]
mod tests;

pub use auth::{TokenAuth, TokenConfigError};
pub use background::BackgroundRefresh;
pub use cache::TokenCache;
pub use refresh::RefreshTokenSource;
pub use source::{SourceFn, Token, TokenError, TokenSource, source_fn};
pub use store::{BoxFuture, Fetched, Refresh, TokenStore};
