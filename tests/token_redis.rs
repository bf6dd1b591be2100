//! The Redis token store against a real `redis-server` and several processes.
//!
//! Each test starts its own `redis-server` on a free 127.0.0.1 port and stops it by its pid.
//! Without `redis-server` the tests say so and pass, except under `CI=true`, where they fail
//! (`.ci/run` installs it). The fleet is this test binary started again with
//! `STOPOVER_FLEET_CHILD` set: each child runs [`fleet_child`], a client sharing the store,
//! and sends its requests at a wall-clock instant the parent picked.

mod support;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use stopover::client::token::redis::{RedisStoreError, RedisTokenStore, Unreachable};
use stopover::client::token::{RefreshTokenSource, TokenAuth, TokenCache, TokenError};
use stopover::client::{Client, Origin};
use tokio::time::Instant;

const CHILDREN: usize = 8;
const REQUESTS_PER_CHILD: usize = 50;
const FIRST_REFRESH_TOKEN: &str = "r0";

/// A `redis-server` of our own; killed when dropped.
struct RedisServer {
    port: u16,
    process: std::process::Child,
}

impl RedisServer {
    /// `None` (with a message) when `redis-server` is not installed and this is not CI.
    fn start() -> Option<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        match RedisServer::spawn(port) {
            Ok(server) => Some(server),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("redis-server is not installed; CI must install it (see .ci/run)");
                }
                eprintln!(
                    "SKIPPED: redis-server is not installed (Debian/Ubuntu: apt-get install redis-server)"
                );
                None
            }
            Err(err) => panic!("redis-server did not start: {err}"),
        }
    }

    fn spawn(port: u16) -> std::io::Result<RedisServer> {
        let process = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = RedisServer { port, process };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn stop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }

    /// Stops the server and starts a new, empty one on the same port.
    fn restart(&mut self) {
        self.stop();
        *self = RedisServer::spawn(self.port).expect("redis-server restarts");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A token endpoint that rotates refresh tokens and revokes the old one (a refresh with any
/// other than the last one is refused with `invalid_grant`), and an API accepting the tokens
/// it issued until they expire.
#[derive(Default)]
struct Issuer {
    calls: AtomicUsize,
    refused: AtomicUsize,
    /// `expires_in` of the first token, then of the others.
    lifetimes: (u64, u64),
    /// The first refresh hangs and reports its caller's `client_id`.
    hang_first: Mutex<Option<tokio::sync::oneshot::Sender<String>>>,
    state: Mutex<IssuerState>,
}

#[derive(Default)]
struct IssuerState {
    refresh_token: String,
    issued: HashMap<String, std::time::Instant>,
    callers: Vec<String>,
}

impl Issuer {
    fn new(lifetimes: (u64, u64)) -> Arc<Issuer> {
        let issuer = Issuer {
            lifetimes,
            ..Issuer::default()
        };
        issuer.state.lock().unwrap().refresh_token = FIRST_REFRESH_TOKEN.to_owned();
        Arc::new(issuer)
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    fn callers(&self) -> Vec<String> {
        self.state.lock().unwrap().callers.clone()
    }

    async fn serve(self: &Arc<Issuer>) -> SocketAddr {
        let app = Router::new()
            .route("/token", post(token))
            .route("/api", get(api))
            .with_state(self.clone());
        support::serve(app).await
    }
}

async fn token(State(issuer): State<Arc<Issuer>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let caller = form.get("client_id").cloned().unwrap_or_default();
    let call = issuer.calls.fetch_add(1, Ordering::SeqCst);
    issuer.state.lock().unwrap().callers.push(caller.clone());
    if call == 0 {
        let hang = issuer.hang_first.lock().unwrap().take();
        if let Some(report) = hang {
            let _ = report.send(caller);
            tokio::time::sleep(Duration::from_secs(120)).await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    let mut state = issuer.state.lock().unwrap();
    if form.get("refresh_token") != Some(&state.refresh_token) {
        issuer.refused.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/json")],
            r#"{"error":"invalid_grant"}"#,
        )
            .into_response();
    }
    let n = state.issued.len() + 1;
    let lifetime = if n == 1 {
        issuer.lifetimes.0
    } else {
        issuer.lifetimes.1
    };
    let access = format!("a{n}");
    state.refresh_token = format!("r{n}");
    state.issued.insert(
        access.clone(),
        std::time::Instant::now() + Duration::from_secs(lifetime),
    );
    let body = serde_json::json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "refresh_token": state.refresh_token,
    });
    ([("content-type", "application/json")], body.to_string()).into_response()
}

async fn api(State(issuer): State<Arc<Issuer>>, headers: HeaderMap) -> StatusCode {
    let presented = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let state = issuer.state.lock().unwrap();
    match presented.and_then(|token| state.issued.get(token)) {
        Some(expiry) if std::time::Instant::now() < *expiry => StatusCode::OK,
        _ => StatusCode::UNAUTHORIZED,
    }
}

/// The settings a child needs, passed through its environment.
struct Fleet {
    redis_url: String,
    prefix: String,
    addr: SocketAddr,
    /// Wall-clock milliseconds of each round of requests.
    rounds: Vec<u64>,
}

impl Fleet {
    fn new(redis: &RedisServer, addr: SocketAddr, rounds: Vec<u64>) -> Fleet {
        Fleet {
            redis_url: redis.url(),
            prefix: format!("test:{}:", now_ms()),
            addr,
            rounds,
        }
    }

    fn spawn_children(&self) -> Vec<tokio::process::Child> {
        let rounds: Vec<String> = self.rounds.iter().map(u64::to_string).collect();
        (0..CHILDREN)
            .map(|_| {
                tokio::process::Command::new(std::env::current_exe().unwrap())
                    .args(["fleet_child", "--exact", "--nocapture", "--test-threads=1"])
                    .env("STOPOVER_FLEET_CHILD", "1")
                    .env("FLEET_REDIS", &self.redis_url)
                    .env("FLEET_PREFIX", &self.prefix)
                    .env("FLEET_ADDR", self.addr.to_string())
                    .env("FLEET_ROUNDS", rounds.join(","))
                    .stdout(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .expect("the test binary starts again")
            })
            .collect()
    }
}

/// Waits for a child, bounded: a child that hangs fails the test.
async fn succeeded(child: &mut tokio::process::Child) -> bool {
    match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
        Ok(status) => status.unwrap().success(),
        Err(_) => {
            let _ = child.kill().await;
            panic!("a child process hung");
        }
    }
}

fn store(redis_url: &str, prefix: &str) -> stopover::client::token::redis::RedisTokenStoreBuilder {
    RedisTokenStore::builder(redis_url)
        .key_prefix(prefix)
        .lease(Duration::from_secs(2))
        .call_timeout(Duration::from_millis(300))
}

fn fleet_client(token_url: &str, store: RedisTokenStore, client_id: String) -> Client {
    let source = RefreshTokenSource::new(token_url, FIRST_REFRESH_TOKEN)
        .unwrap()
        .client_id(client_id);
    let cache = Arc::new(TokenCache::new(source).with_store(store));
    // The API and its token endpoint share one origin: the token's scope.
    let auth = TokenAuth::from_cache(cache).origins([Origin::parse(token_url).unwrap()]);
    Client::builder().middleware(auth).build().unwrap()
}

/// One member of the fleet (started by the tests below; does nothing when run by itself):
/// at each round's instant, sends 50 concurrent requests; fails unless all of them succeed.
#[test]
fn fleet_child() {
    if std::env::var_os("STOPOVER_FLEET_CHILD").is_none() {
        return;
    }
    let var = |name: &str| std::env::var(name).unwrap();
    let addr = var("FLEET_ADDR");
    let rounds: Vec<u64> = var("FLEET_ROUNDS")
        .split(',')
        .map(|at| at.parse().unwrap())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = store(&var("FLEET_REDIS"), &var("FLEET_PREFIX"))
            .build()
            .unwrap();
        let client = fleet_client(
            &format!("http://{addr}/token"),
            store,
            format!("pid-{}", std::process::id()),
        );
        for at in rounds {
            tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await;
            let requests = (0..REQUESTS_PER_CHILD).map(|_| {
                let (client, url) = (client.clone(), format!("http://{addr}/api"));
                tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
            });
            for request in futures_util::future::join_all(requests).await {
                let status = request.unwrap().expect("the request succeeds");
                assert_eq!(status, 200);
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_across_an_expiry_call_the_token_endpoint_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // The first token lives 1 s; its successor an hour.
    let issuer = Issuer::new((1, 3600));
    let addr = issuer.serve().await;
    let start = now_ms();
    let fleet = Fleet::new(&redis, addr, vec![start + 1500]);
    let parent = fleet_client(
        &format!("http://{addr}/token"),
        store(&fleet.redis_url, &fleet.prefix).build().unwrap(),
        "parent".into(),
    );
    let first = parent
        .get(format!("http://{addr}/api"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(issuer.calls(), 1);

    let mut children = fleet.spawn_children();
    for child in &mut children {
        assert!(succeeded(child).await, "a child's request failed");
    }
    // 400 requests, all after the first token expired: one refresh for all of them.
    assert_eq!(issuer.calls(), 2, "callers: {:?}", issuer.callers());
    assert_eq!(issuer.refused(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotating_endpoint_sees_no_refused_refresh_across_the_fleet() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // Every token lives 1 s (renewed after 0.5 s): each round needs a new one, and each
    // refresh revokes the refresh token the fleet had.
    let issuer = Issuer::new((1, 1));
    let addr = issuer.serve().await;
    let start = now_ms() + 1000;
    let fleet = Fleet::new(&redis, addr, vec![start, start + 1200, start + 2400]);
    let mut children = fleet.spawn_children();
    for child in &mut children {
        assert!(succeeded(child).await, "a child's request failed");
    }
    assert_eq!(issuer.refused(), 0, "callers: {:?}", issuer.callers());
    assert!(issuer.calls() >= 3, "one rotation per round at least");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holder_killed_mid_refresh_is_replaced_when_its_lease_ends() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let issuer = Issuer::new((3600, 3600));
    let (report, first_caller) = tokio::sync::oneshot::channel();
    *issuer.hang_first.lock().unwrap() = Some(report);
    let addr = issuer.serve().await;
    let fleet = Fleet::new(&redis, addr, vec![now_ms() + 1000]);
    let mut children = fleet.spawn_children();

    let holder = tokio::time::timeout(Duration::from_secs(30), first_caller)
        .await
        .expect("a child refreshes")
        .unwrap();
    let index = children
        .iter()
        .position(|child| Some(format!("pid-{}", child.id().unwrap())) == Some(holder.clone()))
        .expect("the refresher is one of the children");
    let mut holder_process = children.remove(index);
    holder_process.kill().await.unwrap(); // SIGKILL
    // A survivor that was still waiting when its 5 s wait limit ran out would fail: the
    // replacement has to come when the 2 s lease ends.
    for child in &mut children {
        assert!(succeeded(child).await, "a survivor's request failed");
    }
    let callers = issuer.callers();
    assert_eq!(callers.len(), 2, "one replacement refresh: {callers:?}");
    assert_ne!(callers[1], holder);
    assert_eq!(issuer.refused(), 0);
}

fn store_error(err: &stopover::client::Error) -> &RedisStoreError {
    let token = std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<TokenError>())
        .unwrap_or_else(|| panic!("not a token error: {err:?}"));
    let TokenError::Store(source) = token else {
        panic!("not a store error: {token:?}");
    };
    source
        .downcast_ref::<RedisStoreError>()
        .unwrap_or_else(|| panic!("not a Redis store error: {source:?}"))
}

/// Sends until a request succeeds (the connection comes back in the background), bounded.
async fn eventually_ok(client: &Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.get(url).send().await {
            Ok(response) if response.status() == 200 => return,
            outcome => assert!(
                Instant::now() < deadline,
                "no success after Redis came back: {outcome:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_only_requests_needing_a_new_token_and_recovers() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let issuer = Issuer::new((2, 2));
    let addr = issuer.serve().await;
    let api = format!("http://{addr}/api");
    let client = fleet_client(
        &format!("http://{addr}/token"),
        store(&redis.url(), "down:").build().unwrap(),
        "parent".into(),
    );
    assert_eq!(client.get(&api).send().await.unwrap().status(), 200);

    redis.stop();
    // A fresh token needs no Redis.
    assert_eq!(client.get(&api).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Expired: the refresh needs Redis, and fails with a typed error instead of hanging.
    let err = tokio::time::timeout(Duration::from_secs(10), client.get(&api).send())
        .await
        .expect("no hang while Redis is down")
        .unwrap_err();
    assert!(matches!(
        store_error(&err),
        RedisStoreError::Redis { .. } | RedisStoreError::Timeout { .. }
    ));
    assert_eq!(issuer.calls(), 1, "no refresh behind the fleet's back");

    redis.restart();
    eventually_ok(&client, &api).await;
    assert_eq!(issuer.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_with_local_refresh_keeps_requests_working() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let issuer = Issuer::new((1, 1));
    let addr = issuer.serve().await;
    let api = format!("http://{addr}/api");
    let store = store(&redis.url(), "local:")
        .when_unreachable(Unreachable::RefreshLocally)
        .build()
        .unwrap();
    let client = fleet_client(&format!("http://{addr}/token"), store, "parent".into());
    assert_eq!(client.get(&api).send().await.unwrap().status(), 200);

    redis.stop();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = tokio::time::timeout(Duration::from_secs(10), client.get(&api).send())
        .await
        .expect("no hang while Redis is down")
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(issuer.calls(), 2);
    assert_eq!(issuer.refused(), 0);
}
