//! Refreshing access tokens three ways: on a 401, before expiry, and in the background.
//!
//! The aiohttp cookbook's recipes for this deadlock when installed on the whole session (the
//! refresh request re-enters the middleware and waits on the lock its caller holds), and on a
//! second 401 return the refresh endpoint's response instead of the API's. Here the middleware
//! sits on the whole client, the refresh goes through the same client without middleware, and
//! concurrent requests share one refresh.
//!
//! Warning: a token is a credential. `TokenAuth` sends it only to the origins you name with
//! `origins(..)` (without them, to the client's base URL origin; with neither, the client is not
//! built), so neither a request to another origin on the same client nor a redirect elsewhere
//! carries it.
//!
//! Run it with `cargo run --example token_refresh`; it finishes in about five seconds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use stopover::client::token::{
    BackgroundRefresh, RefreshTokenSource, Token, TokenAuth, TokenCache,
};
use stopover::client::{Client, Origin};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    on_401().await?;
    on_expiry().await?;
    in_the_background().await?;
    Ok(())
}

/// The token we hold was revoked: the first 401 triggers one refresh, shared by every request
/// that saw the same 401, and each request is replayed once.
async fn on_401() -> Result<(), Box<dyn std::error::Error>> {
    println!("1. refresh on 401");
    let server = AuthServer::start(3600).await?;
    let source = RefreshTokenSource::new(&server.url("/token"), "refresh-0")?
        .on_rotate(|rotated| println!("   persisted the rotated refresh token {rotated:?}"));
    let cache = TokenCache::new(source).with_token(Token::new("revoked-token"));
    // The token goes to the API's origin and nowhere else.
    let auth = TokenAuth::from_cache(Arc::new(cache)).origins([Origin::parse(&server.url("/"))?]);
    let client = Client::builder().middleware(auth).build()?;
    let requests: Vec<_> = (0..10)
        .map(|_| {
            let (client, url) = (client.clone(), server.url("/api"));
            tokio::spawn(async move { client.get(url).send().await.map(|r| r.status()) })
        })
        .collect();
    for request in requests {
        request.await??;
    }
    println!(
        "   10 concurrent requests, {} answered 401, {} refresh(es)\n",
        server.state.rejected.load(Ordering::SeqCst),
        server.state.issued.load(Ordering::SeqCst)
    );
    Ok(())
}

/// The token says when it expires: a request that finds it within the skew of its expiry
/// refreshes first, so the API never sees the stale token.
async fn on_expiry() -> Result<(), Box<dyn std::error::Error>> {
    println!("2. refresh before expiry (tokens live 2 s, renewed within 1 s of expiry)");
    let server = AuthServer::start(2).await?;
    let source = RefreshTokenSource::new(&server.url("/token"), "refresh-0")?;
    let cache = TokenCache::new(source).skew(Duration::from_secs(1));
    // The token goes to the API's origin and nowhere else.
    let auth = TokenAuth::from_cache(Arc::new(cache)).origins([Origin::parse(&server.url("/"))?]);
    let client = Client::builder().middleware(auth).build()?;
    for round in 1..=3 {
        let status = client.get(server.url("/api")).send().await?.status();
        println!(
            "   request {round}: {status} with {}",
            server.state.last_seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    println!(
        "   {} refresh(es), {} request(s) refused\n",
        server.state.issued.load(Ordering::SeqCst),
        server.state.rejected.load(Ordering::SeqCst)
    );
    Ok(())
}

/// A task renews the token ahead of expiry; the first request waits for the first token; the
/// renewals stop when the refresher is dropped.
async fn in_the_background() -> Result<(), Box<dyn std::error::Error>> {
    println!("3. refresh in the background (tokens live 2 s, renewed 1 s ahead)");
    let server = AuthServer::start(2).await?;
    let source = RefreshTokenSource::new(&server.url("/token"), "refresh-0")?;
    let auth = TokenAuth::from_cache(Arc::new(
        TokenCache::new(source).skew(Duration::from_secs(1)),
    ))
    .origins([Origin::parse(&server.url("/"))?]);
    let client = Client::builder().middleware(auth.clone()).build()?;
    let refresher = BackgroundRefresh::spawn(auth.cache(), client.clone());
    let status = client.get(server.url("/api")).send().await?.status();
    println!("   first request: {status}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let renewed = server.state.issued.load(Ordering::SeqCst);
    println!(
        "   after 2.5 s: {renewed} token(s) issued: the first one shared with that request, {} \
         renewed ahead of expiry with no request waiting",
        renewed.saturating_sub(1)
    );
    drop(refresher);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    println!(
        "   refresher dropped; 1.5 s later still {} token(s)",
        server.state.issued.load(Ordering::SeqCst)
    );
    Ok(())
}

/// A token endpoint issuing `token-N` (valid for `lifetime` seconds, rotating the refresh token)
/// and an API accepting only the newest token.
struct AuthServer {
    addr: SocketAddr,
    state: Arc<AuthState>,
}

#[derive(Default)]
struct AuthState {
    lifetime: u64,
    issued: AtomicUsize,
    rejected: AtomicUsize,
    current: Mutex<String>,
    last_seen: Mutex<String>,
}

impl AuthServer {
    async fn start(lifetime: u64) -> std::io::Result<AuthServer> {
        let state = Arc::new(AuthState {
            lifetime,
            ..AuthState::default()
        });
        let app = Router::new()
            .route("/token", post(issue))
            .route("/api", get(api))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("server stopped: {err}");
            }
        });
        Ok(AuthServer { addr, state })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

async fn issue(State(state): State<Arc<AuthState>>) -> impl IntoResponse {
    let n = state.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let token = format!("token-{n}");
    *state.current.lock().unwrap() = token.clone();
    Json(serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": state.lifetime,
        "refresh_token": format!("refresh-{n}"),
    }))
}

async fn api(State(state): State<Arc<AuthState>>, headers: HeaderMap) -> StatusCode {
    let sent = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .trim_start_matches("Bearer ")
        .to_owned();
    let accepted = sent == *state.current.lock().unwrap();
    *state.last_seen.lock().unwrap() = sent;
    if accepted {
        StatusCode::OK
    } else {
        state.rejected.fetch_add(1, Ordering::SeqCst);
        StatusCode::UNAUTHORIZED
    }
}
