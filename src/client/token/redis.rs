//! One token for a whole fleet: a [`TokenStore`] on Redis, so that N replicas share one access
//! token and one refresh token, and one of them refreshes per token value.
//!
//! Every replica keeps its own in-memory copy: while it is fresh, a request costs no Redis round
//! trip. When a replica's copy is due (or a server refused it), it reads the fleet's token from
//! Redis; if that one is due too, the replicas race for a lease (`SET NX PX`) and the winner
//! alone calls the token endpoint, with the refresh token stored in Redis (so a refresh token
//! rotated by one replica is the one the next refresher sends). The others poll Redis, with a
//! short backoff, until the new token appears; none of them refreshes while the lease is live.
//! If the winner dies, its lease runs out and the next waiter takes over.
//!
//! Each election also takes a fencing number (`INCR`); the winner's write is a Lua script that
//! stores the token only if no later election happened, so a winner whose lease ran out cannot
//! overwrite a newer token or refresh token. The winner's own fetch is cut off before its lease
//! ends.
//!
//! Keys, under the configured prefix (default `stopover:token:`):
//!
//! | key | holds | expires |
//! |---|---|---|
//! | `{prefix}access` | the access token, its fencing number and lifetime (JSON) | with the token |
//! | `{prefix}refresh` | the refresh token | never: it outlives any one access token |
//! | `{prefix}lease` | the refresher's id and fencing number | after the lease |
//! | `{prefix}fence` | the last fencing number | never |
//!
//! # When Redis is unreachable
//!
//! Every Redis call is bounded by [`call_timeout`](RedisTokenStoreBuilder::call_timeout)
//! (default 1 s), so nothing hangs. What happens next is
//! [`when_unreachable`](RedisTokenStoreBuilder::when_unreachable):
//!
//! - [`Unreachable::Fail`] (default): the refresh fails with [`TokenError::Store`]. A request
//!   whose token is still fresh never notices (Redis is not on its path), and a refresh ahead
//!   of expiry that fails keeps sending the unexpired token ([`TokenAuth`](super::TokenAuth)'s
//!   rule). Only requests that need a new token fail, until Redis answers again; the connection
//!   is re-established in the background. This is the safe choice with rotating refresh
//!   tokens: replicas refreshing on their own would revoke each other's.
//! - [`Unreachable::RefreshLocally`]: the replica refreshes with its own source and logs a
//!   WARN event. Requests keep working, at the cost of one refresh per replica while Redis is
//!   down; pick it only when the token endpoint does not rotate refresh tokens.
//!
//! Redis must be trusted like the token endpoint: it holds the tokens in clear. Use Redis ACLs
//! and a network only the fleet can reach; `rediss://` (TLS) is not enabled by this feature.
//!
//! The election is hand-written over two Lua scripts rather than taken from a lock crate: the
//! Redis lock crates (`redlock`, `rslock`) give a lease but no fencing number tied to the write
//! of the value, which is what keeps an expired holder from overwriting a newer token.
//!
//! ```no_run
//! use std::sync::Arc;
//! use stopover::client::{Client, Origin};
//! use stopover::client::token::redis::RedisTokenStore;
//! use stopover::client::token::{RefreshTokenSource, TokenAuth, TokenCache};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = RedisTokenStore::builder("redis://127.0.0.1:6379/")
//!     .key_prefix("billing-api:token:")
//!     .build()?;
//! let source = RefreshTokenSource::new("https://auth.example/oauth/token", "refresh-123")?;
//! let cache = Arc::new(TokenCache::new(source).with_store(store));
//! let auth = TokenAuth::from_cache(cache).origins([Origin::parse("https://api.example")?]);
//! let client = Client::builder().middleware(auth).build()?;
//! let me = client.get("https://api.example/me").send().await?;
//! # let _ = me;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

use super::{BoxFuture, Fetched, Refresh, Token, TokenError, TokenStore};

/// Takes the lease if it is free; the new lease's value carries the fencing number. Returns
/// `{fence, access record or '', refresh token or ''}`, or nil when another process holds it.
const ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[1] .. ':' .. fence, 'PX', ARGV[2])
  return {fence, redis.call('GET', KEYS[3]) or '', redis.call('GET', KEYS[4]) or ''}
