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
//!   process); with the `redis` feature, [`redis::RedisTokenStore`] gives a fleet one token and
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

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{HeaderValue, StatusCode};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use url::Url;

use super::origin::crosses_origin;
use super::{Client, Error, Middleware, Next, Origin, Request, Response, Result};

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
mod store;

pub use store::{BoxFuture, Fetched, Refresh, TokenStore};
use store::{Fetch, Need};

/// A bearer token and when it stops being valid.
#[derive(Clone)]
pub struct Token {
    value: String,
    /// `Bearer <value>`, made once: every request sends it. `None` when the value cannot be a
    /// header value.
    bearer: Option<HeaderValue>,
    obtained_at: Instant,
    expires_at: Option<Instant>,
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

    fn is_expired(&self) -> bool {
        self.expires_at.is_some_and(|at| Instant::now() >= at)
    }

    fn needs_refresh(&self, skew: Duration) -> bool {
        self.refresh_at(skew)
            .is_some_and(|refresh_at| Instant::now() >= refresh_at)
    }
}

/// Where tokens come from: an async function returning a fresh [`Token`].
///
/// Implement it for a type, or wrap a closure with [`source_fn`]. `client` is the client the
/// token is for (the one whose request needs it): send the source's own requests through it
/// with [`no_middleware`](super::RequestBuilder::no_middleware), so that they share its
/// connection pool and policy without passing through the token middleware again.
pub trait TokenSource: Send + Sync + 'static {
    /// Fetches a new token. Called at most once at a time per [`TokenCache`].
    fn fetch(&self, client: &Client) -> impl Future<Output = Result<Token, TokenError>> + Send;

    /// The refresh token the next fetch will send, for a shared [`TokenStore`] to keep for the
    /// other processes. Default: none (a source without a refresh token to share).
    fn shared_refresh_token(&self) -> Option<String> {
        None
    }

    /// Adopts the refresh token a shared [`TokenStore`] holds (another process may have
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

type SharedSource = Arc<dyn StdError + Send + Sync>;
/// Called with each rotated refresh token.
type PersistRotated = Arc<dyn Fn(&str) + Send + Sync>;

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
    /// The shared [`TokenStore`] could not be used (unreachable, too slow, or another process's
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

tokio::task_local! {
    /// Set while this task runs a token source: a request made by the source itself must not
    /// wait for the refresh it is part of.
    static REFRESHING: ();
}

/// Whether the current task is running a token source right now (its own requests pass
/// through the token middleware untouched).
pub(crate) fn in_refresh() -> bool {
    REFRESHING.try_with(|_| ()).is_ok()
}

/// A single-flight token cache over a [`TokenSource`].
///
/// - [`token`](TokenCache::token) returns the current token, fetching one first if there is
///   none or it is within the skew of its expiry.
/// - [`refresh_rejected`](TokenCache::refresh_rejected) replaces a token a server refused,
///   unless it has been replaced already.
///
/// Either way, callers that arrive while a fetch is running wait for it and share its outcome:
/// one fetch per token value, whatever the concurrency. The fetch is the only thing run under
/// the cache's lock.
///
/// ```
/// use std::time::Duration;
/// use stopover::client::Client;
/// use stopover::client::token::{source_fn, Token, TokenCache};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), stopover::client::token::TokenError> {
/// let cache = TokenCache::new(source_fn(|_client| async {
///     Ok(Token::new("fresh").expires_in(Duration::from_secs(3600)))
/// }))
/// .skew(Duration::from_secs(60));
/// let client = Client::new();
/// let token = cache.token(&client).await?;
/// assert_eq!(token.value(), "fresh");
/// // The server refused it: one refresh, shared by everyone who saw the same refusal.
/// let next = cache.refresh_rejected(&token, &client).await?;
/// assert_eq!(next.value(), "fresh");
/// # Ok(())
/// # }
/// ```
pub struct TokenCache<S> {
    source: S,
    skew: Duration,
    state: Mutex<State>,
    refresh: tokio::sync::Mutex<()>,
    /// `None`: in process, the source is asked directly.
    store: Option<Box<dyn TokenStore>>,
}

#[derive(Default)]
struct State {
    current: Option<Arc<Token>>,
    /// Bumped by every fetch, failed or not, so that waiters can tell a fetch happened.
    fetches: u64,
    last_error: Option<TokenError>,
}

