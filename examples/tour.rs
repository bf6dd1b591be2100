//! The tour: layover's server stack on loopback, driven by a layover client with middlewares,
//! and a transcript of what each middleware and layer did.
//!
//! Run it with `cargo run --example tour`; it exits by itself in a few seconds.

#[path = "support/server_stack.rs"]
mod server_stack;

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use layover::client::retry::{Attempts, Retry, RetryPolicy};
use layover::client::token::{RefreshTokenSource, Token, TokenAuth, TokenCache};
use layover::client::{Client, Next, Request, Response, from_fn};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::panic::set_hook(Box::new(|_| {
        println!("  [server] a handler panicked: logged, never sent to the client");
    }));
    let demo_routes = Router::new()
        .route(
            "/old-place",
            get(|| async {
                (
                    StatusCode::MOVED_PERMANENTLY,
                    [(header::LOCATION, "/hello")],
                )
            }),
        )
        .route(
            "/token",
            axum::routing::post(|| async {
                axum::Json(serde_json::json!({ "access_token": "fresh", "expires_in": 3600 }))
            }),
        )
        .route("/flaky-api", get(flaky_api));
    let server = server_stack::start_with(demo_routes).await?;
    let base = format!("http://{}/", server.addr);
    println!("server: forwarded -> CORS -> error -> timeout -> shield, on {base}\n");

    let client = Client::builder()
        .base_url(&base)
        .timeout(Duration::from_secs(5))
        .middleware(from_fn(|req: Request, next: Next| async move {
            let started = Instant::now();
            let line = format!("{} {} (hop {})", req.method(), req.url().path(), req.hop());
            let response = next.run(req).await;
            match &response {
                Ok(response) => println!(
                    "  [log] {line} -> {} in {:.1?}",
                    response.status(),
                    started.elapsed()
                ),
                Err(err) => println!("  [log] {line} -> error: {err}"),
            }
            response
        }))
        .build()?;

    println!("1. a plain request through the logging middleware");
    let text = client.get("hello").send().await?.text().await?;
    println!("  body: {text:?}\n");

    println!("2. a redirect: the client chain runs once per hop");
    let response = client.get("old-place").send().await?;
    println!(
        "  landed on {} after {} redirect(s)\n",
        response.url().path(),
        response.history().len()
    );

    println!("3. the request-level list replaces the client's: an empty one runs none");
    let response = client.get("hello").no_middleware().send().await?;
    println!("  status {} and no log line above\n", response.status());

    println!("4. a middleware that answers by itself, added with extend_middleware");
    let response = client
        .get("hello")
        .extend_middleware(from_fn(|req: Request, _next: Next| async move {
            println!("  [cache] answering {} from memory", req.url().path());
            let cached = http::Response::new("cached hello");
            Ok(Response::from_http(cached, req.url().clone()))
        }))
        .send()
        .await?;
    println!("  body: {:?}\n", response.text().await?);

    println!(
        "5. the server's error layer: JSON for 404, handler errors, panics; 504 from the timeout"
    );
    for path in ["nope", "items/7", "panic", "slow"] {
        let response = client.get(path).send().await?;
        println!("  body: {}", response.text().await?);
    }
    println!();

    println!("6. the server's CORS layer grants the app's origin only");
    for origin in [server_stack::APP_ORIGIN, "https://evil.example"] {
        let response = client.get("hello").header("origin", origin).send().await?;
        println!(
            "  Origin: {origin} -> Access-Control-Allow-Origin: {:?}",
            response.headers().get("access-control-allow-origin")
        );
    }
    println!();

    println!("7. forwarded: the loopback proxy is trusted, so the handler sees https");
    let response = client
        .get("scheme")
        .header("x-forwarded-proto", "https")
        .send()
        .await?;
    println!("  {}\n", response.text().await?);

    println!("8. shield: the client gives up after 50 ms, the order is stored anyway");
    let gave_up = client
        .post("orders")
        .timeout(Duration::from_millis(50))
        .send()
        .await;
    println!(
        "  client: {}",
        gave_up.err().map(|err| err.to_string()).unwrap_or_default()
    );
    server.shield.shutdown().await;
    println!(
        "  orders stored: {}\n",
        server.orders_stored.load(Ordering::SeqCst)
    );

    println!("9. retry and token refresh on one client: a stale token and a flaky endpoint");
    let policy = RetryPolicy::builder()
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .build()?;
    let source = RefreshTokenSource::new(&format!("{base}token"), "refresh-1")?;
    let auth = TokenAuth::from_cache(Arc::new(
        TokenCache::new(source).with_token(Token::new("stale")),
    ));
    let client = Client::builder()
        .base_url(&base)
        .middleware(Retry::new(policy))
        .middleware(auth)
        .build()?;
    let response = client.get("flaky-api").send().await?;
    let attempts = response.extensions().get::<Attempts>().map_or(0, |a| a.0);
    println!(
        "  [retry+token] {} after {attempts} attempt(s): 401 with the stale token, one refresh, \
         a 503, a retry\n",
        response.status()
    );

    println!("tour finished");
    Ok(())
}

/// Accepts only the token `fresh`, and fails the first request that carries it with a 503.
async fn flaky_api(headers: axum::http::HeaderMap) -> StatusCode {
    static ACCEPTED: AtomicUsize = AtomicUsize::new(0);
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if bearer != Some("Bearer fresh") {
        return StatusCode::UNAUTHORIZED;
    }
    if ACCEPTED.fetch_add(1, Ordering::SeqCst) == 0 {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}