end
return false
";

/// Stores the token only if no election happened since ours (the fencing check), then frees
/// our lease. Returns 1 if stored, 0 if fenced out.
const COMMIT: &str = r"
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[3], ARGV[3])
end
if ARGV[5] ~= '' then redis.call('SET', KEYS[4], ARGV[5]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
";

/// Frees our lease, and only ours.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// What a replica does when Redis cannot be reached; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Unreachable {
    /// Fail the refresh with [`TokenError::Store`] (default).
    #[default]
    Fail,
    /// Refresh with this replica's own source, with a WARN event.
    RefreshLocally,
}

/// A Redis token store configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreConfigError {
    /// The Redis URL could not be used.
    #[error("{url:?} is not a usable Redis URL: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why the redis crate refused it.
        reason: String,
    },
    /// The key prefix is empty: the keys would collide with anything else in the database.
    #[error("the Redis key prefix is empty")]
    EmptyPrefix,
    /// A duration setting is out of range.
    #[error("{setting} = {value:?} is invalid: {reason}")]
    InvalidDuration {
        /// The setting's name.
        setting: &'static str,
        /// The value given.
        value: Duration,
        /// What it must be.
        reason: &'static str,
    },
}

/// Why the Redis store failed at run time; the source of a [`TokenError::Store`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// Redis answered with an error, or the connection failed.
    #[error("Redis {operation} failed")]
    Redis {
        /// What the store was doing.
        operation: &'static str,
        /// The redis crate's error.
        #[source]
        source: redis::RedisError,
    },
    /// Redis did not answer within the call timeout.
    #[error("Redis {operation} did not answer within {timeout:?}")]
    Timeout {
        /// What the store was doing.
        operation: &'static str,
        /// The call timeout.
        timeout: Duration,
    },
    /// Another process held the lease and no new token arrived within the wait limit.
    #[error("no new token from the refreshing process within {waited:?}")]
    WaitedTooLong {
        /// How long this process waited.
        waited: Duration,
    },
    /// This process's own refresh did not finish before its lease would have run out.
    #[error("the refresh did not finish within the lease ({lease:?})")]
    RefreshOutlivedLease {
        /// The lease.
        lease: Duration,
    },
}

impl From<RedisStoreError> for TokenError {
    fn from(err: RedisStoreError) -> Self {
        TokenError::Store(Arc::new(err))
    }
}

/// Builds a [`RedisTokenStore`]; see [`RedisTokenStore::builder`].
#[derive(Debug, Clone)]
pub struct RedisTokenStoreBuilder {
    url: String,
    prefix: String,
    lease: Duration,
    call_timeout: Duration,
    max_wait: Option<Duration>,
    unreachable: Unreachable,
}

impl RedisTokenStoreBuilder {
    /// The prefix of the store's keys. Default `stopover:token:`. Give each token (each client
    /// id and scope) its own prefix.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long the elected refresher may take before another process may take over. Default
    /// 10 s. Its own fetch is cut off before the lease ends (one call timeout earlier, twice,
    /// to leave room for storing the token). Must be more than three call timeouts.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The limit on every Redis call (and on connecting). Default 1 s; must be more than zero.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// How long a process waits for another process's refresh before failing with
    /// [`RedisStoreError::WaitedTooLong`]. Default: twice the lease plus one second, enough for
    /// a refresher to die and its successor to finish.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }

    /// What to do when Redis cannot be reached. Default [`Unreachable::Fail`].
    pub fn when_unreachable(mut self, choice: Unreachable) -> Self {
        self.unreachable = choice;
        self
    }