impl<S> fmt::Debug for TokenCache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("skew", &self.skew)
            .finish_non_exhaustive()
    }
}

impl<S: TokenSource> TokenCache<S> {
    /// A cache with no token yet and a skew of 30 s.
    pub fn new(source: S) -> Self {
        TokenCache {
            source,
            skew: Duration::from_secs(30),
            state: Mutex::new(State::default()),
            refresh: tokio::sync::Mutex::new(()),
            store: None,
        }
    }

    /// Shares the token through `store` (say, a [`redis::RedisTokenStore`]) instead of keeping
    /// it in this process alone. Default: in process.
    ///
    /// The store is asked only when this cache's copy is missing, due for renewal or refused:
    /// a fresh token costs no store call.
    pub fn with_store(mut self, store: impl TokenStore) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// How long before its expiry a token is replaced. Default 30 s; a token is never
    /// replaced before half of its lifetime has passed, whatever the skew.
    pub fn skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// Starts with a token already known (say, from a previous run), instead of fetching one
    /// on first use.
    pub fn with_token(self, token: Token) -> Self {
        self.lock_state().current = Some(Arc::new(token));
        self
    }

    /// The token source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The current token, without fetching.
    pub fn current(&self) -> Option<Arc<Token>> {
        self.lock_state().current.clone()
    }

    /// A token fit to send: the current one, or a new one if there is none or it is within the
    /// skew of its expiry.
    pub async fn token(&self, client: &Client) -> Result<Arc<Token>, TokenError> {
        let (current, fetches) = self.snapshot();
        match current {
            Some(token) if !token.needs_refresh(self.skew) => Ok(token),
            _ => {
                let need = Need::Fresh { skew: self.skew };
                self.fetch_once(fetches, need, client).await
            }
        }
    }

    /// Replaces `rejected`, a token a server refused, and returns its successor.
    ///
    /// If `rejected` is no longer the current token, another caller has replaced it already and
    /// the current one is returned without a fetch: a token value is refreshed at most once.
    pub async fn refresh_rejected(
        &self,
        rejected: &Arc<Token>,
        client: &Client,
    ) -> Result<Arc<Token>, TokenError> {
        let (current, fetches) = self.snapshot();
        match current {
            Some(token) if !Arc::ptr_eq(&token, rejected) => Ok(token),
            _ => {
                let skew = self.skew;
                let need = Need::Replace { rejected, skew };
                self.fetch_once(fetches, need, client).await
            }
        }
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is replaced whole under the lock; a panic cannot leave it half-written.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn snapshot(&self) -> (Option<Arc<Token>>, u64) {
        let state = self.lock_state();
        (state.current.clone(), state.fetches)
    }

    /// Fetches a token, unless a fetch completed since the caller looked (`seen` fetches), in
    /// which case its outcome is shared.
    async fn fetch_once(
        &self,
        seen: u64,
        need: Need<'_>,
        client: &Client,
    ) -> Result<Arc<Token>, TokenError> {
        if in_refresh() {
            // The source itself is asking (through a middleware it should not have used):
            // waiting for the lock would wait for ourselves.
            return self.current().ok_or_else(|| {
                TokenError::source_error("the token source re-entered its own token cache")
            });
        }
        let _flight = self.refresh.lock().await;
        {
            let state = self.lock_state();
            if state.fetches != seen {
                match (&state.last_error, &state.current) {
                    (Some(err), _) => return Err(err.clone()),
                    (None, Some(token)) => return Ok(token.clone()),
                    (None, None) => {}
                }
            }
        }
        let fetched = match &self.store {
            None => REFRESHING.scope((), self.source.fetch(client)).await,
            Some(store) => {
                let fetcher = SourceFetch {
                    source: &self.source,
                    client,
                };
                let fetcher: &dyn Fetch = &fetcher;
                store.obtain(Refresh { need, fetcher }).await
            }
        }
        // A token that cannot be sent is a failed fetch: cached, it would fail every
        // request until it expired (or forever, without an expiry).
        .and_then(|token| token.bearer_header().map(|_| token));
        #[cfg(feature = "metrics")]
        {
            let outcome = if fetched.is_ok() { "ok" } else { "error" };
            ::metrics::counter!("stopover.client.token.refreshes", "outcome" => outcome)
                .increment(1);
        }
        let mut state = self.lock_state();
        state.fetches += 1;
        match fetched {
            Ok(token) => {
                let token = Arc::new(token);
                state.current = Some(token.clone());
                state.last_error = None;
                Ok(token)
            }
            Err(err) => {
                state.last_error = Some(err.clone());
                Err(err)
            }
        }
    }
}

/// A cache's source and client, as a [`TokenStore`] runs them.
struct SourceFetch<'a, S> {
    source: &'a S,
    client: &'a Client,
}

