//! Soak run: the whole client stack (logging, retry, token refresh, the SSRF guard, redirects)
//! against the whole server stack (forwarded, CORS, error, timeout, shield under axum) on
//! loopback, for a bounded time, with injected faults, watching live heap and the tasks of both
//! runtimes. A leak shows as a heap or a task count that grows with the requests instead of
//! levelling off, or that does not come back once the load stops.
//!
//! `cargo bench -p stopover-benches --bench soak` runs 60 s (`.ci/run` runs it so);
//! `SOAK_SECS=<n>` sets another length. The handler answers, by the request's number: every
//! 7th 20 ms late, every 9th 503 (retried), every 11th a 307 to itself (a redirect hop), every
//! 13th 401 (a token refresh and a replay), every 29th 429 with `Retry-After: 0`, every 31st
//! panics (the error layer's 500, retried), every 37th resets its body after three bytes, every
//! 41st sends a slow body; and every 50th token refresh fails. 32 tasks send GETs until the time
//! is up. It fails (exit 1) when a request neither answered nor failed with a typed error, when
//! tasks are left on either side once the load has stopped and the client is dropped, or when
//! the heap stays more than 1 MiB above where the warm client started.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{StatusCode, header};
use stopover::client::logging::Logging;
use stopover::client::retry::{Retry, RetryPolicy};
use stopover::client::ssrf::Policy;
use stopover::client::token::{Token, TokenAuth, TokenError, source_fn};
use stopover::client::{Client, Origin};

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

const TASKS: usize = 32;
/// How far above its starting point (a warm client, one pooled connection) the heap may end
/// once the load has stopped and the client is dropped: the runtime's own caches, not a leak.
const SETTLED_SLACK: i64 = 1024 * 1024;

/// The server: axum behind every stopover server layer in the recommended order, on a runtime
/// of its own thread, whose handle is returned for its task count.
fn serve_stack() -> (std::net::SocketAddr, tokio::runtime::Handle, Arc<AtomicU64>) {
    use axum::body::Body;
    use axum::response::IntoResponse;
    use stopover::server::cors::CorsLayer;
    use stopover::server::error::ErrorLayer;
    use stopover::server::forwarded::ForwardedLayer;
    use stopover::server::shield::ShieldLayer;
    use stopover::server::timeout::TimeoutLayer;

    let hits = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&hits);
    let handler = move |uri: http::Uri| {
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        let redirected = uri.query() == Some("hop=1");
        async move {
            if n.is_multiple_of(7) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if n.is_multiple_of(9) {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            if n.is_multiple_of(11) && !redirected {
                return (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, "/items?hop=1")],
                )
                    .into_response();
            }
            if n.is_multiple_of(13) {
                return StatusCode::UNAUTHORIZED.into_response();
            }
            if n.is_multiple_of(29) {
                return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "0")])
                    .into_response();
            }
            if n.is_multiple_of(31) {
                std::panic::panic_any(PLANTED_PANIC);
            }
            if n.is_multiple_of(37) {
                // A body cut off after its first bytes: the connection is reset mid-body.
                let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                    Ok(Bytes::from_static(b"hel")),
                    Err(std::io::Error::other("reset mid-body")),
                ];
                return Body::from_stream(futures_util::stream::iter(chunks)).into_response();
            }
            if n.is_multiple_of(41) {
                // A slow body: its second half 30 ms after its first.
                let stream = futures_util::stream::unfold(0u8, |step| async move {
                    match step {
                        0 => Some((Ok::<_, std::io::Error>(Bytes::from_static(b"hel")), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_millis(30)).await;
                            Some((Ok(Bytes::from_static(b"lo")), 2))
                        }
                        _ => None,
                    }
                });
                return Body::from_stream(stream).into_response();
            }
            "hello".into_response()
        }
    };
    let app = axum::Router::new()
        .route("/items", axum::routing::get(handler))
        .layer(
            tower::ServiceBuilder::new()
                .layer(
                    ForwardedLayer::builder()
                        .x_forwarded()
                        .build()
                        .expect("forwarded"),
                )
                .layer(
                    CorsLayer::builder()
                        .allow_origin("https://app.example")
                        .build()
                        .expect("cors"),
                )
                .layer(ErrorLayer::new())
                .layer(
                    TimeoutLayer::builder(Duration::from_secs(5))
                        .build()
                        .expect("timeout"),
                )
                .layer(ShieldLayer::builder().build().expect("shield")),
        );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    listener
        .set_nonblocking(true)
        .expect("a non-blocking listener");
    let addr = listener.local_addr().expect("the bound address");
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the server's runtime");
        let _ = handle_tx.send(runtime.handle().clone());
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            let _ = axum::serve(listener, app).await;
        });
    });
    let handle = handle_rx.recv().expect("the server's runtime handle");
    (addr, handle, hits)
}

/// The text of the handler's planted panic.
const PLANTED_PANIC: &str = "a handler panic the error layer turns into a 500";

