//! [`RedisRateLimit`]: the same GCRA limit shared by every replica through Redis, with a shared
//! `Retry-After` pause (feature `redis`).
//!
//! Every turn taken from Redis is one atomic Lua script, timed by Redis's own clock
//! (`TIME`), so that replicas with skewed clocks neither mint nor lose quota. A refusal is
//! remembered locally until the time it names (the turn only moves later), so a replica that
//! is refused does not ask Redis again before it could be let through. A 429 or 503 with
//! `Retry-After` seen by one replica pauses the key for all of them. Every Redis call is
//! bounded by [`call_timeout`](RedisRateLimit::call_timeout); when Redis cannot be reached,
//! the limiter does what [`when_unreachable`](RedisRateLimit::when_unreachable) says, never
//! hangs.
//!
//! ```no_run
//! use std::time::Duration;
//! use stopover::client::Client;
//! use stopover::client::limit::{RateLimitPolicy, RedisRateLimit, Unreachable};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // The account's quota, 100 a minute, shared by every replica;
//! // 25 a minute each if Redis is down.
//! let quota = RateLimitPolicy::builder(100, Duration::from_secs(60)).burst(10).build()?;
//! let fallback = RateLimitPolicy::builder(25, Duration::from_secs(60)).burst(3).build()?;
//! let limit = RedisRateLimit::new(redis::Client::open("redis://127.0.0.1/")?, quota)
//!     .key(|_| "openai-account-1".to_owned())
//!     .when_unreachable(Unreachable::Local(fallback));
//! let client = Client::builder().middleware(limit).build()?;
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! # Leases: not one round trip per request
//!
//! By default a replica takes its cells in small leases ([`leases`](RedisRateLimit::leases):
//! up to 16 cells, spent within 100 ms): while it spends every lease in time it asks for twice
//! as many next time, and when a lease ends with cells left it asks for as many as it spent.
//! Redis grants at most half of the cells that conform at the time, so near the limit a lease
//! is a single cell. So that leased cells never let the fleet pass the rate over any window
//! plus the burst, the cells one lease lifetime holds are kept out of the burst Redis applies;
//! leases are used only when that is at most a quarter of the burst (otherwise every request
//! is one script, as [`one_script_per_request`](RedisRateLimit::one_script_per_request)
//! always does). Measured against a real `redis-server` (BENCHMARKS.md, "The fleet limiter's
//! round trips"):
//!
//! | case | one script per request | leases (default) |
//! |---|---|---|
//! | far from the limit (10^6/s), 500 requests one after the other | 1.00 script per request | 0.07 |
//! | near it (200/s, burst 80, 160/s asked by 4 workers) | 1.00 | 0.19 to 0.29 |
//!
//! Leases are the default because they keep the hot path off Redis when the limit is far away,
//! which is when a fleet sends the most. What they cost: a burst smaller by a lifetime's
//! cells, and after one replica saw a `Retry-After`, the others may still spend what is left
//! of their leases, for at most the lifetime (100 ms); choose
//! [`one_script_per_request`](RedisRateLimit::one_script_per_request) when the burst must be
//! the policy's to the cell or no request may follow a 429 once it is known.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use http::StatusCode;
use tokio::time::Instant;

use crate::client::classify::retry_after_of;
use crate::client::origin::{KeyOf, Keyed};
use crate::client::{Error, Middleware, Next, Request, Response, Result};

use super::gcra::Cell;
use super::policy::RateLimitPolicy;

