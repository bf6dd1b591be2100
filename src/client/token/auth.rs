//! [`TokenAuth`]: the middleware that sends the token to the origins it is scoped to.

use std::fmt;
use std::sync::Arc;

use http::StatusCode;
use http::header::AUTHORIZATION;

use crate::client::origin::crosses_origin;
use crate::client::{Client, Error, Middleware, Next, Origin, Request, Response, Result};

use super::cache::{TokenCache, in_refresh};
use super::source::{Token, TokenSource};

/// The token middleware: sends `Authorization: Bearer <token>` to the origins the token is
/// meant for, refreshes it before it expires, and on a 401 refreshes once and replays once.
///
/// Safe on the whole client: the built-in [`RefreshTokenSource`](super::RefreshTokenSource) refreshes without middleware,
/// and a source that does send through the chain is detected and passed through.
///
/// - A 401 replaces the token it answered (unless another request already did) and the request
///   is replayed once with the new one; whatever the replay answers, 401 included, is the
///   caller's answer. A request whose streaming body cannot be replayed gets its 401 back.
/// - A refresh that fails is an [`ErrorKind::Middleware`](crate::client::ErrorKind::Middleware) error
///   whose source is the [`TokenError`](super::TokenError), except a refresh ahead of expiry (within the skew):
///   while the current token has not expired it is still sent, and the failure is a WARN
///   event.
/// - **Scope:** the token goes only to the origins named with
///   [`origins`](TokenAuth::origins), or, without them, to the origin of the client's
///   [`base_url`](crate::client::ClientBuilder::base_url). A client with neither fails to build with an
///   [`ErrorKind::Builder`](crate::client::ErrorKind::Builder) error whose source is
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

    /// A middleware over a cache that may be shared (with a [`BackgroundRefresh`](super::BackgroundRefresh), or with
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
    /// Default: the origin of the client's [`base_url`](crate::client::ClientBuilder::base_url); a
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
    /// [`base_url`](crate::client::ClientBuilder::base_url) says where the token may go.
    #[error(
        "TokenAuth has no origins to send its token to: name them with \
         TokenAuth::origins([Origin::parse(\"https://api.example\")?]), or give the client a \
         base_url, whose origin is then the token's only destination"
    )]
    NoScope,
}

impl<S: TokenSource> Middleware for TokenAuth<S> {
    fn check(&self, client: &Client) -> std::result::Result<(), crate::client::BoxError> {
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
        // Boxed: a 401 is rare, and its state (a refresh, a response being drained, the replay)
        // would otherwise make every request's future larger.
        Box::pin(self.replay_after_401(response, replay, token, next)).await
    }
}

impl<S: TokenSource> TokenAuth<S> {
    /// Refreshes the token a 401 refused and sends the request once more with the new one.
    async fn replay_after_401(
        &self,
        response: Response,
        replay: Option<Request>,
        rejected: Arc<Token>,
        next: Next,
    ) -> Result<Response> {
        // A capped stream can be sent again only if what it sent fitted under its cap.
        let Some(mut replay) = replay.filter(|replay| replay.body().is_replayable()) else {
            tracing::debug!("401 not retried: the request body cannot be replayed");
            return Ok(response);
        };
        let fresh = self
            .cache
            .refresh_rejected(&rejected, next.client())
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
