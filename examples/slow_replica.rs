//! Cutting the tail when one request in ten hits a slow replica: hedging.
//!
//! The upstream answers in 10 ms, except every tenth request, which takes 400 ms (a replica
//! in a GC pause, a cold cache). Waiting for it makes the slowest answers forty times the
//! usual. A [`Hedge`] sends a copy of a request that is slower than 90 % of the recent
//! answers from that origin, and takes whichever answer comes first; the copy lands on a
//! healthy replica. Until enough answers were seen, the copy goes after a fixed delay. A
//! budget keeps the copies to a share of the traffic, so an upstream that slows down as a whole
//! is not sent twice its load.
//!
//! Warning: hedge only what may be done twice. `Hedge` copies idempotent methods and requests
//! with an `Idempotency-Key` only; a POST without one is sent once.
//!
//! Run it with `cargo run --example slow_replica`; it finishes in about three seconds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use stopover::client::hedge::{Budget, Hedge, HedgePolicy};
use stopover::client::{Attempts, Client};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = start_server().await?;
    let policy = HedgePolicy::builder()
        .delay_quantile(0.9)
        .delay(Duration::from_millis(100))
        .quantile_window(Duration::from_millis(500))
        .min_samples(10)
        .budget(Budget::default().ratio(0.2))
        .build()?;
    let client = Client::builder()
        .base_url(format!("http://{addr}/"))
        .middleware(Hedge::new(policy))
        .build()?;

    let mut slowest = Duration::ZERO;
    let mut copied = 0;
    for round in 1..=60 {
        let started = Instant::now();
        let response = client.get("items").send().await?;
        let took = started.elapsed();
        let sent = response.extensions().get::<Attempts>().map_or(1, |a| a.0);
        if sent > 1 {
            copied += 1;
            println!(
                "request {round:2}: {} after {:3} ms, {sent} requests sent",
                response.text().await?,
                took.as_millis()
            );
        }
        slowest = slowest.max(took);
    }
    println!(
        "60 requests, {copied} copied; the slowest answer took {} ms",
        slowest.as_millis()
    );
    Ok(())
}

/// Every tenth request takes 400 ms, the others 10 ms.
async fn start_server() -> std::io::Result<SocketAddr> {
    let hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/items",
        get(move || {
            let slow = hits.fetch_add(1, Ordering::SeqCst) % 10 == 9;
            async move {
                let pause = if slow { 400 } else { 10 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
                if slow { "slow replica" } else { "fast replica" }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}
