//! [`RefreshTokenSource`]: the OAuth 2 refresh-token grant (RFC 6749, section 6).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::Url;

use crate::client::{Client, Result};

use super::source::PersistRotated;

use super::auth::TokenConfigError;
use super::source::{Token, TokenError, TokenSource};

/// The most bytes read from a token endpoint's answer: a token answer is a few kilobytes even
/// with a large JWT, and an endpoint that sends more is broken or hostile.
const TOKEN_RESPONSE_LIMIT: u64 = 64 * 1024;

/// A [`TokenSource`] that trades a refresh token for an access token at an OAuth 2 token
/// endpoint (RFC 6749, section 6).
///
/// At most 64 KiB of the endpoint's answer are read (a token answer is a few kilobytes even
/// with a large JWT); a longer one fails the refresh with [`TokenError::Transport`] whose
/// error is of kind [`ErrorKind::BodyTooLarge`](crate::client::ErrorKind::BodyTooLarge).
///
/// Sends `grant_type=refresh_token` (plus `client_id` and `scope` if set) as a form POST
/// through the client the token is for, **without middleware**, so it is safe to use from a
/// token middleware installed on that client. When the endpoint rotates the refresh token, the
/// new one is kept and handed to the [`on_rotate`](RefreshTokenSource::on_rotate) callback to
/// be persisted.
///
/// # The answer it accepts
///
/// A 2xx answer whose body is the JSON object of RFC 6749, section 5.1:
///
/// | field | | what is done with it |
/// |---|---|---|
/// | `access_token` | required, a string | the token sent as `Authorization: Bearer <access_token>`; one that cannot be a header value (a line break) is refused |
/// | `token_type` | optional (RFC 6749 makes it required; servers leave it out) | compared with `Bearer` without regard to case (`bearer`, `BEARER`); any other type (`DPoP`, `mac`) is refused, as a bearer header would misuse it |
/// | `expires_in` | optional, seconds, as a number (`3600`) or a string (`"3600"`) | the token's expiry, from when the answer arrived; absent, `null`, negative, fractional, unreadable or too large for a deadline: a token without expiry, kept until a 401 |
/// | `refresh_token` | optional, a string | when present, non-empty and different, the new refresh token (rotation): kept for the next refresh and handed to [`on_rotate`](RefreshTokenSource::on_rotate) |
/// | anything else (`scope`, `id_token`, ...) | ignored | |
///
/// A non-2xx answer is [`TokenError::Endpoint`] with its status; a body that is not such a JSON
/// object (HTML, a missing `access_token`, a wrong type) or a refused token is
/// [`TokenError::InvalidResponse`] saying why; either fails the refresh with that error.
///
/// ```
/// use stopover::client::token::{RefreshTokenSource, TokenAuth};
///
/// let source = RefreshTokenSource::new("https://auth.example/oauth/token", "r-1")?
///     .client_id("my-app")
///     .on_rotate(|rotated| println!("store the new refresh token ({} bytes)", rotated.len()));
/// let auth = TokenAuth::new(source);
/// # let _ = auth;
/// # Ok::<(), stopover::client::token::TokenConfigError>(())
/// ```
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