/// GCRA on Redis's clock. KEYS: the TAT and the pause of one key. ARGV: the interval, the
/// tolerance and the longest wait, in microseconds, and how many cells are wanted. Returns
/// `{1, wait, cells}` when a request may go after `wait` (its turns are taken), `{0, wait, 0}`
/// when it would wait longer than allowed. More than one cell is granted only when the request
/// can go at once, and then at most half of the cells that conform now, so that near the limit
/// a lease is a single cell and one replica never takes the whole burst.
const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local go = tat - tolerance
if go < now then go = now end
local paused = tonumber(redis.call('GET', KEYS[2]) or 0)
if paused > go then go = paused end
local wait = go - now
if wait > max_wait then return {0, wait, 0} end
local cells = 1
if wait == 0 and want > 1 then
  local conforming = math.floor((now + tolerance - tat) / interval) + 1
  cells = math.max(1, math.min(want, math.floor(conforming / 2)))
end
local new_tat = math.max(tat, go) + cells * interval
local ttl_ms = math.ceil((new_tat - now) / 1000) + 1
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl_ms)
return {1, wait, cells}
";

/// Pauses a key until Redis's now plus ARGV[1] microseconds, unless a longer pause is set.
const PAUSE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or 0)
if now + wait > current then
  redis.call('SET', KEYS[1], string.format('%d', now + wait), 'PX', math.ceil(wait / 1000) + 1)
end
return 1
";

/// What a [`RedisRateLimit`] does when Redis cannot be reached (or does not answer within the
/// call timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unreachable {
    /// Refuse the request with
    /// [`ErrorKind::RateLimited`](crate::client::ErrorKind::RateLimited) (no `retry_after`):
    /// never more than the fleet's quota, at the price of no requests while Redis is down.
    FailClosed,
    /// Limit each replica in process with this policy, typically the fleet's quota divided
    /// by the number of replicas.
    Local(RateLimitPolicy),
}

/// Cells leased from Redis for one key: spent one per request, until they run out or the
/// lease's lifetime ends (what is left then was counted as spent on Redis and is dropped).
#[derive(Debug, Clone, Copy)]
struct Lease {
    left: u32,
    granted: u32,
    until: Instant,
}

impl Lease {
    /// How many cells to ask for next: twice as many when the last lease was spent before it
    /// ended, as many as were spent when it ended with some left, so that a replica sending
    /// little asks one cell at a time and wastes none.
    fn next_want(&self, most: u32) -> u32 {
        let spent = self.granted - self.left;
        let want = if self.left == 0 {
            self.granted.saturating_mul(2)
        } else {
            spent
        };
        want.clamp(1, most)
    }
}

/// One key as a replica knows it: its name, and its lease if it holds one.
struct KeyState {
    key: Arc<str>,
    lease: Mutex<Option<Lease>>,
}

/// How a [`RedisRateLimit`] takes its turns from Redis, worked out from the policy and the
/// lease settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    /// The most cells one lease may hold; 1: one script per request.
    most: u32,
    lifetime: Duration,
    /// The GCRA tolerance Redis applies, in microseconds.
    tolerance: u64,
}

/// The fleet-wide rate limit middleware: the [`RateLimitPolicy`] of every replica counted in
/// one place, Redis; see the [module](self) for how.
///
/// Cheap to clone; clones share their connection and their local state. Refusals and pauses
/// are the same tracing events and metrics as [`RateLimit`](super::RateLimit)'s, and Redis
/// unreachable is the event `rate limit store unreachable` and the count
/// `stopover.client.rate_limit.store_errors`.
#[derive(Clone)]
pub struct RedisRateLimit {
    policy: Arc<RateLimitPolicy>,
    key: KeyOf,
    prefix: Arc<str>,
    call_timeout: Duration,
    unreachable: Arc<Unreachable>,
    lease_most: u32,
    lease_lifetime: Duration,
    shared: Arc<Shared>,
}

struct Shared {
    client: ::redis::Client,
    connection: tokio::sync::OnceCell<ConnectionManager>,
    /// Per key, the earliest a request could be let through, as Redis last said.
    blocked: Mutex<HashMap<String, Instant>>,
    /// Per key, its name and the cells leased from Redis and not spent yet; found without
    /// allocating for a known key.
    keys: Mutex<Keyed<KeyState>>,
    /// The local limit used while Redis cannot be reached.
    fallback: Mutex<HashMap<String, Cell>>,
}