impl<S: TokenSource> Fetch for SourceFetch<'_, S> {
    fn fetch(&self, refresh_token: Option<String>) -> BoxFuture<'_, Result<Fetched, TokenError>> {
        Box::pin(async move {
            if let Some(refresh_token) = refresh_token.filter(|token| !token.is_empty()) {
                self.source.adopt_refresh_token(&refresh_token);
            }
            let token = REFRESHING.scope((), self.source.fetch(self.client)).await?;
            token.bearer_header()?;
            Ok(Fetched {
                token,
                refresh_token: self.source.shared_refresh_token(),
            })
        })
    }
}

/// The token middleware: sends `Authorization: Bearer <token>` to the origins the token is
/// meant for, refreshes it before it expires, and on a 401 refreshes once and replays once.
///
/// Safe on the whole client: the built-in [`RefreshTokenSource`] refreshes without middleware,
/// and a source that does send through the chain is detected and passed through.
///
/// - A 401 replaces the token it answered (unless another request already did) and the request
///   is replayed once with the new one; whatever the replay answers, 401 included, is the
///   caller's answer. A request whose streaming body cannot be replayed gets its 401 back.
/// - A refresh that fails is an [`ErrorKind::Middleware`](super::ErrorKind::Middleware) error
///   whose source is the [`TokenError`], except a refresh ahead of expiry (within the skew):
///   while the current token has not expired it is still sent, and the failure is a WARN
///   event.
/// - **Scope:** the token goes only to the origins named with
///   [`origins`](TokenAuth::origins), or, without them, to the origin of the client's
///   [`base_url`](super::ClientBuilder::base_url). A client with neither fails to build with an
///   [`ErrorKind::Builder`](super::ErrorKind::Builder) error whose source is
///   [`TokenConfigError::NoScope`]; a request whose own middleware list holds the middleware
///   fails the same way when sent, before anything goes on the wire. A request to any other
///   origin, on the same client, is sent without the token: a client that calls one API and
///   also delivers webhooks to URLs its users chose never hands the API's token to them.
/// - The token never follows a redirect to another origin, nor any later hop of a request once
///   one of its hops left the origin (A to B and back to A: B chose the URL). Where it goes, it
///   replaces any `Authorization` the request carried.
///
/// ```
/// use stopover::client::Client;
/// use stopover::client::token::{source_fn, Token, TokenAuth};
///
/// # fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let source = source_fn(|_client| async { Ok(Token::new("api-token")) });
/// // The scope is the base URL's origin, https://api.example.
/// let client = Client::builder()
///     .base_url("https://api.example/v1/")
///     .middleware(TokenAuth::new(source))
///     .build()?;
/// # let _ = client;
///
/// // No base URL and no origins: nowhere the token may go, so the client is not built.
/// let source = source_fn(|_client| async { Ok(Token::new("api-token")) });
/// let err = Client::builder().middleware(TokenAuth::new(source)).build().unwrap_err();
/// assert!(err.is_builder());
/// # Ok(())
/// # }
/// ```
pub struct TokenAuth<S> {
    cache: Arc<TokenCache<S>>,
    origins: Option<Arc<[Origin]>>,
}

impl<S> Clone for TokenAuth<S> {
    fn clone(&self) -> Self {
        TokenAuth {
            cache: self.cache.clone(),
            origins: self.origins.clone(),
        }
    }
}

impl<S> fmt::Debug for TokenAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuth")
            .field("cache", &self.cache)
            .field("origins", &self.origins)
            .finish()
    }
}

impl<S: TokenSource> TokenAuth<S> {
    /// A middleware with its own [`TokenCache`] over `source` (skew 30 s).
    pub fn new(source: S) -> Self {
        TokenAuth::from_cache(Arc::new(TokenCache::new(source)))
    }

    /// A middleware over a cache that may be shared (with a [`BackgroundRefresh`], or with
    /// another client).
    pub fn from_cache(cache: Arc<TokenCache<S>>) -> Self {
        TokenAuth {
            cache,
            origins: None,
        }
    }