    /// Checks the configuration. Connects lazily: Redis need not be up yet.
    pub fn build(self) -> Result<RedisTokenStore, RedisStoreConfigError> {
        let client = redis::Client::open(self.url.as_str()).map_err(|err| {
            RedisStoreConfigError::InvalidUrl {
                url: self.url.clone(),
                reason: err.to_string(),
            }
        })?;
        if self.prefix.is_empty() {
            return Err(RedisStoreConfigError::EmptyPrefix);
        }
        if self.call_timeout.is_zero() {
            return Err(RedisStoreConfigError::InvalidDuration {
                setting: "call_timeout",
                value: self.call_timeout,
                reason: "must be more than zero",
            });
        }
        if self.lease <= self.call_timeout * 3 || self.lease.as_millis() > u128::from(u32::MAX) {
            return Err(RedisStoreConfigError::InvalidDuration {
                setting: "lease",
                value: self.lease,
                reason: "must be more than three call timeouts and under 49 days",
            });
        }
        let max_wait = self
            .max_wait
            .unwrap_or(self.lease * 2 + Duration::from_secs(1));
        let key = |name: &str| format!("{}{name}", self.prefix);
        Ok(RedisTokenStore {
            inner: Arc::new(Inner {
                keys: [key("lease"), key("fence"), key("access"), key("refresh")],
                client,
                connection: tokio::sync::OnceCell::new(),
                holder: holder_id(),
                lease: self.lease,
                call_timeout: self.call_timeout,
                max_wait,
                unreachable: self.unreachable,
            }),
        })
    }
}

/// A [`TokenStore`] on Redis, shared by every process configured with the same URL and key
/// prefix. Cheap to clone. See the [module docs](self) for how it elects a refresher and what
/// it does when Redis is down.
#[derive(Clone)]
pub struct RedisTokenStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// lease, fence, access, refresh: the scripts' `KEYS` order.
    keys: [String; 4],
    client: redis::Client,
    connection: tokio::sync::OnceCell<ConnectionManager>,
    /// This store's id in the lease value.
    holder: String,
    lease: Duration,
    call_timeout: Duration,
    max_wait: Duration,
    unreachable: Unreachable,
}

impl fmt::Debug for RedisTokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password.
        f.debug_struct("RedisTokenStore")
            .field("key_prefix", &self.inner.keys[0].trim_end_matches("lease"))
            .field("lease", &self.inner.lease)
            .field("call_timeout", &self.inner.call_timeout)
            .field("max_wait", &self.inner.max_wait)
            .field("when_unreachable", &self.inner.unreachable)
            .finish_non_exhaustive()
    }
}

/// An election won: our fencing number and what Redis held when we won.
struct Elected {
    fence: i64,
    lease_value: String,
    access: Option<Token>,
    refresh_token: Option<String>,
}

impl RedisTokenStore {
    /// A builder for a store on the Redis at `url` (`redis://[user:password@]host:port/db` or
    /// `redis+unix:///path`).
    pub fn builder(url: impl Into<String>) -> RedisTokenStoreBuilder {
        RedisTokenStoreBuilder {
            url: url.into(),
            prefix: "stopover:token:".to_owned(),
            lease: Duration::from_secs(10),
            call_timeout: Duration::from_secs(1),
            max_wait: None,
            unreachable: Unreachable::Fail,
        }
    }

    /// A store on the Redis at `url` with the default settings.
    pub fn new(url: impl Into<String>) -> Result<Self, RedisStoreConfigError> {
        RedisTokenStore::builder(url).build()
    }

    async fn obtain_shared(&self, refresh: &Refresh<'_>) -> Result<Token, TokenError> {
        let inner = &*self.inner;
        let started = Instant::now();
        let mut poll = Duration::from_millis(5);
        loop {
            if let Some(token) = self.read_access().await?.filter(|t| refresh.accepts(t)) {
                return Ok(token);
            }
            if let Some(elected) = self.acquire().await? {
                return self.refresh_as_holder(elected, refresh).await;
            }
            // Another process holds the lease: wait for its token, never refresh meanwhile.
            let waited = started.elapsed();
            if waited >= inner.max_wait {
                return Err(RedisStoreError::WaitedTooLong { waited }.into());
            }
            tokio::time::sleep(poll.min(inner.max_wait - waited)).await;
            poll = (poll * 2).min(Duration::from_millis(100));
        }
    }

