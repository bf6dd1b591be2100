//! The tour: a loopback server and a client with middlewares, and a transcript of what each
//! middleware did.
//!
//! Run it with `cargo run --example tour`; it exits by itself after a few seconds at most.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use layover::client::{Client, Next, Request, from_fn};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = start_server().await?;
    println!("server listening on http://{addr}\n");

    let client = Client::builder()
        .base_url(&format!("http://{addr}/"))
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

    println!("2. a redirect: the chain runs once per hop");
    let response = client.get("old-place").send().await?;
    println!(
        "  landed on {} after {} redirect(s)\n",
        response.url().path(),
        response.history().len()
    );

    println!("3. the same request with the middleware list replaced by an empty one");
    let response = client.get("hello").no_middleware().send().await?;
    println!("  status {} and no log line above\n", response.status());

    println!("4. a middleware that answers by itself, extending the client's list");
    let response = client
        .get("hello")
        .extend_middleware(from_fn(|req: Request, _next: Next| async move {
            println!("  [cache] answering {} from memory", req.url().path());
            let cached = http::Response::new("cached hello");
            Ok(layover::client::Response::from_http(
                cached,
                req.url().clone(),
            ))
        }))
        .send()
        .await?;
    println!("  body: {:?}\n", response.text().await?);

    println!("tour finished");
    Ok(())
}

async fn start_server() -> std::io::Result<SocketAddr> {
    let app = Router::new()
        .route("/hello", get(|| async { "hello from the server" }))
        .route(
            "/old-place",
            get(|| async {
                (
                    StatusCode::MOVED_PERMANENTLY,
                    [(header::LOCATION, "/hello")],
                )
            }),
        )
        .fallback(|| async { StatusCode::NOT_FOUND.into_response() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("server stopped: {err}");
        }
    });
    Ok(addr)
}
