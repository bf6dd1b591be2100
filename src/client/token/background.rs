//! [`BackgroundRefresh`]: renews the token ahead of expiry from a task of its own.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::Client;

use super::cache::TokenCache;
use super::source::TokenSource;

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