    async fn refresh_as_holder(
        &self,
        mut elected: Elected,
        refresh: &Refresh<'_>,
    ) -> Result<Token, TokenError> {
        let inner = &*self.inner;
        // Someone stored a token between our read and our election.
        if let Some(token) = elected.access.take().filter(|t| refresh.accepts(t)) {
            self.release(&elected.lease_value).await;
            return Ok(token);
        }
        let budget = inner.lease - inner.call_timeout * 2;
        let fetched = match tokio::time::timeout(
            budget,
            refresh.fetch(elected.refresh_token.clone()),
        )
        .await
        {
            Ok(Ok(fetched)) => fetched,
            Ok(Err(err)) => {
                self.release(&elected.lease_value).await;
                return Err(err);
            }
            Err(_) => {
                self.release(&elected.lease_value).await;
                return Err(RedisStoreError::RefreshOutlivedLease { lease: inner.lease }.into());
            }
        };
        match self.commit(&elected, &fetched).await {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "token refreshed after a later refresher was elected; using it here without sharing it"
            ),
            Err(err) => tracing::warn!(
                error = %err,
                "the refreshed token could not be stored in Redis; using it here without sharing it"
            ),
        }
        Ok(fetched.token)
    }

    async fn connection(&self) -> Result<ConnectionManager, RedisStoreError> {
        let inner = &*self.inner;
        inner
            .connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(inner.call_timeout))
                    .set_response_timeout(Some(inner.call_timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(inner.call_timeout);
                ConnectionManager::new_lazy_with_config(inner.client.clone(), config).map_err(
                    |source| RedisStoreError::Redis {
                        operation: "connect",
                        source,
                    },
                )
            })
            .await
            .cloned()
    }

    /// One Redis call, bounded by the call timeout.
    async fn call<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        cmd: redis::Cmd,
    ) -> Result<T, RedisStoreError> {
        let timeout = self.inner.call_timeout;
        let call = async {
            let mut connection = self.connection().await?;
            cmd.query_async(&mut connection)
                .await
                .map_err(|source| RedisStoreError::Redis { operation, source })
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or(Err(RedisStoreError::Timeout { operation, timeout }))
    }

    fn script(&self, body: &str, keys: usize) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(body).arg(keys);
        for key in &self.inner.keys[..keys] {
            cmd.arg(key);
        }
        cmd
    }

    async fn read_access(&self) -> Result<Option<Token>, RedisStoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(&self.inner.keys[2]);
        let record: Option<String> = self.call("GET of the access token", cmd).await?;
        Ok(record.as_deref().and_then(parse_record))
    }

    async fn acquire(&self) -> Result<Option<Elected>, RedisStoreError> {
        let inner = &*self.inner;
        let mut cmd = self.script(ACQUIRE, 4);
        cmd.arg(&inner.holder).arg(inner.lease.as_millis() as u64);
        let won: Option<(i64, String, String)> = self.call("lease election", cmd).await?;
        Ok(won.map(|(fence, access, refresh_token)| Elected {
            fence,
            lease_value: format!("{}:{fence}", inner.holder),
            access: parse_record(&access),
            refresh_token: Some(refresh_token).filter(|token| !token.is_empty()),
        }))
    }

    async fn commit(&self, elected: &Elected, fetched: &Fetched) -> Result<bool, RedisStoreError> {
        let token = &fetched.token;
        let ttl_ms = token.expiry().map_or(0, |at| {
            // An already-expired token still gets a positive TTL: 0 means none.
            at.saturating_duration_since(Instant::now())
                .as_millis()
                .clamp(1, u128::from(u64::MAX)) as u64
        });
        let record = serde_json::json!({
            "version": elected.fence,
            "access_token": token.value(),
            "obtained_at_ms": unix_ms(token.obtained_at),
            "expires_at_ms": token.expiry().map(unix_ms),
        })
        .to_string();
        let mut cmd = self.script(COMMIT, 4);
        cmd.arg(&elected.lease_value)
            .arg(elected.fence)
            .arg(record)
            .arg(ttl_ms)
            .arg(fetched.refresh_token.as_deref().unwrap_or(""));
        let stored: i64 = self.call("fenced write of the new token", cmd).await?;
        Ok(stored == 1)
    }

    /// Frees the lease early; if that fails, it runs out by itself.
    async fn release(&self, lease_value: &str) {
        let mut cmd = self.script(RELEASE, 1);
        cmd.arg(lease_value);
        if let Err(err) = self.call::<i64>("lease release", cmd).await {
            tracing::debug!(error = %err, "lease not released; it expires on its own");
        }
    }
}

