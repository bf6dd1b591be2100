//! Retrying a flaky server, without the failures of the cookbook's retry loop.
//!
//! The aiohttp cookbook's recipe resends any request three times, with no wait, whatever the
//! method, and leaves the responses it throws away holding their connections. This one retries
//! only idempotent requests (or those carrying an `Idempotency-Key`), waits as the server asks
//! with `Retry-After` or backs off with jitter, and says how many attempts each answer took.
//!
//! Warning: keep the attempts bounded and the retry budget on. A retry loop around an upstream
//! that is down multiplies its load exactly when it can least take it.
//!
//! Run it with `cargo run --example retry`; it finishes in about two seconds.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bytes::Bytes;
use stopover::client::retry::{Attempts, GaveUp, Retry, RetryPolicy};
use stopover::client::{Body, Client, Response};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hits = Arc::new(AtomicUsize::new(0));
    let addr = start_server(Arc::clone(&hits)).await?;
    let policy = RetryPolicy::builder()
        .max_attempts(3)
        .backoff(Duration::from_millis(100), Duration::from_secs(1))
        .retry_after_cap(Duration::from_secs(5))
        .total_deadline(Duration::from_secs(10))
        .build()?;
    let client = Client::builder()
        .base_url(format!("http://{addr}/"))
        .middleware(Retry::new(policy))
        .build()?;

    println!("1. a GET to a server that fails twice with 503, then answers");
    report(client.get("flaky").send().await?, &hits);
    println!();

    println!("2. a GET answered 429 with `Retry-After: 1`: the retry waits a second");
    let started = std::time::Instant::now();
    let response = client.get("rate-limited").send().await?;
    report(response, &hits);
    println!("   waited {:.1?} in all\n", started.elapsed());

    println!("3. a POST to a failing server: sent once, never duplicated");
    report(client.post("charge").body("amount=10").send().await?, &hits);
    println!();

    println!("4. the same POST with an Idempotency-Key: retried");
    let response = client
        .post("charge")
        .header("Idempotency-Key", "order-42")
        .body("amount=10")
        .send()
        .await?;
    report(response, &hits);
    println!();

    println!("5. a PUT with a streaming body longer than its replay cap: not resent");
    let chunks = futures_util::stream::iter(
        ["a streamed ", "document"].map(|part| Ok::<_, std::io::Error>(Bytes::from(part))),
    );
    let body = Body::wrap_stream_replayable(chunks, 8);
    report(client.put("charge").body(body).send().await?, &hits);
    println!();
    println!("6. a GET to a port nobody listens on: connect errors are retried, then returned");
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    match client.get(format!("http://{dead}/")).send().await {
        Ok(response) => println!("   -> unexpected {}", response.status()),
        Err(err) => println!("   -> {err}"),
    }
    Ok(())
}

fn report(response: Response, hits: &AtomicUsize) {
    let attempts = response.extensions().get::<Attempts>().map_or(0, |a| a.0);
    let gave_up = response
        .extensions()
        .get::<GaveUp>()
        .map(|reason| format!(", not retried: {reason:?}"))
        .unwrap_or_default();
    println!(
        "   -> {} after {attempts} attempt(s){gave_up}; the server saw {} request(s)",
        response.status(),
        hits.swap(0, Ordering::SeqCst)
    );
}

#[derive(Clone)]
struct Counters {
    hits: Arc<AtomicUsize>,
    flaky: Arc<AtomicUsize>,
    limited: Arc<AtomicUsize>,
    /// Idempotency keys seen once already.
    keys: Arc<Mutex<HashSet<String>>>,
}

async fn start_server(hits: Arc<AtomicUsize>) -> std::io::Result<SocketAddr> {
    let counters = Counters {
        hits,
        flaky: Arc::default(),
        limited: Arc::default(),
        keys: Arc::default(),
    };
    let app = Router::new()
        .route(
            "/flaky",
            get(|State(c): State<Counters>| async move {
                c.hits.fetch_add(1, Ordering::SeqCst);
                if c.flaky.fetch_add(1, Ordering::SeqCst) < 2 {
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                } else {
                    "finally".into_response()
                }
            }),
        )
        .route(
            "/rate-limited",
            get(|State(c): State<Counters>| async move {
                c.hits.fetch_add(1, Ordering::SeqCst);
                if c.limited.fetch_add(1, Ordering::SeqCst) == 0 {
                    (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")]).into_response()
                } else {
                    "your turn".into_response()
                }
            }),
        )
        .route(
            "/charge",
            post(|State(c): State<Counters>, headers: HeaderMap| async move {
                c.hits.fetch_add(1, Ordering::SeqCst);
                // Fails the first time it sees a key (and always without one): the retry of a
                // keyed request goes through, and the server can tell it is the same charge.
                let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
                match key {
                    Some(key) if !c.keys.lock().unwrap().insert(key.to_owned()) => {
                        "charged once".into_response()
                    }
                    _ => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                }
            })
            .put(|State(c): State<Counters>| async move {
                c.hits.fetch_add(1, Ordering::SeqCst);
                StatusCode::SERVICE_UNAVAILABLE
            }),
        )
        .with_state(counters);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("server stopped: {err}");
        }
    });
    Ok(addr)
}
