//! One token for a fleet: several worker processes share their bearer token through Redis, so
//! the token endpoint sees one refresh per expiry instead of one per worker, and a refresh
//! token that rotates on every use keeps working.
//!
//! ```sh
//! cargo run --example fleet_tokens --features redis
//! ```
//!
//! It starts its own `redis-server` on a free loopback port (or uses `REDIS_URL` if set), a
//! local token endpoint that rotates and revokes refresh tokens, an API, and four workers (this
//! program again, with `worker` as its argument). Tokens live two seconds; each worker sends
//! 25 requests at once, four times, a second apart; then the refresh count is printed.
//!
//! Warning: Redis holds the tokens in clear. Give it the same protection as the token
//! endpoint's credentials (ACLs, a private network).

use std::collections::HashMap;
use std::net::SocketAddr;
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
use stopover::client::token::redis::RedisTokenStore;
use stopover::client::token::{RefreshTokenSource, TokenAuth, TokenCache};
use stopover::client::{Client, Origin};

const WORKERS: usize = 4;
const ROUNDS: u64 = 4;
const REQUESTS: usize = 25;
const TOKEN_LIFETIME_SECS: u64 = 2;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") {
        return worker(&args[2], &args[3], args[4].parse()?).await;
    }

    // Redis: the user's, or one of our own.
    let (redis_url, mut own_redis) = match std::env::var("REDIS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let spawned = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn();
            match spawned {
                Ok(child) => (format!("redis://127.0.0.1:{port}/"), Some(child)),
                Err(_) => {
                    eprintln!(
                        "This example needs Redis, and `redis-server` is not installed.\n\
                         Install it (Debian/Ubuntu: `sudo apt-get install redis-server`; macOS: \
                         `brew install redis`), or point REDIS_URL at a running Redis:\n  \
                         REDIS_URL=redis://127.0.0.1:6379/ cargo run --example fleet_tokens --features redis"
                    );
                    std::process::exit(1);
                }
            }
        }
    };
    if let Some(port) = redis_url
        .strip_prefix("redis://127.0.0.1:")
        .and_then(|rest| rest.trim_end_matches('/').parse::<u16>().ok())
    {
        // Wait for our own server to listen.
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let issuer = Arc::new(Issuer::default());
    let app = Router::new()
        .route("/token", post(token))
        .route("/api", get(api))
        .with_state(issuer.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    let prefix = format!("fleet-example:{}:", now_ms());
    let start = now_ms() + 1000;
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        workers.push(
            tokio::process::Command::new(std::env::current_exe()?)
                .args(["worker", &redis_url, &prefix, &addr.to_string()])
                .env("FLEET_START_MS", start.to_string())
                .kill_on_drop(true)
                .spawn()?,
        );
    }
    let mut all_ok = true;
    for worker in &mut workers {
        all_ok &= tokio::time::timeout(Duration::from_secs(60), worker.wait())
            .await??
            .success();
    }
    if let Some(redis) = &mut own_redis {
        let _ = redis.kill();
        let _ = redis.wait();
    }

    let refreshes = issuer.refreshes.load(Ordering::SeqCst);
    let refused = issuer.refused.load(Ordering::SeqCst);
    println!(
        "{WORKERS} workers x {ROUNDS} rounds x {REQUESTS} requests: {} token endpoint calls \
         ({refused} refused), where one process per worker would have made up to {}",
        refreshes + refused,
        WORKERS as u64 * ROUNDS,
    );
    if !all_ok || refused > 0 {
        return Err("a worker failed or a refresh was refused".into());
    }
    Ok(())
}

/// One replica: a client whose token lives in Redis, sending rounds of concurrent requests.
async fn worker(
    redis_url: &str,
    prefix: &str,
    addr: SocketAddr,
) -> Result<(), Box<dyn std::error::Error>> {
    let start: u64 = std::env::var("FLEET_START_MS")?.parse()?;
    let store = RedisTokenStore::builder(redis_url)
        .key_prefix(prefix)
        .build()?;
    // Every worker starts with the same refresh token; after the first rotation the one in
    // Redis is the one that counts.
    let source = RefreshTokenSource::new(&format!("http://{addr}/token"), "refresh-0")?;
    let cache = Arc::new(TokenCache::new(source).with_store(store));
    let auth = TokenAuth::from_cache(cache).origins([Origin::parse(&format!("http://{addr}/"))?]);
    let client = Client::builder().middleware(auth).build()?;
    let mut ok = 0;
    for round in 0..ROUNDS {
        let at = start + round * 1000;
        tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await;
        let requests = (0..REQUESTS).map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get(format!("http://{addr}/api")).send().await })
        });
        for request in futures_util::future::join_all(requests).await {
            if request?.map(|response| response.status() == 200)? {
                ok += 1;
            }
        }
    }
    println!(
        "worker {}: {ok}/{} requests answered 200",
        std::process::id(),
        ROUNDS as usize * REQUESTS
    );
    Ok(())
}

/// A token endpoint that rotates the refresh token on every use and refuses an old one.
#[derive(Default)]
struct Issuer {
    refreshes: AtomicUsize,
    refused: AtomicUsize,
    state: Mutex<HashMap<String, std::time::Instant>>,
}

async fn token(State(issuer): State<Arc<Issuer>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    // One refresh at a time, as a real endpoint's database would serialise them.
    let mut issued = issuer.state.lock().unwrap_or_else(|e| e.into_inner());
    let n = issuer.refreshes.load(Ordering::SeqCst);
    let expected = format!("refresh-{n}");
    if form.get("refresh_token") != Some(&expected) {
        issuer.refused.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::BAD_REQUEST, r#"{"error":"invalid_grant"}"#).into_response();
    }
    let n = issuer.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
    let access = format!("access-{n}");
    issued.insert(
        access.clone(),
        std::time::Instant::now() + Duration::from_secs(TOKEN_LIFETIME_SECS),
    );
    let body = serde_json::json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME_SECS,
        "refresh_token": format!("refresh-{n}"),
    });
    ([("content-type", "application/json")], body.to_string()).into_response()
}

async fn api(State(issuer): State<Arc<Issuer>>, headers: HeaderMap) -> StatusCode {
    let token = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let issued = issuer.state.lock().unwrap_or_else(|e| e.into_inner());
    match token.and_then(|token| issued.get(token)) {
        Some(expiry) if std::time::Instant::now() < *expiry => StatusCode::OK,
        _ => StatusCode::UNAUTHORIZED,
    }
}