impl TokenStore for RedisTokenStore {
    fn obtain<'a>(&'a self, refresh: Refresh<'a>) -> BoxFuture<'a, Result<Token, TokenError>> {
        Box::pin(async move {
            match self.obtain_shared(&refresh).await {
                Err(TokenError::Store(err))
                    if self.inner.unreachable == Unreachable::RefreshLocally
                        && is_unreachable(&*err) =>
                {
                    tracing::warn!(error = %err, "Redis unreachable; refreshing the token in this process alone");
                    Ok(refresh.fetch(None).await?.token)
                }
                outcome => outcome,
            }
        })
    }
}

fn is_unreachable(err: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        err.downcast_ref::<RedisStoreError>(),
        Some(RedisStoreError::Redis { .. } | RedisStoreError::Timeout { .. })
    )
}

/// A random id for this store's leases, so that it never frees another process's.
fn holder_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Unique enough without randomness: no two live processes share a pid.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        return format!("{}-{nanos:x}", std::process::id());
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// An instant as wall-clock milliseconds, which another process can read.
fn unix_ms(at: Instant) -> u64 {
    let (now, now_ms) = (Instant::now(), now_unix_ms());
    if at >= now {
        now_ms.saturating_add((at - now).as_millis() as u64)
    } else {
        now_ms.saturating_sub((now - at).as_millis() as u64)
    }
}

fn instant_at(unix_ms: u64) -> Instant {
    let (now, now_ms) = (Instant::now(), now_unix_ms());
    if unix_ms >= now_ms {
        now + Duration::from_millis(unix_ms - now_ms)
    } else {
        now.checked_sub(Duration::from_millis(now_ms - unix_ms))
            .unwrap_or(now)
    }
}

