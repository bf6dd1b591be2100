//! Client throughput over loopback: plain reqwest, reqwest-middleware with reqwest-retry, the
//! like-for-like peer (reqwest-middleware with reqwest-tracing, reqwest-retry and a bearer-token
//! middleware), and stopover with retry, logging, token refresh and the SSRF guard on (the guard
//! allows this one loopback address and port), each sending GETs to the same in-process hyper
//! server on 127.0.0.1 (keep-alive, no faults, so no retry ever happens). Two more stopover rows,
//! without middleware and with the SSRF guard alone, show where stopover's cost comes from.
//! The clients are those of `support/clients.rs`; no tracing subscriber is installed.
//!
//! The server runs on a current-thread runtime of its own thread; the clients run on a
//! current-thread runtime on the main thread, sequentially (one request at a time) and 32-way
//! concurrently (32 tasks). Each run is bounded in requests; the clients take turns, run after
//! run, so a noisy moment hurts all of them alike, and the figure is the median over the runs as
//! a ratio to plain reqwest. Allocations are counted over whole runs and include the server's
//! (the same for every client): read the differences.
//!
//! `cargo bench -p stopover-benches --bench client_loopback` prints the tables; `-- --test` does one short run.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "support/cpu_time.rs"]
mod cpu_time;
#[path = "support/load.rs"]
mod load;

#[path = "support/clients.rs"]
mod clients;
#[path = "support/server.rs"]
mod server;

use std::net::SocketAddr;

use clients::Stack;
use stopover::client::logging::Logging;
use stopover::client::retry::{Retry, RetryPolicy};

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

const CONCURRENCY: usize = 32;
const ATTEMPTS: u32 = clients::ATTEMPTS;

fn stacks(server: SocketAddr) -> Vec<Stack> {
    vec![
        clients::reqwest(),
        clients::peer_retry(None),
        clients::peer_full(None),
        clients::stopover_full(server, None),
        clients::stopover_none(),
        clients::stopover_guard(server),
    ]
}

/// One stopover client per built-in middleware (and the guard), each alone, for the allocation
/// breakdown.
fn single_middlewares(server: SocketAddr) -> Vec<(&'static str, stopover::client::Client)> {
    let build =
        |builder: stopover::client::ClientBuilder| builder.build().expect("the client builds");
    let retry = RetryPolicy::builder()
        .max_attempts(ATTEMPTS)
        .build()
        .expect("a valid retry policy");
    let guard = clients::guard(server);
    vec![
        ("no middleware", build(stopover::client::Client::builder())),
        (
            "a pass-through from_fn",
            build(
                stopover::client::Client::builder().middleware(stopover::client::from_fn(
                    |req, next: stopover::client::Next| next.run(req),
                )),
            ),
        ),
        (
            "Logging",
            build(stopover::client::Client::builder().middleware(Logging::new())),
        ),
        (
            "Retry",
            build(stopover::client::Client::builder().middleware(Retry::new(retry))),
        ),
        (
            "TokenAuth",
            build(stopover::client::Client::builder().middleware(clients::token_auth(server))),
        ),
        (
            "SSRF guard",
            build(stopover::client::Client::builder().ssrf_policy(guard)),
        ),
    ]
}

fn print_breakdown(rt: &tokio::runtime::Runtime, server: SocketAddr, url: &str, requests: usize) {
    println!(
        "stopover's allocations per request, one middleware at a time (sequential, {requests} GETs)"
    );
    println!("| stopover client | allocs/req | over no middleware |");
    println!("|---|---|---|");
    let mut base = None;
    for (name, client) in single_middlewares(server) {
        let stack = Stack::Stopover(name, client);
        load::run(rt, &stack, url, 50, 1);
        let count = load::run(rt, &stack, url, requests, 1).allocations;
        let allocations = count as f64 / requests as f64;
        let base = *base.get_or_insert(allocations);
        println!("| {name} | {allocations:.1} | {:+.1} |", allocations - base);
    }
    println!();
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--test");
    let (runs, sequential, concurrent) = if quick {
        (1, 200, 640)
    } else {
        (5, 16_000, 51_200)
    };
    let addr = server::serve_hello();
    let url = format!("http://{addr}/items?page=1");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let stacks = stacks(addr);
    if std::env::args().any(|arg| arg == "--list-clients") {
        for stack in &stacks {
            println!("{}", stack.name());
        }
        return;
    }
    // `CLIENT_LOOPBACK_PROFILE=<client name>`: 2 000 sequential GETs with that client only, for
    // `valgrind --tool=dhat` or `--tool=callgrind`.
    if let Ok(name) = std::env::var("CLIENT_LOOPBACK_PROFILE") {
        for stack in stacks.iter().filter(|stack| stack.name() == name) {
            load::run(&rt, stack, &url, 2_000, 1);
        }
        return;
    }
    print_breakdown(&rt, addr, &url, if quick { 200 } else { 2_000 });
    for (label, requests, concurrency) in [
        ("sequential", sequential, 1),
        ("32 concurrent", concurrent, CONCURRENCY),
    ] {
        // Warm-up: connections opened, token fetched, allocator and caches warm.
        for stack in &stacks {
            load::run(&rt, stack, &url, concurrency * 20, concurrency);
        }
        let mut rps = vec![Vec::new(); stacks.len()];
        let mut allocs = vec![Vec::new(); stacks.len()];
        let mut cpu = vec![Vec::new(); stacks.len()];
        for _ in 0..runs {
            for (index, stack) in stacks.iter().enumerate() {
                let load::Sample {
                    seconds,
                    allocations: count,
                    cpu_ns: nanos,
                } = load::run(&rt, stack, &url, requests, concurrency);
                rps[index].push(requests as f64 / seconds);
                allocs[index].push(count as f64 / requests as f64);
                cpu[index].push(nanos as f64 / 1_000.0 / requests as f64);
            }
        }
        let base_rps = median(&mut rps[0].clone());
        let base_allocs = median(&mut allocs[0].clone());
        let base_cpu = median(&mut cpu[0].clone());
        println!(
            "client over loopback, {label}: {requests} GETs per run, {runs} runs (median); \
             allocations and CPU time include the server's"
        );
        println!(
            "| client | req/s | runs (req/s) | ratio to reqwest | allocs/req | over reqwest | \
             CPU µs/req | CPU ratio to reqwest |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for (index, stack) in stacks.iter().enumerate() {
            let runs: Vec<String> = rps[index].iter().map(|v| format!("{v:.0}")).collect();
            let value = median(&mut rps[index]);
            let allocations = median(&mut allocs[index]);
            let cpu = median(&mut cpu[index]);
            println!(
                "| {} | {value:.0} | {} | {:.3} | {allocations:.1} | {:+.1} | {cpu:.2} | {:.3} |",
                stack.name(),
                runs.join(", "),
                value / base_rps,
                allocations - base_allocs,
                cpu / base_cpu
            );
        }
        println!();
    }
    // The server thread is still accepting; leaving `main` ends the process.
}
