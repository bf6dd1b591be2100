//! The clients the loopback benchmarks compare, built the same way in every benchmark.
//!
//! - `reqwest`: `reqwest::Client::new()`.
//! - `reqwest-middleware + reqwest-retry`: `RetryTransientMiddleware`, exponential backoff,
//!   3 retries.
//! - the like-for-like peer: `TracingMiddleware::default()` (reqwest-tracing), then the same
//!   retry middleware, then [`BearerToken`], a bearer-token middleware written as
//!   reqwest-middleware's documentation shows one (an `async_trait` struct reading a shared
//!   token); against stopover's full stack, in the same order.
//! - stopover with `Logging`, `Retry` (4 attempts in all), `TokenAuth` (a static token from
//!   `source_fn`) and the SSRF guard (one `allow_addr` rule for the server's address and port).
//! - stopover with no middleware, and with the SSRF guard only.
//!
//! No tracing subscriber is installed in any benchmark, so the spans and events of
//! reqwest-tracing, reqwest-retry and stopover's `Logging` are created and dropped unrecorded.

// Shared by every bench; not each uses every helper.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use stopover::client::logging::Logging;
use stopover::client::retry::{Retry, RetryPolicy};
use stopover::client::ssrf::Policy;
use stopover::client::token::{Token, TokenAuth, TokenSource, source_fn};

/// Attempts in all for every retrying client (the first one included).
pub const ATTEMPTS: u32 = 4;

/// The row names, so that every table spells them alike.
pub const REQWEST: &str = "reqwest";
pub const PEER_RETRY: &str = "reqwest-middleware + reqwest-retry";
pub const PEER_FULL: &str = "reqwest-middleware: tracing, retry, bearer token";
pub const STOPOVER_FULL: &str = "stopover: retry, logging, token, SSRF guard";
pub const STOPOVER_NONE: &str = "stopover, no middleware";
pub const STOPOVER_GUARD: &str = "stopover, SSRF guard only";
pub const STOPOVER_RETRY: &str = "stopover: retry";
pub const STOPOVER_LOGGING: &str = "stopover: logging";
pub const STOPOVER_TOKEN: &str = "stopover: token";

/// Where a task's GETs go.
#[derive(Clone)]
pub enum Urls {
    /// Every request to this URL.
    Same(String),
    /// Request `i` to `<base>?n=i`.
    Numbered(String),
}

/// A client under test.
#[derive(Clone)]
pub enum Stack {
    Reqwest(reqwest::Client),
    Peer(&'static str, reqwest_middleware::ClientWithMiddleware),
    Stopover(&'static str, stopover::client::Client),
}

impl Stack {
    pub fn name(&self) -> &'static str {
        match self {
            Stack::Reqwest(_) => REQWEST,
            Stack::Peer(name, _) | Stack::Stopover(name, _) => name,
        }
    }

    /// A GET whose answer must be a success with the body `hello`.
    pub async fn get(&self, url: &str) {
        let (status, body) = self.send(Method::GET, url, None).await;
        assert!(status.is_success(), "{} answered {status}", self.name());
        assert_eq!(&body[..], b"hello");
    }

    /// Spawns one task that sends a GET for each `i` in `requests`, one after the other, each
    /// answer checked as by [`Stack::get`]. The task's future is this client's own (one loop
    /// per kind of client), so each task is as large as that client makes it.
    pub fn spawn_gets(
        &self,
        tasks: &mut tokio::task::JoinSet<()>,
        requests: std::ops::Range<usize>,
        urls: Urls,
    ) {
        async fn check(name: &str, status: StatusCode, body: Bytes) {
            assert!(status.is_success(), "{name} answered {status}");
            assert_eq!(&body[..], b"hello");
        }
        // One loop written once, expanded per client type, so that each task keeps its own type.
        macro_rules! gets {
            ($name:expr, $client:expr) => {{
                let (name, client) = ($name, $client);
                tasks.spawn(async move {
                    for i in requests {
                        let request = match &urls {
                            Urls::Same(url) => client.get(url.as_str()),
                            Urls::Numbered(base) => client.get(format!("{base}?n={i}")),
                        };
                        let response = request.send().await.expect("answered");
                        let status = response.status();
                        check(name, status, response.bytes().await.expect("a body")).await;
                    }
                })
            }};
        }
        match self.clone() {
            Stack::Reqwest(client) => gets!(REQWEST, client),
            Stack::Peer(name, client) => gets!(name, client),
            Stack::Stopover(name, client) => gets!(name, client),
        };
    }

    /// The size of the future `send()` returns for a GET (never polled): what a caller's task
    /// holds while the request is in flight, besides what the middlewares box.
    pub fn send_future_bytes(&self, url: &str) -> usize {
        match self {
            Stack::Reqwest(client) => std::mem::size_of_val(&client.get(url).send()),
            Stack::Peer(_, client) => std::mem::size_of_val(&client.get(url).send()),
            Stack::Stopover(_, client) => std::mem::size_of_val(&client.get(url).send()),
        }
    }

    /// Sends one request with an optional buffered body; the status and the whole body.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<Bytes>,
    ) -> (StatusCode, Bytes) {
        match self {
            Stack::Reqwest(client) => {
                let mut request = client.request(method, url);
                if let Some(body) = body {
                    request = request.body(body);
                }
                let response = request.send().await.expect("answered");
                let status = response.status();
                (status, response.bytes().await.expect("a body"))
            }
            Stack::Peer(_, client) => {
                let mut request = client.request(method, url);
                if let Some(body) = body {
                    request = request.body(body);
                }
                let response = request.send().await.expect("answered");
                let status = response.status();
                (status, response.bytes().await.expect("a body"))
            }
            Stack::Stopover(_, client) => {
                let mut request = client.request(method, url);
                if let Some(body) = body {
                    request = request.body(body);
                }
                let response = request.send().await.expect("answered");
                let status = response.status();
                (status, response.bytes().await.expect("a body"))
            }
        }
    }
}