/// The access token record; anything unreadable is treated as no token (the next refresh
/// overwrites it), with a WARN event.
fn parse_record(record: &str) -> Option<Token> {
    #[derive(serde::Deserialize)]
    struct Record {
        access_token: String,
        obtained_at_ms: u64,
        expires_at_ms: Option<u64>,
    }
    if record.is_empty() {
        return None;
    }
    let parsed: Record = match serde_json::from_str(record) {
        Ok(parsed) => parsed,
        Err(err) => {
            tracing::warn!(error = %err, "unreadable token record in Redis; ignoring it");
            return None;
        }
    };
    let mut token = Token::new(parsed.access_token);
    token.bearer.as_ref()?;
    token.obtained_at = instant_at(parsed.obtained_at_ms);
    token.expires_at = parsed.expires_at_ms.map(instant_at);
    Some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_its_lifetime() {
        let token = Token::new("a1").expires_in(Duration::from_secs(600));
        let record = serde_json::json!({
            "version": 1,
            "access_token": "a1",
            "obtained_at_ms": unix_ms(token.obtained_at),
            "expires_at_ms": token.expiry().map(unix_ms),
        })
        .to_string();
        let parsed = parse_record(&record).unwrap();
        assert_eq!(parsed.value(), "a1");
        let drift = parsed
            .expiry()
            .unwrap()
            .saturating_duration_since(token.expiry().unwrap())
            .max(
                token
                    .expiry()
                    .unwrap()
                    .saturating_duration_since(parsed.expiry().unwrap()),
            );
        assert!(drift <= Duration::from_millis(2), "{drift:?}");
    }

    #[test]
    fn an_unreadable_record_is_no_token() {
        assert!(parse_record("not json").is_none());
        assert!(parse_record(r#"{"access_token":"a\r\nb","obtained_at_ms":0}"#).is_none());
    }

    #[test]
    fn bad_settings_are_refused_with_their_name() {
        assert!(matches!(
            RedisTokenStore::builder("http://127.0.0.1/").build(),
            Err(RedisStoreConfigError::InvalidUrl { .. })
        ));
        assert_eq!(
            RedisTokenStore::builder("redis://127.0.0.1/")
                .key_prefix("")
                .build()
                .unwrap_err(),
            RedisStoreConfigError::EmptyPrefix
        );
        assert!(matches!(
            RedisTokenStore::builder("redis://127.0.0.1/")
                .lease(Duration::from_secs(2))
                .call_timeout(Duration::from_secs(1))
                .build(),
            Err(RedisStoreConfigError::InvalidDuration {
                setting: "lease",
                ..
            })
        ));
    }

    #[test]
    fn debug_does_not_show_the_url() {
        let store = RedisTokenStore::new("redis://user:s3cr3t@127.0.0.1/").unwrap();
        assert!(!format!("{store:?}").contains("s3cr3t"));
    }

    /// A `redis-server` of the test's own on a free loopback port, stopped by its pid on drop.
    /// `None` (the test skips) when the program is missing, except under `CI=true`.
    struct Server {
        child: std::process::Child,
        url: String,
    }

    impl Server {
        fn start() -> Option<Server> {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map(|addr| addr.port())
                .ok()?;
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn();
            let child = match child {
                Ok(child) => child,
                Err(err) if std::env::var_os("CI").is_none() => {
                    eprintln!("skipped: redis-server could not be started ({err})");
                    return None;
                }
                Err(err) => panic!("redis-server is needed under CI=true: {err}"),
            };
            let server = Server {
                child,
                url: format!("redis://127.0.0.1:{port}/"),
            };
            // Bounded: a server that does not listen within 10 s fails the test.
            for _ in 0..200 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(server);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("redis-server did not listen on port {port}");
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn fetched(value: &str) -> Fetched {
        Fetched {
            token: Token::new(value).expires_in(Duration::from_secs(3600)),
            refresh_token: None,
        }
    }

    #[tokio::test]
    async fn a_stale_lease_holder_cannot_overwrite_a_newer_token() {
        let Some(server) = Server::start() else {
            return;
        };
        let store = |name: &str| {
            RedisTokenStore::builder(server.url.clone())
                .key_prefix("fencing:")
                .lease(Duration::from_secs(30))
                .build()
                .unwrap_or_else(|err| panic!("store {name}: {err}"))
        };
        let (stale, newer) = (store("stale"), store("newer"));
        let first = stale.acquire().await.unwrap().expect("the lease was free");
        // The first holder stalls past its lease (a pause, a partition): the lease is gone.
        let mut del = redis::cmd("DEL");
        del.arg(&stale.inner.keys[0]);
        let _: i64 = stale.call("test: lease expiry", del).await.unwrap();
        let second = newer.acquire().await.unwrap().expect("the lease expired");
        assert!(second.fence > first.fence);
        assert!(
            newer
                .commit(&second, &fetched("newer-token"))
                .await
                .unwrap()
        );
        // The stale holder's write arrives last and is fenced out.
        assert!(!stale.commit(&first, &fetched("stale-token")).await.unwrap());
        let stored = newer
            .read_access()
            .await
            .unwrap()
            .expect("a token is stored");
        assert_eq!(stored.value(), "newer-token");
    }

    #[tokio::test]
    async fn a_holder_whose_lease_was_not_taken_over_stores_its_token() {
        let Some(server) = Server::start() else {
            return;
        };
        let store = RedisTokenStore::builder(server.url.clone())
            .key_prefix("fencing-ok:")
            .build()
            .unwrap();
        let elected = store.acquire().await.unwrap().expect("the lease was free");
        assert!(
            store
                .commit(&elected, &fetched("only-token"))
                .await
                .unwrap()
        );
        let stored = store
            .read_access()
            .await
            .unwrap()
            .expect("a token is stored");
        assert_eq!(stored.value(), "only-token");
    }
}
