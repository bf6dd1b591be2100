//! Calling an upstream that fails, throttles and stalls, without making it worse.
//!
//! Retry alone answers a failing upstream with more load. This recipe adds what stops that: a
//! circuit breaker that stops calling an upstream that keeps failing and fails fast with the
//! time until its next probe; a rate limit that keeps to a quota and, when the upstream answers
//! 429 with `Retry-After`, pauses every request to it, not only the one that got the 429; a
//! bulkhead that keeps one slow upstream from taking every connection; and the standard
//! pipeline that puts them in the order in which they work together.
//!
//! Warning: a breaker per client, not per upstream, lets one bad host cut you off from every
//! other one: keep the default key (the origin) unless you know better.
//!
//! Run it with `cargo run --example resilience`; it finishes in about two seconds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use stopover::client::breaker::{CircuitBreaker, CircuitBreakerPolicy, Window};
use stopover::client::bulkhead::{Bulkhead, BulkheadPolicy};
use stopover::client::limit::{RateLimit, RateLimitPolicy};
use stopover::client::{Client, Error, Response};
use stopover::resilience::StandardPipeline;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = start_server().await?;
    let base = format!("http://{addr}/");

    println!("1. a circuit breaker in front of an upstream that answers 503");
    let policy = CircuitBreakerPolicy::builder()
        .window(Window::Count(4))
        .minimum_calls(4)
        .open_duration(Duration::from_millis(500))
        .build()?;
    let client = Client::builder()
        .base_url(&base)
        .middleware(CircuitBreaker::new(policy))
        .build()?;
    for _ in 0..6 {
        report(client.get("down").send().await);
    }
    println!();

    println!("2. a rate limit of 5 a second; the upstream answers 429 with `Retry-After: 1` once");
    let policy = RateLimitPolicy::builder(5, Duration::from_secs(1))
        .max_wait(Duration::from_millis(50))
        .build()?;
    let client = Client::builder()
        .base_url(&base)
        .middleware(RateLimit::new(policy))
        .build()?;
    for path in ["quota", "quota", "ok"] {
        report(client.get(path).send().await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!("   ... a second later:");
    report(client.get("ok").send().await);
    println!();

    println!("3. a bulkhead of 1 request in flight, no queue, in front of a slow upstream");
    let client = Client::builder()
        .base_url(&base)
        .middleware(Bulkhead::new(BulkheadPolicy::builder(1).build()?))
        .build()?;
    let slow = tokio::spawn(client.get("slow").send());
    tokio::time::sleep(Duration::from_millis(50)).await;
    report(client.get("slow").send().await);
    report(slow.await?);
    println!();

    println!("4. the standard pipeline: an attempt that stalls is cut at 200 ms and retried");
    let pipeline = StandardPipeline::builder()
        .total_timeout(Duration::from_secs(5))
        .attempt_timeout(Duration::from_millis(200))
        .build()?;
    let client = Client::builder()
        .base_url(&base)
        .middlewares(pipeline.chain())
        .build()?;
    report(client.get("stalls-once").send().await);
    Ok(())
}

fn report(outcome: Result<Response, Error>) {
    match outcome {
        Ok(response) => println!("   {}", response.status()),
        // The error says how long to wait, when the middleware knows (`Error::retry_after`).
        Err(err) => println!("   refused, not sent: {err}"),
    }
}

async fn start_server() -> std::io::Result<SocketAddr> {
    let quota_hits = Arc::new(AtomicUsize::new(0));
    let stall_hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/down", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/quota",
            get(move || {
                let first = quota_hits.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")])
                            .into_response()
                    } else {
                        "ok".into_response()
                    }
                }
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "slow"
            }),
        )
        .route(
            "/stalls-once",
            get(move || {
                let first = stall_hits.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    "ok"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