/// A bearer-token middleware as reqwest-middleware's documentation shows one: an `async_trait`
/// struct that reads the current token from shared state and sets `Authorization`. It is
/// given the benefit of the doubt: the header value is built once, when the token is set, not
/// formatted per request. It has no refresh on a 401.
pub struct BearerToken {
    header: Arc<RwLock<HeaderValue>>,
}

impl BearerToken {
    pub fn new(token: &str) -> BearerToken {
        let mut value = HeaderValue::try_from(format!("Bearer {token}")).expect("a header value");
        value.set_sensitive(true);
        BearerToken {
            header: Arc::new(RwLock::new(value)),
        }
    }
}

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for BearerToken {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let value = self.header.read().expect("the token lock").clone();
        req.headers_mut().insert(header::AUTHORIZATION, value);
        next.run(req, extensions).await
    }
}

/// Exponential backoff between `min` and `max` (reqwest-retry's default: 1 s to 30 min).
fn peer_backoff(
    backoff: Option<Duration>,
) -> reqwest_retry::RetryTransientMiddleware<reqwest_retry::policies::ExponentialBackoff> {
    let mut builder = reqwest_retry::policies::ExponentialBackoff::builder();
    if let Some(max) = backoff {
        builder = builder.retry_bounds(Duration::ZERO, max);
    }
    reqwest_retry::RetryTransientMiddleware::new_with_policy(
        builder.build_with_max_retries(ATTEMPTS - 1),
    )
}

/// reqwest-middleware with reqwest-retry; `backoff` sets both bounds' maximum (`None`: the
/// crate's defaults).
pub fn peer_retry(backoff: Option<Duration>) -> Stack {
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(peer_backoff(backoff))
        .build();
    Stack::Peer(PEER_RETRY, client)
}

/// The like-for-like peer: tracing, retry, bearer token.
pub fn peer_full(backoff: Option<Duration>) -> Stack {
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(reqwest_tracing::TracingMiddleware::default())
        .with(peer_backoff(backoff))
        .with(BearerToken::new("bench-token"))
        .build();
    Stack::Peer(PEER_FULL, client)
}

/// stopover's retry policy; `backoff` is the maximum (the base is zero) when given, else
/// stopover's default (100 ms to 10 s), with the default budget, or none when `backoff` is set
/// (reqwest-retry has no budget).
fn stopover_retry_policy(backoff: Option<Duration>) -> RetryPolicy {
    let mut builder = RetryPolicy::builder().max_attempts(ATTEMPTS);
    if let Some(max) = backoff {
        builder = builder.backoff(Duration::ZERO, max).no_budget();
    }
    builder.build().expect("a valid retry policy")
}

/// The guard lets this one server's address and port through, as a deployment would allow one
/// internal service.
pub fn guard(server: SocketAddr) -> Policy {
    Policy::builder()
        .allow_addr(server)
        .build()
        .expect("a valid SSRF policy")
}

/// stopover with retry, logging, token and the SSRF guard.
pub fn stopover_full(server: SocketAddr, backoff: Option<Duration>) -> Stack {
    let client = stopover::client::Client::builder()
        .ssrf_policy(guard(server))
        .middleware(Logging::new())
        .middleware(Retry::new(stopover_retry_policy(backoff)))
        .middleware(token_auth(server))
        .build()
        .expect("the client builds");
    Stack::Stopover(STOPOVER_FULL, client)
}

/// stopover with `Retry` alone.
pub fn stopover_retry(backoff: Option<Duration>) -> Stack {
    let client = stopover::client::Client::builder()
        .middleware(Retry::new(stopover_retry_policy(backoff)))
        .build()
        .expect("the client builds");
    Stack::Stopover(STOPOVER_RETRY, client)
}

/// stopover with `Logging` alone.
pub fn stopover_logging() -> Stack {
    let client = stopover::client::Client::builder()
        .middleware(Logging::new())
        .build()
        .expect("the client builds");
    Stack::Stopover(STOPOVER_LOGGING, client)
}

/// `TokenAuth` with a static token from `source_fn`, scoped to the benchmark's server.
pub fn token_auth(server: SocketAddr) -> TokenAuth<impl TokenSource> {
    TokenAuth::new(source_fn(|_client| async { Ok(Token::new("bench-token")) })).origins([
        stopover::client::Origin::parse(&format!("http://{server}/")).expect("a valid origin"),
    ])
}

/// stopover with `TokenAuth` alone (a static token from `source_fn`).
pub fn stopover_token(server: SocketAddr) -> Stack {
    let client = stopover::client::Client::builder()
        .middleware(token_auth(server))
        .build()
        .expect("the client builds");
    Stack::Stopover(STOPOVER_TOKEN, client)
}

pub fn stopover_none() -> Stack {
    Stack::Stopover(STOPOVER_NONE, stopover::client::Client::new())
}

pub fn stopover_guard(server: SocketAddr) -> Stack {
    let client = stopover::client::Client::builder()
        .ssrf_policy(guard(server))
        .build()
        .expect("the client builds");
    Stack::Stopover(STOPOVER_GUARD, client)
}

pub fn reqwest() -> Stack {
    Stack::Reqwest(reqwest::Client::new())
}