    /// Sends the token only to these origins, and to no other, the client's base URL
    /// included.
    ///
    /// Default: the origin of the client's [`base_url`](super::ClientBuilder::base_url); a
    /// client with no base URL needs the origins named here. Whatever the scope, a redirect to
    /// another origin never carries the token.
    ///
    /// ```
    /// use stopover::client::Origin;
    /// use stopover::client::token::{source_fn, Token, TokenAuth};
    ///
    /// let auth = TokenAuth::new(source_fn(|_client| async { Ok(Token::new("t")) }))
    ///     .origins([Origin::parse("https://api.example")?]);
    /// # let _ = auth;
    /// # Ok::<(), stopover::client::InvalidOrigin>(())
    /// ```
    pub fn origins(mut self, origins: impl IntoIterator<Item = Origin>) -> Self {
        self.origins = Some(origins.into_iter().collect());
        self
    }

    /// The cache.
    pub fn cache(&self) -> &Arc<TokenCache<S>> {
        &self.cache
    }

    /// Whether the token goes with `request`, sent through `client`; an error when there is no
    /// scope to decide by.
    fn sends_token_to(
        &self,
        request: &Request,
        client: &Client,
    ) -> std::result::Result<bool, TokenConfigError> {
        // Once a hop left the origin, the other origin chose every later hop's URL, even one
        // back on a listed origin: the redirect loop's rule for plain credential headers.
        if request.left_origin {
            return Ok(false);
        }
        let url = request.url();
        match (&self.origins, client.base_url()) {
            (Some(origins), _) => Ok(origins.iter().any(|origin| origin.contains(url))),
            (None, Some(base_url)) => Ok(!crosses_origin(base_url, url)),
            (None, None) => Err(TokenConfigError::NoScope),
        }
    }
}

/// A token middleware configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenConfigError {
    /// The token endpoint is not an absolute URL.
    #[error("{0:?} is not a valid token endpoint URL")]
    InvalidEndpoint(String),
    /// Neither [`TokenAuth::origins`] nor the client's
    /// [`base_url`](super::ClientBuilder::base_url) says where the token may go.
    #[error(
        "TokenAuth has no origins to send its token to: name them with \
         TokenAuth::origins([Origin::parse(\"https://api.example\")?]), or give the client a \
         base_url, whose origin is then the token's only destination"
    )]
    NoScope,
}

impl<S: TokenSource> Middleware for TokenAuth<S> {
    fn check(&self, client: &Client) -> std::result::Result<(), super::BoxError> {
        match (&self.origins, client.base_url()) {
            (None, None) => Err(TokenConfigError::NoScope.into()),
            _ => Ok(()),
        }
    }

    async fn handle(&self, mut request: Request, next: Next) -> Result<Response> {
        if in_refresh() {
            return next.run(request).await;
        }
        if !self
            .sends_token_to(&request, next.client())
            .map_err(Error::middleware)?
        {
            return next.run(request).await;
        }
        let token = match self.cache.token(next.client()).await {
            Ok(token) => token,
            // A refresh ahead of expiry failed: the token still works until it expires.
            Err(err) => match self.cache.current().filter(|token| !token.is_expired()) {
                Some(token) => {
                    tracing::warn!(error = %err, "token refresh failed; sending the current token until it expires");
                    token
                }
                None => return Err(Error::middleware(err)),
            },
        };
        set_bearer(&mut request, &token)?;
        let replay = request.try_clone().ok();
        let response = next.run(request).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        // A capped stream can be sent again only if what it sent fitted under its cap.
        let Some(mut replay) = replay.filter(|replay| replay.body().is_replayable()) else {
            tracing::debug!("401 not retried: the request body cannot be replayed");
            return Ok(response);
        };
        let fresh = self
            .cache
            .refresh_rejected(&token, next.client())
            .await
            .map_err(Error::middleware)?;
        // Read away (short) or dropped (long), never left holding its connection.
        response.discard().await;
        set_bearer(&mut replay, &fresh)?;
        // Whatever this answers, 401 included, is the caller's answer: one replay only.
        next.run(replay).await
    }
}

fn set_bearer(request: &mut Request, token: &Token) -> Result<()> {
    let value = token.bearer_header().map_err(Error::middleware)?;
    request.headers_mut().insert(AUTHORIZATION, value);
    Ok(())
}

