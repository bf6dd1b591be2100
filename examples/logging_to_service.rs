//! Logging to an external service from a middleware, without recursion.
//!
//! The cookbook's recipe posts a record of every request to a log endpoint through the same
//! client. Done naively, the log request runs the logging middleware again, which logs the log
//! request, and so on. Two ways out, both shown here:
//!
//! 1. send the log request with no middleware (`no_middleware()`, aiohttp's `middlewares=()`);
//! 2. keep the client's middlewares, and have the middleware skip its own log path.
//!
//! A failing log endpoint is reported and never fails the request itself.
//!
//! Run it with `cargo run --example logging_to_service`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use stopover::client::{Client, Next, Request, from_fn};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let log_hits = Arc::new(AtomicUsize::new(0));
    let addr = start_server(Arc::clone(&log_hits)).await?;
    let base = format!("http://{addr}/");

    // Way 1: the log request runs no middleware at all.
    let client = Client::builder()
        .base_url(&base)
        .middleware(from_fn(|req: Request, next: Next| async move {
            let record = format!("{} {}", req.method(), req.url());
            let logged = next
                .client()
                .post("/log")
                .no_middleware()
                .body(record)
                .send()
                .await;
            match logged {
                Ok(response) if response.status().is_success() => {}
                Ok(response) => eprintln!("log endpoint answered {}", response.status()),
                Err(err) => eprintln!("log endpoint failed: {err}"),
            }
            next.run(req).await
        }))
        .build()?;
    for path in ["/api/users", "/api/orders"] {
        let status = client.get(path).send().await?.status();
        println!("no_middleware: GET {path} -> {status}");
    }
    println!(
        "log endpoint received {} records for 2 requests\n",
        log_hits.swap(0, Ordering::SeqCst)
    );

    // Way 2: the log request goes through the client's list; the middleware skips it.
    let client = Client::builder()
        .base_url(&base)
        .middleware(from_fn(|req: Request, next: Next| async move {
            if req.url().path() != "/log" {
                let record = format!("{} {}", req.method(), req.url());
                if let Err(err) = next.client().post("/log").body(record).send().await {
                    eprintln!("log endpoint failed: {err}");
                }
            }
            next.run(req).await
        }))
        .build()?;
    for path in ["/api/users", "/api/orders"] {
        let status = client.get(path).send().await?.status();
        println!("path check: GET {path} -> {status}");
    }
    println!(
        "log endpoint received {} records for 2 requests",
        log_hits.load(Ordering::SeqCst)
    );
    Ok(())
}

async fn start_server(log_hits: Arc<AtomicUsize>) -> std::io::Result<SocketAddr> {
    let app = Router::new()
        .route(
            "/log",
            post(
                |State(hits): State<Arc<AtomicUsize>>, record: Bytes| async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    println!("  [log service] {}", String::from_utf8_lossy(&record));
                },
            ),
        )
        .route("/api/{item}", get(|| async { "data" }))
        .with_state(log_hits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("server stopped: {err}");
        }
    });
    Ok(addr)
}
