//! Where tokens come from: [`Token`], [`TokenSource`], [`source_fn`], and why a fetch failed
//! ([`TokenError`]).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, StatusCode};
use tokio::time::Instant;

use crate::client::{Client, Result};

/// A bearer token and when it stops being valid.
#[derive(Clone)]
pub struct Token {
    pub(super) value: String,
    /// `Bearer <value>`, made once: every request sends it. `None` when the value cannot be a
    /// header value.
    pub(super) bearer: Option<HeaderValue>,
    pub(super) obtained_at: Instant,
    pub(super) expires_at: Option<Instant>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The value is a credential: never in logs.
        f.debug_struct("Token")
            .field("value", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Token {
    /// A token with no known expiry, obtained now.
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        let bearer = HeaderValue::try_from(format!("Bearer {value}"))
            .ok()
            .map(|mut header| {
                header.set_sensitive(true);
                header
            });
        Token {
            value,
            bearer,
            obtained_at: Instant::now(),
            expires_at: None,
        }
    }

    /// Sets the expiry to `lifetime` from now (OAuth 2's `expires_in`). A lifetime too long
    /// to represent as an instant (a token endpoint's `expires_in` of `u64::MAX` seconds) is
    /// no expiry at all.
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_at = Instant::now().checked_add(lifetime);
        self
    }

    /// Sets the expiry to an instant.
    pub fn expires_at(mut self, at: Instant) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// The token itself.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// When the token expires, if known.
    pub fn expiry(&self) -> Option<Instant> {
        self.expires_at
    }

    /// The `Authorization: Bearer ...` value, marked sensitive so that it is not logged.
    pub fn bearer_header(&self) -> Result<HeaderValue, TokenError> {
        self.bearer.clone().ok_or(TokenError::InvalidToken)
    }

    /// When the token should be replaced: `skew` before its expiry, but never earlier than
    /// half-way through its lifetime, so that a short-lived token is not refreshed on every
    /// request.
    pub fn refresh_at(&self, skew: Duration) -> Option<Instant> {
        let expires_at = self.expires_at?;
        let lifetime = expires_at.saturating_duration_since(self.obtained_at);
        Some(
            expires_at
                .checked_sub(skew.min(lifetime / 2))
                .unwrap_or(expires_at),
        )
    }

    pub(super) fn is_expired(&self) -> bool {
        self.expires_at.is_some_and(|at| Instant::now() >= at)
    }

    pub(super) fn needs_refresh(&self, skew: Duration) -> bool {
        self.refresh_at(skew)
            .is_some_and(|refresh_at| Instant::now() >= refresh_at)
    }
}

/// Where tokens come from: an async function returning a fresh [`Token`].
///
/// Implement it for a type, or wrap a closure with [`source_fn`]. `client` is the client the
/// token is for (the one whose request needs it): send the source's own requests through it
/// with [`no_middleware`](crate::client::RequestBuilder::no_middleware), so that they share its
/// connection pool and policy without passing through the token middleware again.
pub trait TokenSource: Send + Sync + 'static {
    /// Fetches a new token. Called at most once at a time per [`TokenCache`](super::TokenCache).
    fn fetch(&self, client: &Client) -> impl Future<Output = Result<Token, TokenError>> + Send;

    /// The refresh token the next fetch will send, for a shared [`TokenStore`](super::TokenStore) to keep for the
    /// other processes. Default: none (a source without a refresh token to share).
    fn shared_refresh_token(&self) -> Option<String> {
        None
    }

    /// Adopts the refresh token a shared [`TokenStore`](super::TokenStore) holds (another process may have
    /// rotated it) before a fetch. Default: ignored.
    fn adopt_refresh_token(&self, refresh_token: &str) {
        let _ = refresh_token;
    }
}

/// A [`TokenSource`] made from an async closure; see [`source_fn`].
#[derive(Clone)]
pub struct SourceFn<F>(F);

impl<F> fmt::Debug for SourceFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SourceFn")
    }
}

/// Makes a [`TokenSource`] from an async closure.
///
/// ```
/// use stopover::client::token::{source_fn, Token};
///
/// let source = source_fn(|_client| async { Ok(Token::new("static-token")) });
/// # let _ = source;
/// ```
pub fn source_fn<F, Fut>(fetch: F) -> SourceFn<F>
where
    F: Fn(Client) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, TokenError>> + Send,
{
    SourceFn(fetch)
}

impl<F, Fut> TokenSource for SourceFn<F>
where
    F: Fn(Client) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, TokenError>> + Send,
{
    fn fetch(&self, client: &Client) -> impl Future<Output = Result<Token, TokenError>> + Send {
        (self.0)(client.clone())
    }
}

pub(super) type SharedSource = Arc<dyn StdError + Send + Sync>;
/// Called with each rotated refresh token.
pub(super) type PersistRotated = Arc<dyn Fn(&str) + Send + Sync>;

/// Why no token could be had. Cheap to clone: every caller that waited on one failed refresh
/// gets the same error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token endpoint answered with a status other than success (a 401 there means the
    /// refresh token itself was refused).
    #[error("the token endpoint answered {status}")]
    Endpoint {
        /// The status it answered.
        status: StatusCode,
    },
    /// The token endpoint could not be reached or its answer could not be read.
    #[error("the token endpoint could not be reached")]
    Transport(#[source] SharedSource),
    /// The token endpoint answered something that is not a token.
    #[error("the token endpoint answered an invalid token response: {0}")]
    InvalidResponse(String),
    /// The token has characters that cannot be sent in a header.
    #[error("the token contains characters that cannot be sent in a header")]
    InvalidToken,
    /// A custom [`TokenSource`] failed.
    #[error("the token source failed")]
    Source(#[source] SharedSource),
    /// The shared [`TokenStore`](super::TokenStore) could not be used (unreachable, too slow, or another process's
    /// refresh did not arrive in time).
    #[error("the shared token store failed")]
    Store(#[source] SharedSource),
}

impl TokenError {
    /// Wraps the error of a custom [`TokenSource`].
    pub fn source_error(err: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        TokenError::Source(Arc::from(err.into()))
    }
}