/// The most bytes read from a token endpoint's answer: a token answer is a few kilobytes even
/// with a large JWT, and an endpoint that sends more is broken or hostile.
const TOKEN_RESPONSE_LIMIT: u64 = 64 * 1024;

/// A [`TokenSource`] that trades a refresh token for an access token at an OAuth 2 token
/// endpoint (RFC 6749, section 6).
///
/// At most 64 KiB of the endpoint's answer are read (a token answer is a few kilobytes even
/// with a large JWT); a longer one fails the refresh with [`TokenError::Transport`] whose
/// error is of kind [`ErrorKind::BodyTooLarge`](super::ErrorKind::BodyTooLarge).
///
/// Sends `grant_type=refresh_token` (plus `client_id` and `scope` if set) as a form POST
/// through the client the token is for, **without middleware**, so it is safe to use from a
/// token middleware installed on that client. When the endpoint rotates the refresh token, the
/// new one is kept and handed to the [`on_rotate`](RefreshTokenSource::on_rotate) callback to
/// be persisted.
pub struct RefreshTokenSource {
    endpoint: Url,
    refresh_token: Mutex<String>,
    client_id: Option<String>,
    scope: Option<String>,
    on_rotate: Option<PersistRotated>,
}

impl fmt::Debug for RefreshTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokenSource")
            .field("endpoint", &self.endpoint.as_str())
            .field("refresh_token", &"[redacted]")
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl RefreshTokenSource {
    /// A source posting `refresh_token` to `endpoint`, an absolute URL.
    pub fn new(endpoint: &str, refresh_token: impl Into<String>) -> Result<Self, TokenConfigError> {
        let endpoint = Url::parse(endpoint)
            .map_err(|_| TokenConfigError::InvalidEndpoint(endpoint.to_owned()))?;
        Ok(RefreshTokenSource {
            endpoint,
            refresh_token: Mutex::new(refresh_token.into()),
            client_id: None,
            scope: None,
            on_rotate: None,
        })
    }

    /// Sends `client_id` with each refresh (public clients).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Sends `scope` with each refresh.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Called with the new refresh token whenever the endpoint rotates it, to persist it.
    pub fn on_rotate(mut self, persist: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_rotate = Some(Arc::new(persist));
        self
    }

    /// The refresh token that the next refresh will send.
    pub fn refresh_token(&self) -> String {
        self.lock_refresh_token().clone()
    }

    fn lock_refresh_token(&self) -> std::sync::MutexGuard<'_, String> {
        self.refresh_token
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl TokenSource for RefreshTokenSource {
    fn shared_refresh_token(&self) -> Option<String> {
        Some(self.refresh_token())
    }

    fn adopt_refresh_token(&self, refresh_token: &str) {
        let mut current = self.lock_refresh_token();
        if *current != refresh_token {
            refresh_token.clone_into(&mut current);
        }
    }

    async fn fetch(&self, client: &Client) -> Result<Token, TokenError> {
        let refresh_token = self.refresh_token();
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
        ];
        if let Some(client_id) = &self.client_id {
            form.push(("client_id", client_id));
        }
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let response = client
            .post(self.endpoint.clone())
            .no_middleware()
            .body_limit(TOKEN_RESPONSE_LIMIT)
            .form(&form)
            .send()
            .await
            .map_err(|err| TokenError::Transport(Arc::new(err)))?;
        if !response.status().is_success() {
            return Err(TokenError::Endpoint {
                status: response.status(),
            });
        }
        let body = response
            .bytes()
            .await
            .map_err(|err| TokenError::Transport(Arc::new(err)))?;
        let answer = TokenResponse::parse(&body)?;
        if let Some(rotated) = answer.refresh_token.filter(|new| *new != refresh_token) {
            *self.lock_refresh_token() = rotated.clone();
            if let Some(persist) = &self.on_rotate {
                persist(&rotated);
            }
        }
        Ok(answer.token)
    }
}

/// A token endpoint's JSON answer (RFC 6749, section 5.1), as far as a client needs it.
#[derive(Debug)]
pub(crate) struct TokenResponse {
    pub(crate) token: Token,
    pub(crate) refresh_token: Option<String>,
}

