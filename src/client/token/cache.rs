//! [`TokenCache`]: one fetch per token value, however many requests need it at once.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::{Client, Result};

use super::store::{Fetch, Need};

use super::source::{Token, TokenError, TokenSource};
use super::store::{BoxFuture, Fetched, Refresh, TokenStore};

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
    pub(super) source: S,
    pub(super) skew: Duration,
    state: Mutex<State>,
    pub(super) refresh: tokio::sync::Mutex<()>,
    /// `None`: in process, the source is asked directly.
    pub(super) store: Option<Box<dyn TokenStore>>,
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

    /// Shares the token through `store` (say, a [`redis::RedisTokenStore`](redis/struct.RedisTokenStore.html)) instead of keeping
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
                // Boxed: a fetch is rare, and its state would make every caller's future larger.
                Box::pin(self.fetch_once(fetches, need, client)).await
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
                Box::pin(self.fetch_once(fetches, need, client)).await
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
