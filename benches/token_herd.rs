//! A herd on one 401: 1 000 concurrent requests all carry a token the server has just stopped
//! accepting. stopover's `TokenAuth` refreshes once (single flight per token value) and replays
//! each request once; the token source takes a fixed time (a 20 ms sleep, standing in for a
//! token endpoint). The figures: the time until all 1 000 are done, against one refresh plus
//! one round trip of the herd (a round trip is measured as the same 1 000 concurrent requests
//! with a valid token, just before; the herd needs two, the 401 and the replay, but the first
//! overlaps the refresh, which starts at the first 401), and the number of refreshes, which
//! must be 1.
//!
//! No peer row: the bearer-token middleware written for reqwest-middleware
//! (`support/clients.rs`) has no refresh on a 401, and neither reqwest-middleware nor its
//! companion crates offer one.
//!
//! The server (`support/server.rs`) accepts `Bearer t<g>` for any generation `g` at or above
//! its current one and answers `401` otherwise; the source's `k`-th call returns `t<k>`. The
//! clients run on a current-thread runtime on the main thread, one task per request; the 1 000
//! connections are opened first.
//!
//! `cargo bench -p stopover-benches --bench token_herd` prints the table; `-- --test` does one
//! short round.

#[path = "support/clients.rs"]
mod clients;
#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[allow(dead_code)]
#[path = "support/cpu_time.rs"]
mod cpu_time;
#[path = "support/load.rs"]
mod load;
#[path = "support/server.rs"]
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode, header};
use load::median;
use stopover::client::logging::Logging;
use stopover::client::retry::{Retry, RetryPolicy};
use stopover::client::token::{Token, TokenAuth, source_fn};

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

const REFRESH: Duration = Duration::from_millis(20);

struct Server {
    addr: SocketAddr,
    /// The oldest token generation accepted.
    generation: Arc<AtomicU64>,
    unauthorized: Arc<AtomicU64>,
}

fn serve_tokens() -> Server {
    let generation = Arc::new(AtomicU64::new(0));
    let unauthorized = Arc::new(AtomicU64::new(0));
    let (accepted, refused) = (generation.clone(), unauthorized.clone());
    let addr = server::serve(move |req| {
        let sent = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer t"))
            .and_then(|value| value.parse::<u64>().ok());
        let fresh = sent.is_some_and(|sent| sent >= accepted.load(Ordering::SeqCst));
        if !fresh {
            refused.fetch_add(1, Ordering::SeqCst);
        }
        async move {
            if fresh {
                server::hello()
            } else {
                server::empty(StatusCode::UNAUTHORIZED)
            }
        }
    });
    Server {
        addr,
        generation,
        unauthorized,
    }
}

/// The client, and its source's call counter.
fn client(name: &'static str, server: SocketAddr) -> (clients::Stack, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let auth = TokenAuth::new(source_fn(move |_client| {
        let call = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if call > 0 {
                tokio::time::sleep(REFRESH).await;
            }
            Ok(Token::new(format!("t{call}")))
        }
    }))
    .origins([
        stopover::client::Origin::parse(&format!("http://{server}/")).expect("a valid origin"),
    ]);
    let mut builder = stopover::client::Client::builder();
    if name == clients::STOPOVER_FULL {
        let policy = RetryPolicy::builder()
            .max_attempts(clients::ATTEMPTS)
            .build()
            .expect("a valid retry policy");
        builder = builder
            .ssrf_policy(clients::guard(server))
            .middleware(Logging::new())
            .middleware(Retry::new(policy));
    }
    let client = builder.middleware(auth).build().expect("the client builds");
    (clients::Stack::Stopover(name, client), calls)
}

/// Seconds for `herd` concurrent GETs, and how many were not a 200.
fn round(
    rt: &tokio::runtime::Runtime,
    stack: &clients::Stack,
    url: &str,
    herd: usize,
) -> (f64, usize) {
    rt.block_on(async {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..herd {
            let stack = stack.clone();
            let url = url.to_owned();
            tasks.spawn(async move { stack.send(Method::GET, &url, None).await.0 });
        }
        let mut failed = 0;
        while let Some(status) = tasks.join_next().await {
            if status.expect("the task completes") != StatusCode::OK {
                failed += 1;
            }
        }
        (started.elapsed().as_secs_f64(), failed)
    })
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--test");
    let (herd, rounds) = if quick { (50, 1) } else { (1_000, 5) };
    let rt = load::runtime();
    println!(
        "a herd of {herd} concurrent requests on one 401, token source taking {} ms; {rounds} \
         rounds (median); round trip: the same {herd} requests with a valid token",
        REFRESH.as_millis()
    );
    println!(
        "| client | all done (ms) | runs (ms) | round trip (ms) | refresh + round trip (ms) | \
         all done / (refresh + round trip) | refreshes per herd | 401s per herd | failed |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for name in ["stopover: TokenAuth", clients::STOPOVER_FULL] {
        let server = serve_tokens();
        let url = format!("http://{}/items", server.addr);
        let (stack, calls) = client(name, server.addr);
        // Opens the connections and fetches `t0`.
        let (_, failed) = round(&rt, &stack, &url, herd);
        assert_eq!(failed, 0, "the warm-up round succeeds");
        let (mut done, mut trips, mut refreshes, mut refused) = (vec![], vec![], vec![], vec![]);
        let mut failures = 0;
        for _ in 0..rounds {
            let (trip, failed) = round(&rt, &stack, &url, herd);
            assert_eq!(failed, 0, "a valid token is accepted");
            trips.push(trip);
            let calls_before = calls.load(Ordering::SeqCst);
            let refused_before = server.unauthorized.load(Ordering::SeqCst);
            // The token in the cache is `t<calls - 1>`: stop accepting it.
            server.generation.store(calls_before, Ordering::SeqCst);
            let (seconds, failed) = round(&rt, &stack, &url, herd);
            done.push(seconds);
            failures += failed;
            refreshes.push((calls.load(Ordering::SeqCst) - calls_before) as f64);
            refused.push((server.unauthorized.load(Ordering::SeqCst) - refused_before) as f64);
        }
        let all_done = median(&done) * 1e3;
        let trip = median(&trips) * 1e3;
        let floor = REFRESH.as_secs_f64() * 1e3 + trip;
        let runs: Vec<String> = done.iter().map(|s| format!("{:.1}", s * 1e3)).collect();
        let refreshes: Vec<String> = refreshes.iter().map(|r| format!("{r:.0}")).collect();
        println!(
            "| {name} | {all_done:.1} | {} | {trip:.1} | {floor:.1} | {:.2} | {} | {:.0} | {failures} |",
            runs.join(", "),
            all_done / floor,
            refreshes.join(", "),
            median(&refused),
        );
    }
    println!();
}