impl TokenResponse {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, TokenError> {
        #[derive(serde::Deserialize)]
        struct Raw {
            access_token: String,
            token_type: Option<String>,
            expires_in: Option<serde_json::Value>,
            refresh_token: Option<String>,
        }
        let raw: Raw = serde_json::from_slice(body)
            .map_err(|err| TokenError::InvalidResponse(err.to_string()))?;
        if let Some(kind) = raw
            .token_type
            .filter(|kind| !kind.eq_ignore_ascii_case("bearer"))
        {
            return Err(TokenError::InvalidResponse(format!(
                "token_type {kind:?} is not a bearer token"
            )));
        }
        // Some servers send the lifetime as a string.
        let expires_in = match raw.expires_in {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(text)) => text.trim().parse().ok(),
            Some(_) => None,
        };
        let mut token = Token::new(raw.access_token);
        if let Some(seconds) = expires_in {
            token = token.expires_in(Duration::from_secs(seconds));
        }
        token.bearer_header()?;
        Ok(TokenResponse {
            token,
            refresh_token: raw.refresh_token.filter(|rotated| !rotated.is_empty()),
        })
    }
}

/// Keeps a [`TokenCache`] fresh from a background task; the task stops when this is dropped.
///
/// The task fetches a token at once (a request that arrives first waits for that same fetch),
/// then sleeps until the token is due for renewal and renews it ahead of expiry, never more
/// often than once a second (a token endpoint that hands out tokens already due, say with
/// `expires_in: 0`, is not hammered). A failed fetch is tried again after 1 s, then 2 s, 4 s,
/// ... up to 60 s. A token with no expiry is never renewed in the background (a 401 still
/// renews it through the middleware).
#[derive(Debug)]
pub struct BackgroundRefresh {
    task: JoinHandle<()>,
}

impl BackgroundRefresh {
    /// Starts the background task for `cache`, fetching through `client`. Must be called
    /// inside a tokio runtime.
    ///
    /// The task holds only a weak reference to the cache: it also stops when the cache is
    /// dropped.
    pub fn spawn<S: TokenSource>(cache: &Arc<TokenCache<S>>, client: Client) -> Self {
        let cache = Arc::downgrade(cache);
        BackgroundRefresh {
            task: tokio::spawn(refresh_loop(cache, client)),
        }
    }

