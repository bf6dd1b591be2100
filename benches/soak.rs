//! Soak run: the whole client stack (logging, retry, token refresh, the SSRF guard, redirects)
//! for a long time against a loopback server that mixes faults, watching live heap and tokio
//! tasks. A leak shows as a heap or a task count that grows with the requests instead of
//! levelling off, or that does not come back once the load stops.
//!
//! `cargo bench -p stopover-benches --bench soak` runs 120 s; `SOAK_SECS=<n>` sets another
//! length. Never part of `cargo test`. The server answers, by the request's number: every 9th a
//! 503 (retried), every 11th a 307 to itself (a redirect hop), every 13th a 401 (a token
//! refresh and a replay), every 7th 20 ms late, every 29th a 429 with `Retry-After: 0`; the rest
//! 200. 32 tasks send GETs until the time is up. Exits non-zero when, once the load has stopped
//! and the client is dropped, tasks are left over or the heap stays more than 1 MiB above where
//! it started (a warm client with one pooled connection).

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "support/server.rs"]
mod server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use stopover::client::logging::Logging;
use stopover::client::retry::{Retry, RetryPolicy};
use stopover::client::ssrf::Policy;
use stopover::client::token::{Token, TokenAuth, source_fn};
use stopover::client::{Client, Origin};

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

const TASKS: usize = 32;
/// How far above its starting point (a warm client, one pooled connection) the heap may end
/// once the load has stopped and the client is dropped: the runtime's own caches, not a leak.
const SETTLED_SLACK: i64 = 1024 * 1024;

fn answer(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"hello")));
    *response.status_mut() = status;
    response
}

fn main() {
    counting_alloc::track_live();
    let seconds: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .unwrap_or(120);
    let counter = Arc::new(AtomicU64::new(0));
    let hits = Arc::clone(&counter);
    let addr = server::serve(move |request| {
        let n = hits.fetch_add(1, Ordering::Relaxed) + 1;
        let redirected = request.uri().query() == Some("hop=1");
        async move {
            if n.is_multiple_of(7) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if n.is_multiple_of(9) {
                return answer(StatusCode::SERVICE_UNAVAILABLE);
            }
            if n.is_multiple_of(11) && !redirected {
                let mut response = answer(StatusCode::TEMPORARY_REDIRECT);
                response.headers_mut().insert(
                    header::LOCATION,
                    "/items?hop=1".parse().expect("a location"),
                );
                return response;
            }
            if n.is_multiple_of(13) {
                return answer(StatusCode::UNAUTHORIZED);
            }
            if n.is_multiple_of(29) {
                let mut response = answer(StatusCode::TOO_MANY_REQUESTS);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, "0".parse().expect("a delay"));
                return response;
            }
            answer(StatusCode::OK)
        }
    });
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
                .allow_addr(&addr.to_string())
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
                let n = fetches.fetch_add(1, Ordering::Relaxed);
                async move { Ok(Token::new(format!("token-{n}"))) }
            }))
            .origins([Origin::parse(&url).expect("an origin")]),
        )
        .build()
        .expect("the client builds");

    let (start_live, start_tasks) = runtime.block_on(async {
        // One request first: the pool, the token and the runtime's caches exist from here on.
        let _ = client.get(&url).send().await;
        let metrics = tokio::runtime::Handle::current().metrics();
        (counting_alloc::live(), metrics.num_alive_tasks())
    });
    println!(
        "soak: {seconds} s, {TASKS} tasks, full client stack against faults; start: {} KiB live, {start_tasks} tasks",
        start_live / 1024
    );
    println!("| second | requests | errors | live heap KiB | alive tasks |");
    println!("|---|---|---|---|---|");
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let samples = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..TASKS {
            let (client, url) = (client.clone(), url.clone());
            let (done, failed) = (Arc::clone(&done), Arc::clone(&failed));
            workers.spawn(async move {
                while Instant::now() < deadline {
                    match client.get(&url).send().await {
                        Ok(response) => {
                            let _ = response.bytes().await;
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        let metrics = tokio::runtime::Handle::current().metrics();
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        for second in 1..=seconds {
            tick.tick().await;
            let sample = (second, counting_alloc::live(), metrics.num_alive_tasks());
            if second.is_multiple_of(10) || second == seconds || second <= 3 {
                println!(
                    "| {second} | {} | {} | {} | {} |",
                    done.load(Ordering::Relaxed),
                    failed.load(Ordering::Relaxed),
                    sample.1 / 1024,
                    sample.2
                );
            }
            samples.push(sample);
        }
        while workers.join_next().await.is_some() {}
        samples
    });
    // The load has stopped and the client is gone (its pool with it): give the connection
    // tasks a moment to end, then look again. Everything the run made must be gone too.
    drop(client);
    let (end_live, end_tasks) = runtime.block_on(async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let metrics = tokio::runtime::Handle::current().metrics();
        (counting_alloc::live(), metrics.num_alive_tasks())
    });
    let half = samples.len() / 2;
    let slope = if samples.len() >= 4 {
        let (first_t, first_heap, _) = samples[half];
        let (last_t, last_heap, _) = samples[samples.len() - 1];
        (last_heap - first_heap) as f64 / (last_t - first_t).max(1) as f64
    } else {
        0.0
    };
    let requests = done.load(Ordering::Relaxed);
    println!(
        "requests {requests}, errors {}, token fetches {}, server hits {}",
        failed.load(Ordering::Relaxed),
        refreshes.load(Ordering::Relaxed),
        counter.load(Ordering::Relaxed)
    );
    println!(
        "live heap: start {} KiB, end {} KiB ({:+} bytes); over the second half {slope:+.0} bytes/s; tasks: start {start_tasks}, end {end_tasks}",
        start_live / 1024,
        end_live / 1024,
        end_live - start_live
    );
    let mut verdict = Vec::new();
    if end_tasks > start_tasks {
        verdict.push(format!("{} tasks left over", end_tasks - start_tasks));
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
