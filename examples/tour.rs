//! The tour: stopover's server stack on loopback, driven by a stopover client with middlewares,
//! and a transcript of what each middleware and layer did.
//!
//! Run it with `cargo run --example tour`; it exits by itself in a few seconds.

#[path = "support/digest_server.rs"]
mod digest_server;
#[path = "support/server_stack.rs"]
mod server_stack;

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use stopover::client::digest::DigestAuth;
use stopover::client::logging::Logging;
use stopover::client::retry::{Attempts, Retry, RetryPolicy};
use stopover::client::ssrf::Policy;
use stopover::client::token::{RefreshTokenSource, Token, TokenAuth, TokenCache};
use stopover::client::{Chain, Client, Next, Origin, Request, Response, from_fn};

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
            "/to-metadata",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, "http://169.254.169.254/latest/meta-data/")],
                )
            }),
        )
        .route(
            "/token",
            axum::routing::post(|| async {
                axum::Json(serde_json::json!({ "access_token": "fresh", "expires_in": 3600 }))
            }),
        )
        .route("/flaky-api", get(flaky_api))
        .merge(digest_server::Server::default().router());
    let server = server_stack::start_with(demo_routes).await?;
    let base = format!("http://{}/", server.addr);
    println!("server: forwarded -> CORS -> error -> timeout -> shield, on {base}\n");

    // The SSRF guard allows exactly the tour's own server, by address and port.
    let ssrf = Policy::builder().allow_addr(server.addr).build()?;
    let client = Client::builder()
        .base_url(&base)
        .timeout(Duration::from_secs(5))
        .ssrf_policy(ssrf)
        .middleware(from_fn(print_each_attempt))
        .build()?;

    println!("1. a plain request through a middleware that prints what goes on the wire");
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

    println!("9. the SSRF guard: a redirect to the metadata service is refused at the hop");
    let refused = client.get("to-metadata").send().await;
    if let Some(refusal) = refused.as_ref().err().and_then(|err| err.refusal()) {
        println!(
            "  refused before connecting: rule {}, hop {:?}",
            refusal.rule(),
            refusal.hop()
        );
    }
    println!();

    println!("10. logging, retry and token refresh on one client: a stale token, a flaky endpoint");
    // The client's Logging and Retry middlewares report through tracing: their events go to
    // stdout. The server's own events (its error layer logs each 5xx) stay out of the transcript.
    println!("  (the INFO lines are tracing events of the client's Logging and Retry middlewares)");
    tracing_subscriber::fmt()
        .with_env_filter("stopover::client=info")
        .with_target(false)
        .with_ansi(false)
        .without_time()
        .with_writer(std::io::stdout)
        .init();
    let policy = RetryPolicy::builder()
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .build()?;
    let source = RefreshTokenSource::new(&format!("{base}token"), "refresh-1")?;
    // The token's scope is named: the API's origin, never a URL a webhook user chose.
    let auth = TokenAuth::from_cache(Arc::new(
        TokenCache::new(source).with_token(Token::new("stale")),
    ))
    .origins([Origin::parse(&base)?]);
    // Outermost first: one log line per call, retries around token refresh, every attempt printed.
    let api_client = Client::builder()
        .base_url(&base)
        .ssrf_policy(Policy::builder().allow_addr(server.addr).build()?)
        .middleware(Logging::new())
        .middleware(Retry::new(policy))
        .middleware(auth)
        .middleware(from_fn(print_each_attempt))
        .build()?;
    let response = api_client.get("flaky-api").send().await?;
    let attempts = response.extensions().get::<Attempts>().map_or(0, |a| a.0);
    println!(
        "  [retry+token] {} after {attempts} attempt(s): 401 with the stale token, one refresh, \
         a 503, a retry\n",
        response.status()
    );

    println!(
        "11. digest authentication (RFC 7616) in a request-level list: DigestAuth, then the printer"
    );
    let digest_chain = Chain::new()
        .with(DigestAuth::new(
            digest_server::USER,
            digest_server::PASSWORD,
        ))
        .with(from_fn(print_each_attempt));
    for path in ["reports/daily", "reports/weekly"] {
        let response = client
            .get(path)
            .middlewares(digest_chain.clone())
            .send()
            .await?;
        println!("  {path} -> {}", response.status());
    }
    println!(
        "  (the first was challenged once and answered; the second was answered preemptively)\n"
    );

    println!("tour finished");
    Ok(())
}

/// Prints each attempt that reaches the wire: the innermost middleware sees them all.
async fn print_each_attempt(req: Request, next: Next) -> stopover::client::Result<Response> {
    let started = Instant::now();
    let line = format!("{} {} (hop {})", req.method(), req.url().path(), req.hop());
    let response = next.run(req).await;
    match &response {
        Ok(response) => println!(
            "  [wire] {line} -> {} in {:.1?}",
            response.status(),
            started.elapsed()
        ),
        Err(err) => println!("  [wire] {line} -> error: {err}"),
    }
    response
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