    /// Whether the task has stopped (its cache is gone, or its tokens do not expire).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for BackgroundRefresh {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The shortest wait between two background renewals.
const MIN_BACKGROUND_INTERVAL: Duration = Duration::from_secs(1);

async fn refresh_loop<S: TokenSource>(cache: Weak<TokenCache<S>>, client: Client) {
    let mut failures = 0u32;
    loop {
        let Some(strong) = cache.upgrade() else {
            return;
        };
        let wake_at = match strong.token(&client).await {
            Ok(token) => {
                failures = 0;
                match token.refresh_at(strong.skew) {
                    // A token due at once (or already expired) must not make this loop spin.
                    Some(at) => at.max(Instant::now() + MIN_BACKGROUND_INTERVAL),
                    None => return,
                }
            }
            Err(err) => {
                failures = failures.saturating_add(1);
                let wait =
                    Duration::from_secs(1u64 << (failures - 1).min(6)).min(Duration::from_secs(60));
                tracing::warn!(error = %err, retry_in = ?wait, "background token refresh failed");
                Instant::now() + wait
            }
        };
        // Never sleep while holding the cache: dropping it must stop the task.
        drop(strong);
        tokio::time::sleep_until(wake_at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A client for the sources, which ignore it: these tests send nothing.
    fn client() -> Client {
        static CLIENT: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
        CLIENT.get_or_init(Client::new).clone()
    }

    fn counting_source(calls: Arc<AtomicUsize>, lifetime: Option<Duration>) -> impl TokenSource {
        source_fn(move |_| {
            let calls = calls.clone();
            async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                // Let concurrent callers pile up behind the fetch.
                tokio::task::yield_now().await;
                let token = Token::new(format!("token-{n}"));
                Ok(match lifetime {
                    Some(lifetime) => token.expires_in(lifetime),
                    None => token,
                })
            }
        })
    }

    #[tokio::test]
    async fn first_use_fetches_once_for_all_concurrent_callers() {
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = Arc::new(TokenCache::new(counting_source(calls.clone(), None)));
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(
                    async move { cache.token(&client()).await.map(|t| t.value().to_owned()) },
                )
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), "token-1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_rejected_token_is_refreshed_once_for_all_concurrent_callers() {
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = Arc::new(
            TokenCache::new(counting_source(calls.clone(), None)).with_token(Token::new("old")),
        );
        let rejected = cache.token(&client()).await.unwrap();
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let (cache, rejected) = (cache.clone(), rejected.clone());
                tokio::spawn(async move {
                    cache
                        .refresh_rejected(&rejected, &client())
                        .await
                        .map(|t| t.value().to_owned())
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), "token-1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_token_already_replaced_is_not_refreshed_again() {
        let calls = Arc::new(AtomicUsize::new(0));
        let cache =
            TokenCache::new(counting_source(calls.clone(), None)).with_token(Token::new("old"));
        let old = cache.token(&client()).await.unwrap();
        let new = cache.refresh_rejected(&old, &client()).await.unwrap();
        let again = cache.refresh_rejected(&old, &client()).await.unwrap();
        assert!(Arc::ptr_eq(&new, &again));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The new value, rejected in turn, is refreshed once more: once per value.
        cache.refresh_rejected(&new, &client()).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_fetch_is_shared_by_its_waiters_and_not_repeated() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let cache = Arc::new(TokenCache::new(source_fn(move |_| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                Err(TokenError::Endpoint {
                    status: StatusCode::UNAUTHORIZED,
                })
            }
        })));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.token(&client()).await })
            })
            .collect();
        for task in tasks {
            assert!(matches!(
                task.await.unwrap(),
                Err(TokenError::Endpoint {
                    status: StatusCode::UNAUTHORIZED
                })
            ));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A later caller tries again: a failure is not cached forever.
        assert!(cache.token(&client()).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_token_that_cannot_be_sent_is_not_cached() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let cache = TokenCache::new(source_fn(move |_| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move { Ok(Token::new(if n == 0 { "bad\r\nvalue" } else { "good" })) }
        }));
        assert!(matches!(
            cache.token(&client()).await,
            Err(TokenError::InvalidToken)
        ));
        assert!(cache.current().is_none());
        assert_eq!(cache.token(&client()).await.unwrap().value(), "good");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_within_the_skew_is_refreshed_before_use() {
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = TokenCache::new(counting_source(
            calls.clone(),
            Some(Duration::from_secs(300)),
        ))
        .skew(Duration::from_secs(30));
        assert_eq!(cache.token(&client()).await.unwrap().value(), "token-1");
        tokio::time::advance(Duration::from_secs(269)).await;
        assert_eq!(cache.token(&client()).await.unwrap().value(), "token-1");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(cache.token(&client()).await.unwrap().value(), "token-2");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_lived_token_is_kept_for_half_its_lifetime() {
        let calls = Arc::new(AtomicUsize::new(0));
        // Lifetime 20 s is shorter than the 30 s skew: refreshing at once would refresh on
        // every request.
        let cache = TokenCache::new(counting_source(
            calls.clone(),
            Some(Duration::from_secs(20)),
        ));
        cache.token(&client()).await.unwrap();
        tokio::time::advance(Duration::from_secs(9)).await;
        cache.token(&client()).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        cache.token(&client()).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    type Hook = Box<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

    /// A source whose fetch asks its own cache for a token, as a refresh sent through the full
    /// middleware chain would.
    struct ReenteringSource(std::sync::OnceLock<Hook>);

    impl TokenSource for ReenteringSource {
        async fn fetch(&self, _client: &Client) -> Result<Token, TokenError> {
            if let Some(hook) = self.0.get() {
                hook().await;
            }
            Ok(Token::new("fresh"))
        }
    }

    #[tokio::test]
    async fn a_source_that_reenters_its_cache_does_not_deadlock() {
        let cache = Arc::new(TokenCache::new(
            ReenteringSource(std::sync::OnceLock::new()),
        ));
        let weak = Arc::downgrade(&cache);
        let hook: Hook = Box::new(move || {
            let weak = weak.clone();
            Box::pin(async move {
                if let Some(cache) = weak.upgrade() {
                    let _ = cache.token(&client()).await;
                }
            })
        });
        let _ = cache.source().0.set(hook);
        let token = tokio::time::timeout(Duration::from_secs(5), cache.token(&client()))
            .await
            .expect("no deadlock")
            .unwrap();
        assert_eq!(token.value(), "fresh");
    }

    #[tokio::test(start_paused = true)]
    async fn token_response_with_lifetime_and_rotated_refresh_token() {
        let parsed = TokenResponse::parse(
            br#"{"access_token":"a1","token_type":"Bearer","expires_in":3600,"refresh_token":"r2"}"#,
        )
        .unwrap();
        assert_eq!(parsed.token.value(), "a1");
        assert_eq!(
            parsed.token.expiry(),
            Some(Instant::now() + Duration::from_secs(3600))
        );
        assert_eq!(parsed.refresh_token.as_deref(), Some("r2"));
    }

    #[tokio::test(start_paused = true)]
    async fn token_response_lifetime_may_be_a_string_or_absent() {
        let parsed = TokenResponse::parse(br#"{"access_token":"a1","expires_in":"60"}"#).unwrap();
        assert_eq!(
            parsed.token.expiry(),
            Some(Instant::now() + Duration::from_secs(60))
        );
        let parsed = TokenResponse::parse(br#"{"access_token":"a1"}"#).unwrap();
        assert_eq!(parsed.token.expiry(), None);
        assert!(parsed.refresh_token.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn token_response_with_an_absurd_lifetime_is_a_token_without_expiry() {
        let parsed =
            TokenResponse::parse(br#"{"access_token":"a1","expires_in":18446744073709551615}"#)
                .unwrap();
        assert_eq!(parsed.token.value(), "a1");
        assert_eq!(parsed.token.expiry(), None);
    }

    #[test]
    fn token_response_that_is_not_a_bearer_token_is_refused() {
        for body in [
            &br#"{"token_type":"bearer"}"#[..],
            br#"{"access_token":"a1","token_type":"DPoP"}"#,
            br#"{"access_token":"a\r\nb"}"#,
            b"<html>oops</html>",
        ] {
            assert!(
                TokenResponse::parse(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn token_debug_hides_the_value() {
        let token = Token::new("s3cr3t");
        assert!(!format!("{token:?}").contains("s3cr3t"));
        let header = token.bearer_header().unwrap();
        assert!(header.is_sensitive());
        assert_eq!(header, "Bearer s3cr3t");
    }

    #[test]
    fn a_token_with_a_newline_is_refused() {
        assert!(matches!(
            Token::new("a\r\nX-Evil: 1").bearer_header(),
            Err(TokenError::InvalidToken)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn background_refresh_renews_ahead_of_expiry() {
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = Arc::new(
            TokenCache::new(counting_source(
                calls.clone(),
                Some(Duration::from_secs(300)),
            ))
            .skew(Duration::from_secs(30)),
        );
        let refresher = BackgroundRefresh::spawn(&cache, client());
        // The first caller waits for the first token rather than fetching a second one.
        assert_eq!(cache.token(&client()).await.unwrap().value(), "token-1");
        tokio::time::sleep(Duration::from_secs(271)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.current().unwrap().value(), "token-2");
        drop(refresher);
    }

    #[tokio::test(start_paused = true)]
    async fn background_refresh_stops_when_dropped() {
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = Arc::new(TokenCache::new(counting_source(
            calls.clone(),
            Some(Duration::from_secs(60)),
        )));
        let refresher = BackgroundRefresh::spawn(&cache, client());
        cache.token(&client()).await.unwrap();
        drop(refresher);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn background_refresh_stops_when_the_cache_is_dropped() {
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = Arc::new(TokenCache::new(counting_source(
            calls.clone(),
            Some(Duration::from_secs(60)),
        )));
        let refresher = BackgroundRefresh::spawn(&cache, client());
        cache.token(&client()).await.unwrap();
        drop(cache);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(refresher.is_finished());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn background_refresh_of_tokens_already_due_does_not_spin() {
        let calls = Arc::new(AtomicUsize::new(0));
        // `expires_in: 0`: every token is due for renewal the moment it arrives.
        let cache = Arc::new(TokenCache::new(counting_source(
            calls.clone(),
            Some(Duration::ZERO),
        )));
        let _refresher = BackgroundRefresh::spawn(&cache, client());
        for _ in 0..1000 {
            tokio::task::yield_now().await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(10_500)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 11);
    }

    #[tokio::test(start_paused = true)]
    async fn background_refresh_retries_a_failed_fetch() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let cache = Arc::new(TokenCache::new(source_fn(move |_| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err(TokenError::InvalidResponse("not yet".into()))
                } else {
                    Ok(Token::new("finally"))
                }
            }
        })));
        let _refresher = BackgroundRefresh::spawn(&cache, client());
        // Failures are retried after 1 s, then 2 s.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(cache.current().unwrap().value(), "finally");
    }
}