impl fmt::Debug for RedisRateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimit")
            .field("policy", &self.policy)
            .field("prefix", &self.prefix)
            .field("call_timeout", &self.call_timeout)
            .field("unreachable", &self.unreachable)
            .field("plan", &self.plan())
            .finish_non_exhaustive()
    }
}

/// Why a Redis call gave no answer.
#[derive(Debug, thiserror::Error)]
enum StoreError {
    #[error("Redis {operation} failed: {source}")]
    Redis {
        operation: &'static str,
        source: ::redis::RedisError,
    },
    #[error("Redis {operation} did not answer within {timeout:?}")]
    Timeout {
        operation: &'static str,
        timeout: Duration,
    },
}

impl RedisRateLimit {
    /// A limiter applying `policy` to every replica that uses the same Redis (through
    /// `client`, made with `redis::Client::open(url)?`) and the same key prefix, with one rate
    /// per origin. Defaults: key prefix `stopover:rate:`, call timeout 1 s,
    /// [`Unreachable::FailClosed`].
    pub fn new(client: ::redis::Client, policy: RateLimitPolicy) -> Self {
        RedisRateLimit {
            policy: Arc::new(policy),
            key: KeyOf::Origin,
            prefix: Arc::from("stopover:rate:"),
            call_timeout: Duration::from_secs(1),
            unreachable: Arc::new(Unreachable::FailClosed),
            lease_most: 16,
            lease_lifetime: Duration::from_millis(100),
            shared: Arc::new(Shared {
                client,
                connection: tokio::sync::OnceCell::new(),
                blocked: Mutex::new(HashMap::new()),
                keys: Mutex::new(Keyed::new()),
                fallback: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// What the rate is kept per, as [`RateLimit::key`](super::RateLimit::key). Default: the
    /// origin.
    pub fn key(mut self, key: impl Fn(&Request) -> String + Send + Sync + 'static) -> Self {
        self.key = KeyOf::custom(key);
        self
    }

    /// The prefix of the Redis keys, so that several limits share one Redis. Default
    /// `stopover:rate:`. A key is stored as `{prefix}{{key}}:tat` and `{prefix}{{key}}:pause`
    /// (one hash slot per key on a Redis cluster).
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self
    }

    /// The longest one Redis call may take, connecting included, before Redis counts as
    /// unreachable for that request. Default 1 s; a zero timeout makes every call fail.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// What to do when Redis cannot be reached. Default [`Unreachable::FailClosed`].
    pub fn when_unreachable(mut self, choice: Unreachable) -> Self {
        self.unreachable = Arc::new(choice);
        self
    }

    /// Takes cells from Redis in leases of up to `most` (growing from 1 while this replica
    /// spends them all, shrinking to what it spends), each spent by this replica alone within
    /// `lifetime` of asking, and dropped after it. Default: up to 16 cells, 100 ms.
    ///
    /// So that leased cells never let the fleet pass the policy's rate over any window plus
    /// its burst, the cells one lifetime holds (`lifetime / interval`, rounded up) are taken
    /// out of the burst Redis applies: a cell leased late in one window and spent early in
    /// the next is paid for by that reserve. Leases are used only when that reserve is at most
    /// a quarter of the burst and leaves at least 2 cells; otherwise (a small burst, a slow
    /// rate) every request is one script, as with
    /// [`one_script_per_request`](Self::one_script_per_request). Near the limit a lease is a
    /// single cell (Redis grants at most half of the cells that conform at the time), and a
    /// request that has to wait for its turn always asks Redis. After another replica saw a
    /// `Retry-After`, this one may still spend what is left of its lease, for at most
    /// `lifetime`.
    pub fn leases(mut self, most: u32, lifetime: Duration) -> Self {
        self.lease_most = most;
        self.lease_lifetime = lifetime;
        self
    }

    /// One script on Redis for every request that goes (a refusal is remembered and costs
    /// none until its wait is over): the burst is the policy's, whole, and a `Retry-After`
    /// seen by one replica stops the others' next request. Same as `leases(1, Duration::ZERO)`.
    pub fn one_script_per_request(self) -> Self {
        self.leases(1, Duration::ZERO)
    }

    fn plan(&self) -> Plan {
        let policy = &*self.policy;
        let micros = |duration: Duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let interval = micros(policy.interval).max(1);
        let burst = u64::from(policy.burst);
        let reserve = micros(self.lease_lifetime).div_ceil(interval);
        let leasing = self.lease_most > 1
            && !self.lease_lifetime.is_zero()
            && reserve.saturating_mul(4) <= burst
            && burst.saturating_sub(reserve) >= 2;
        if leasing {
            Plan {
                most: self.lease_most,
                lifetime: self.lease_lifetime,
                tolerance: interval.saturating_mul(burst - 1 - reserve),
            }
        } else {
            Plan {
                most: 1,
                lifetime: Duration::ZERO,
                tolerance: interval.saturating_mul(burst - 1),
            }
        }
    }

    async fn connection(&self) -> std::result::Result<ConnectionManager, StoreError> {
        let timeout = self.call_timeout;
        let shared = &*self.shared;
        shared
            .connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(timeout);
                ConnectionManager::new_lazy_with_config(shared.client.clone(), config).map_err(
                    |source| StoreError::Redis {
                        operation: "connect",
                        source,
                    },
                )
            })
            .await
            .cloned()
    }

    /// One script, bounded by the call timeout.
    async fn eval<T: ::redis::FromRedisValue>(
        &self,
        operation: &'static str,
        script: &str,
        keys: &[String],
        args: &[u64],
    ) -> std::result::Result<T, StoreError> {
        let timeout = self.call_timeout;
        let call = async {
            let mut connection = self.connection().await?;
            let mut cmd = ::redis::cmd("EVAL");
            cmd.arg(script).arg(keys.len());
            for key in keys {
                cmd.arg(key);
            }
            for arg in args {
                cmd.arg(*arg);
            }
            cmd.query_async(&mut connection)
                .await
                .map_err(|source| StoreError::Redis { operation, source })
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or(Err(StoreError::Timeout { operation, timeout }))
    }

    fn redis_key(&self, key: &str, part: &str) -> String {
        format!("{}{{{key}}}:{part}", self.prefix)
    }

    /// Whether Redis said, not long ago, that no request for `key` could go before an instant
    /// further away than the longest wait: then the answer is known without asking.
    fn known_refusal(&self, key: &str, now: Instant) -> Option<Duration> {
        let blocked = lock(&self.shared.blocked);
        let until = *blocked.get(key)?;
        let wait = until.checked_duration_since(now)?;
        (wait > self.policy.max_wait).then_some(wait)
    }

    fn remember_refusal(&self, key: &str, until: Instant) {
        let mut blocked = lock(&self.shared.blocked);
        let now = Instant::now();
        if blocked.len() >= self.policy.max_keys {
            blocked.retain(|_, until| *until > now);
        }
        blocked.insert(key.to_owned(), until);
    }

    /// The state of `request`'s key, made on its first request; the key is copied only then.
    fn key_state(&self, request: &Request) -> Arc<KeyState> {
        lock(&self.shared.keys).entry(
            &self.key,
            request,
            self.policy.max_keys,
            // A key no request holds and whose lease is spent or over is as good as new.
            |state| {
                Arc::strong_count(state) == 1
                    && lock(&state.lease)
                        .is_none_or(|lease| lease.left == 0 || lease.until <= Instant::now())
            },
            |key| KeyState {
                key: Arc::clone(key),
                lease: Mutex::new(None),
            },
        )
    }

    /// Spends a leased cell, if one is left and its lease has not ended.
    fn spend_lease(state: &KeyState, now: Instant) -> bool {
        match &mut *lock(&state.lease) {
            Some(lease) if lease.left > 0 && now < lease.until => {
                lease.left -= 1;
                true
            }
            _ => false,
        }
    }

    /// How many cells to ask Redis for.
    fn want(state: &KeyState, plan: &Plan) -> u32 {
        if plan.most <= 1 {
            return 1;
        }
        lock(&state.lease)
            .as_ref()
            .map_or(1, |lease| lease.next_want(plan.most))
    }

    /// Keeps a new lease of `cells` (one of them spent by the request that asked), asked for
    /// at `asked`: its lifetime counts from before Redis granted it. A lease still holding
    /// cells is replaced: its cells are dropped, as spent.
    fn keep_lease(state: &KeyState, cells: u32, asked: Instant, plan: &Plan) {
        if plan.most <= 1 {
            return;
        }
        *lock(&state.lease) = Some(Lease {
            left: cells.saturating_sub(1),
            granted: cells.max(1),
            until: asked + plan.lifetime,
        });
    }

    /// A turn: from a lease, else from Redis. `Ok(wait)` to go after `wait`,
    /// `Err(Some(wait))` refused, `Err(None)` refused because Redis is unreachable and the
    /// limiter fails closed.
    async fn take(&self, state: &KeyState) -> std::result::Result<Duration, Option<Duration>> {
        let now = Instant::now();
        let plan = self.plan();
        if plan.most > 1 && Self::spend_lease(state, now) {
            return Ok(Duration::ZERO);
        }
        let key = &*state.key;
        if let Some(wait) = self.known_refusal(key, now) {
            return Err(Some(wait));
        }
        let policy = &*self.policy;
        let micros = |duration: Duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let keys = [self.redis_key(key, "tat"), self.redis_key(key, "pause")];
        let args = [
            micros(policy.interval),
            plan.tolerance,
            micros(policy.max_wait),
            u64::from(Self::want(state, &plan)),
        ];
        match self
            .eval::<(u8, i64, u32)>("rate limit", TAKE, &keys, &args)
            .await
        {
            Ok((allowed, wait, cells)) => {
                let wait = Duration::from_micros(wait.max(0).unsigned_abs());
                if allowed == 1 {
                    if wait.is_zero() {
                        Self::keep_lease(state, cells, now, &plan);
                    }
                    Ok(wait)
                } else {
                    self.remember_refusal(key, now + wait);
                    Err(Some(wait))
                }
            }
            Err(err) => {
                tracing::warn!(key, error = %err, "rate limit store unreachable");
                #[cfg(feature = "metrics")]
                ::metrics::counter!("stopover.client.rate_limit.store_errors").increment(1);
                match &*self.unreachable {
                    Unreachable::FailClosed => Err(None),
                    Unreachable::Local(fallback) => {
                        let mut cells = lock(&self.shared.fallback);
                        if !cells.contains_key(key) && cells.len() >= fallback.max_keys {
                            cells.retain(|_, cell| !cell.is_idle(now));
                        }
                        cells
                            .entry(key.to_owned())
                            .or_insert_with(|| Cell::new(now))
                            .take(fallback, now)
                            .map_err(Some)
                    }
                }
            }
        }
    }

    async fn pause(&self, state: &KeyState, wait: Duration) {
        let key = &*state.key;
        let wait = wait.min(self.policy.retry_after_cap);
        tracing::info!(
            key,
            pause_ms = wait.as_millis() as u64,
            "rate limit paused by Retry-After"
        );
        #[cfg(feature = "metrics")]
        ::metrics::counter!("stopover.client.rate_limit.pauses").increment(1);
        if let Some(until) = Instant::now().checked_add(wait) {
            self.remember_refusal(key, until);
        }
        // Whatever this replica leased before the pause is not spent during it.
        *lock(&state.lease) = None;
        let micros = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
        let keys = [self.redis_key(key, "pause")];
        if let Err(err) = self.eval::<i64>("pause", PAUSE, &keys, &[micros]).await {
            tracing::warn!(key, error = %err, "rate limit store unreachable");
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change under these locks is one insert or assignment: nothing is left half-done.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Middleware for RedisRateLimit {
    async fn handle(&self, request: Request, next: Next) -> Result<Response> {
        let state = self.key_state(&request);
        match self.take(&state).await {
            Ok(wait) if wait.is_zero() => {}
            Ok(wait) => tokio::time::sleep(wait).await,
            Err(retry_after) => {
                tracing::debug!(key = &*state.key, "rate limit refused the request");
                #[cfg(feature = "metrics")]
                ::metrics::counter!("stopover.client.rate_limit.rejections").increment(1);
                let err = Error::rate_limited(retry_after).with_url(request.url().clone());
                return Err(match retry_after {
                    Some(_) => err,
                    None => err.with_message("the rate limit store is unreachable"),
                });
            }
        }
        let outcome = next.run(request).await;
        if self.policy.pause_on_retry_after {
            if let Ok(response) = &outcome {
                let status = response.status();
                if status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::SERVICE_UNAVAILABLE
                {
                    if let Some(wait) = retry_after_of(response.headers(), SystemTime::now()) {
                        self.pause(&state, wait).await;
                    }
                }
            }
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(policy: RateLimitPolicy) -> RedisRateLimit {
        // Opening a client connects to nothing.
        RedisRateLimit::new(::redis::Client::open("redis://127.0.0.1/").unwrap(), policy)
    }

    fn per_second(requests: u32, burst: u32) -> RateLimitPolicy {
        RateLimitPolicy::builder(requests, Duration::from_secs(1))
            .burst(burst)
            .build()
            .unwrap()
    }

    #[test]
    fn a_lease_doubles_when_spent_in_time_and_shrinks_to_what_was_spent() {
        let until = Instant::now();
        let lease = |granted, left| Lease {
            left,
            granted,
            until,
        };
        assert_eq!(lease(1, 0).next_want(16), 2);
        assert_eq!(lease(8, 0).next_want(16), 16);
        assert_eq!(lease(16, 0).next_want(16), 16);
        assert_eq!(lease(8, 5).next_want(16), 3);
        // One cell spent of a lease that ended: one at a time, nothing wasted.
        assert_eq!(lease(4, 3).next_want(16), 1);
    }

    #[test]
    fn leases_keep_a_lifetime_of_cells_out_of_the_burst() {
        // 1000 a second: a 100 ms lifetime holds 100 cells, a tenth of the burst.
        let plan = limit(per_second(1000, 1000)).plan();
        assert_eq!(plan.most, 16);
        assert_eq!(plan.tolerance, 1000 * (1000 - 1 - 100));
    }

    #[test]
    fn leases_are_off_when_a_lifetime_holds_more_than_a_quarter_of_the_burst() {
        // 20 a second, burst 5: 100 ms holds 2 cells, more than a quarter of 5.
        let plan = limit(per_second(20, 5)).plan();
        assert_eq!(plan.most, 1);
        assert_eq!(plan.tolerance, 50_000 * 4);
        // One a minute, burst 3: a single cell is already too much of the burst.
        let slow = RateLimitPolicy::builder(1, Duration::from_secs(60))
            .burst(3)
            .build()
            .unwrap();
        assert_eq!(limit(slow).plan().most, 1);
    }

    #[test]
    fn one_script_per_request_applies_the_whole_burst() {
        let plan = limit(per_second(1000, 1000))
            .one_script_per_request()
            .plan();
        assert_eq!(plan.most, 1);
        assert_eq!(plan.tolerance, 1000 * 999);
    }
}