fn main() {
    counting_alloc::track_live();
    // The planted panics are expected: not printed (a backtrace's symbols would also stay
    // cached in the heap). Any other panic is reported as usual.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&PLANTED_PANIC) {
            report(info);
        }
    }));
    let seconds: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .unwrap_or(60);
    let (addr, server_runtime, hits) = serve_stack();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let url = format!("http://{addr}/items");
    let refreshes = Arc::new(AtomicU64::new(0));
    let fetches = Arc::clone(&refreshes);
    let client = Client::builder()
        .ssrf_policy(
            Policy::builder()
                .allow_addr(addr)
                .build()
                .expect("a policy"),
        )
        .timeout(Duration::from_secs(10))
        .middleware(Logging::new())
        .middleware(Retry::new(
            RetryPolicy::builder()
                .max_attempts(3)
                .backoff(Duration::from_millis(1), Duration::from_millis(5))
                .build()
                .expect("a retry policy"),
        ))
        .middleware(
            TokenAuth::new(source_fn(move |_client| {
                let n = fetches.fetch_add(1, Ordering::Relaxed) + 1;
                async move {
                    if n.is_multiple_of(50) {
                        return Err(TokenError::source_error(std::io::Error::other(
                            "the token endpoint failed",
                        )));
                    }
                    Ok(Token::new(format!("token-{n}")))
                }
            }))
            .origins([Origin::parse(&url).expect("an origin")]),
        )
        .build()
        .expect("the client builds");
    let tasks = |handle: &tokio::runtime::Handle| handle.metrics().num_alive_tasks();

    let start_live = runtime.block_on(async {
        // One request first: the pool, the token and the runtime's caches exist from here on.
        let _ = client.get(&url).send().await;
        counting_alloc::live()
    });
    let start_server_tasks = tasks(&server_runtime);
    println!(
        "soak: {seconds} s, {TASKS} tasks, full client stack against the full server stack with faults; start: {} KiB live",
        start_live / 1024
    );
    println!("| second | requests | typed errors | live heap KiB | client tasks | server tasks |");
    println!("|---|---|---|---|---|---|");
    let started = Arc::new(AtomicU64::new(0));
    let ended = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let samples = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..TASKS {
            let (client, url) = (client.clone(), url.clone());
            let (started, ended, failed) = (
                Arc::clone(&started),
                Arc::clone(&ended),
                Arc::clone(&failed),
            );
            workers.spawn(async move {
                while Instant::now() < deadline {
                    started.fetch_add(1, Ordering::Relaxed);
                    let outcome = match client.get(&url).send().await {
                        Ok(response) => response.bytes().await.map(|_| ()),
                        Err(err) => Err(err),
                    };
                    // Every failure is the client's typed error: the kind says what happened.
                    if outcome.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    ended.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let client_runtime = tokio::runtime::Handle::current();
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        for second in 1..=seconds {
            tick.tick().await;
            let sample = (second, counting_alloc::live());
            if second.is_multiple_of(10) || second == seconds || second <= 3 {
                println!(
                    "| {second} | {} | {} | {} | {} | {} |",
                    ended.load(Ordering::Relaxed),
                    failed.load(Ordering::Relaxed),
                    sample.1 / 1024,
                    tasks(&client_runtime),
                    tasks(&server_runtime)
                );
            }
            samples.push(sample);
        }
        while workers.join_next().await.is_some() {}
        samples
    });
    // The load has stopped and the client is gone (its pool with it): give the connection
    // tasks on both sides a moment to end, then look again.
    drop(client);
    let (end_live, end_client_tasks) = runtime.block_on(async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        (
            counting_alloc::live(),
            tasks(&tokio::runtime::Handle::current()),
        )
    });
    let end_server_tasks = tasks(&server_runtime);
    let half = samples.len() / 2;
    let slope = match (samples.get(half), samples.last()) {
        (Some(&(first_t, first_heap)), Some(&(last_t, last_heap))) if last_t > first_t => {
            (last_heap - first_heap) as f64 / (last_t - first_t) as f64
        }
        _ => 0.0,
    };
    let (started, ended) = (
        started.load(Ordering::Relaxed),
        ended.load(Ordering::Relaxed),
    );
    println!(
        "requests {ended} ({started} started), typed errors {}, token fetches {}, server hits {}",
        failed.load(Ordering::Relaxed),
        refreshes.load(Ordering::Relaxed),
        hits.load(Ordering::Relaxed)
    );
    println!(
        "live heap: start {} KiB, end {} KiB ({:+} bytes); over the second half {slope:+.0} bytes/s; \
         tasks after: client {end_client_tasks}, server {end_server_tasks} (server at start {start_server_tasks})",
        start_live / 1024,
        end_live / 1024,
        end_live - start_live
    );
    let mut verdict = Vec::new();
    if started != ended {
        verdict.push(format!("{} requests never ended", started - ended));
    }
    if end_client_tasks > 0 {
        verdict.push(format!("{end_client_tasks} client tasks left over"));
    }
    // The server keeps its accept loop; a connection task left means a connection never closed.
    if end_server_tasks > start_server_tasks {
        verdict.push(format!(
            "{} server tasks left over",
            end_server_tasks - start_server_tasks
        ));
    }
    if end_live - start_live > SETTLED_SLACK {
        verdict.push(format!(
            "heap {} KiB above its start once the load stopped",
            (end_live - start_live) / 1024
        ));
    }
    if verdict.is_empty() {
        println!("soak: ok");
    } else {
        println!("soak: FAILED: {}", verdict.join("; "));
        std::process::exit(1);
    }
}
