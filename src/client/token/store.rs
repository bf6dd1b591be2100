//! Where a [`TokenCache`](super::TokenCache)'s token comes from when it needs a new one: the
//! cache's own source (the default, in process), or a store shared by several processes that
//! elects one of them to refresh.
//!
//! A store is asked only when the cache's own copy is missing, due for renewal or refused by a
//! server: a fresh token is served from the cache's memory, with no store call on the request
//! path. The cache also keeps its single flight in front of the store, so one process asks its
//! store once per token value however many of its requests need the token.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::{Token, TokenError};

/// A boxed future, as [`TokenStore::obtain`] returns it (the trait is used as `dyn`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Shared token state: where the current token and the refresh token live, and how one
/// refresher is elected among the processes sharing them.
///
/// Set one with [`TokenCache::with_store`](super::TokenCache::with_store). Without one the cache
/// is in process: it asks its [`TokenSource`](super::TokenSource) directly, as fast as a mutex.
/// With the `redis` feature, [`RedisTokenStore`](redis/struct.RedisTokenStore.html) shares the
/// token across a fleet.
///
/// An implementation answers [`obtain`](TokenStore::obtain) with a token that
/// [`Refresh::accepts`] (someone else's fresh one, if the store has it), or runs
/// [`Refresh::fetch`] itself and stores what it returns, refresh token included.
pub trait TokenStore: Send + Sync + 'static {
    /// A token for `refresh`: one the store already holds that `refresh` accepts, or one it
    /// fetched with `refresh` and made available to the other processes.
    fn obtain<'a>(&'a self, refresh: Refresh<'a>) -> BoxFuture<'a, Result<Token, TokenError>>;
}

/// What the cache needs from [`TokenStore::obtain`], and the means to fetch it.
pub struct Refresh<'a> {
    pub(super) need: Need<'a>,
    pub(super) fetcher: &'a (dyn Fetch + 'a),
}

impl std::fmt::Debug for Refresh<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refresh")
            .field("need", &self.need)
            .finish_non_exhaustive()
    }
}

/// Why the cache asks.
#[derive(Debug, Clone, Copy)]
pub(super) enum Need<'a> {
    /// It has no token, or its token is within `skew` of its expiry.
    Fresh { skew: Duration },
    /// A server refused `rejected`.
    Replace { rejected: &'a Token, skew: Duration },
}

impl Refresh<'_> {
    /// Whether `token` answers the cache's need: fresh (not within the skew of its expiry), and
    /// not the token a server just refused.
    pub fn accepts(&self, token: &Token) -> bool {
        match self.need {
            Need::Fresh { skew } => !token.needs_refresh(skew),
            Need::Replace { rejected, skew } => {
                token.value() != rejected.value() && !token.needs_refresh(skew)
            }
        }
    }

    /// Fetches a new token from the cache's source. `refresh_token`, when given, is adopted by
    /// the source first (the fleet's current refresh token, which may have been rotated by
    /// another process); the answer carries the refresh token the source will send next, to
    /// be stored for the fleet.
    pub async fn fetch(&self, refresh_token: Option<String>) -> Result<Fetched, TokenError> {
        self.fetcher.fetch(refresh_token).await
    }
}

/// A token just fetched, with the refresh token to keep next to it.
#[non_exhaustive]
pub struct Fetched {
    /// The new access token.
    pub token: Token,
    /// The refresh token the source will send next (rotated or not), if it uses one.
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Both are credentials: never in logs.
        f.debug_struct("Fetched")
            .field("token", &self.token)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Runs the cache's source; implemented in the parent module over a source and a client.
pub(super) trait Fetch: Send + Sync {
    fn fetch(&self, refresh_token: Option<String>) -> BoxFuture<'_, Result<Fetched, TokenError>>;
}
