//! Retry overhead with injected faults: a server answers `503` (empty body) to the first attempt
//! of every tenth request and `200` to everything else, and each client retries with zero
//! backoff, so the time measures the retry machinery, not sleeping. stopover's `Retry` against
//! reqwest-retry's `RetryTransientMiddleware`, alone and inside the full stacks
//! (`support/clients.rs`; no tracing subscriber installed).
//!
//! Configured alike: 4 attempts in all; reqwest-retry `ExponentialBackoff` with
//! `retry_bounds(0, 0)`, stopover `backoff(0, 0)` and no retry budget (reqwest-retry has none).
//! Both still go through `tokio::time::sleep` of zero before each retry.
//!
//! The pattern is the same for every client: request `i` of a run carries `?n=i`, and the
//! server fails the first attempt of each `n` with `n % 10 == 9` (it remembers which it failed;
//! the set is cleared before each run), so exactly one retry per ten requests, in any
//! interleaving. Requests per second, CPU time and allocations are per request as the caller
//! sees it (a retried request counts once) and include the server's work: read the differences.
//!
//! `cargo bench -p stopover-benches --bench client_retry` prints the tables; `-- --test` does one
//! short run.

#[path = "support/clients.rs"]
mod clients;
#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "support/cpu_time.rs"]
mod cpu_time;
#[path = "support/load.rs"]
mod load;
#[path = "support/server.rs"]
mod server;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clients::{Stack, Urls};
use http::StatusCode;
use load::{Sample, median};

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

struct Faults {
    failed: Mutex<HashSet<u64>>,
    answered_503: AtomicU64,
}

fn serve_faults(faults: Arc<Faults>) -> SocketAddr {
    server::serve(move |req| {
        let n = req
            .uri()
            .query()
            .and_then(|query| query.strip_prefix("n="))
            .and_then(|n| n.parse::<u64>().ok());
        let fail = n
            .is_some_and(|n| n % 10 == 9 && faults.failed.lock().expect("the fault set").insert(n));
        if fail {
            faults.answered_503.fetch_add(1, Ordering::SeqCst);
        }
        async move {
            if fail {
                server::empty(StatusCode::SERVICE_UNAVAILABLE)
            } else {
                server::hello()
            }
        }
    })
}

/// `requests` GETs from `concurrency` tasks, request `i` to `base?n=i`.
fn run(
    rt: &tokio::runtime::Runtime,
    stack: &Stack,
    base: &str,
    requests: usize,
    concurrency: usize,
) -> Sample {
    rt.block_on(async {
        let cpu_before = cpu_time::process_cpu_ns();
        let (allocs_before, _) = counting_alloc::snapshot();
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        let per_task = requests / concurrency;
        for task in 0..concurrency {
            let base = base.to_owned();
            stack.spawn_gets(
                &mut tasks,
                task * per_task..(task + 1) * per_task,
                Urls::Numbered(base),
            );
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("the client task completes");
        }
        let seconds = started.elapsed().as_secs_f64();
        let (allocs_after, _) = counting_alloc::snapshot();
        Sample {
            seconds,
            allocations: allocs_after - allocs_before,
            cpu_ns: cpu_time::process_cpu_ns() - cpu_before,
        }
    })
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--test");
    let runs = if quick { 1 } else { 5 };
    let faults = Arc::new(Faults {
        failed: Mutex::new(HashSet::new()),
        answered_503: AtomicU64::new(0),
    });
    let addr = serve_faults(faults.clone());
    let base = format!("http://{addr}/items");
    let rt = load::runtime();
    let zero = Some(Duration::ZERO);
    let stacks = [
        clients::peer_retry(zero),
        clients::stopover_retry(zero),
        clients::peer_full(zero),
        clients::stopover_full(addr, zero),
    ];
    for (label, requests, concurrency) in [
        ("sequential", if quick { 100 } else { 9_000 }, 1),
        ("32 in flight", if quick { 640 } else { 28_800 }, 32),
    ] {
        for stack in &stacks {
            faults.failed.lock().expect("the fault set").clear();
            run(&rt, stack, &base, concurrency * 10, concurrency);
        }
        let mut samples = vec![Vec::new(); stacks.len()];
        let mut retried = vec![Vec::new(); stacks.len()];
        for _ in 0..runs {
            for (index, stack) in stacks.iter().enumerate() {
                faults.failed.lock().expect("the fault set").clear();
                let before = faults.answered_503.load(Ordering::SeqCst);
                samples[index].push(run(&rt, stack, &base, requests, concurrency));
                retried[index].push(faults.answered_503.load(Ordering::SeqCst) - before);
            }
        }
        println!(
            "retry overhead, {label}: {requests} GETs per run, a 503 to the first attempt of \
             every tenth, zero backoff, {runs} runs (median); per request as the caller sees it, \
             the server's work included"
        );
        println!(
            "| client | req/s | runs (req/s) | ratio to reqwest-retry | CPU µs/req | CPU ratio \
             | allocs/req | over reqwest-retry | 503s per run |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        let figures: Vec<(f64, f64, f64, Vec<f64>)> = samples
            .iter()
            .map(|samples| {
                let rps: Vec<f64> = samples
                    .iter()
                    .map(|s| requests as f64 / s.seconds)
                    .collect();
                let cpu: Vec<f64> = samples
                    .iter()
                    .map(|s| s.cpu_ns as f64 / 1_000.0 / requests as f64)
                    .collect();
                let allocs: Vec<f64> = samples
                    .iter()
                    .map(|s| s.allocations as f64 / requests as f64)
                    .collect();
                (median(&rps), median(&cpu), median(&allocs), rps)
            })
            .collect();
        // Rows 0 and 2 are the peers; each stopover row is compared with the peer above it.
        for (index, stack) in stacks.iter().enumerate() {
            let (rps, cpu, allocs, runs) = &figures[index];
            let (peer_rps, peer_cpu, peer_allocs, _) = &figures[index - index % 2];
            let runs: Vec<String> = runs.iter().map(|v| format!("{v:.0}")).collect();
            let retried: Vec<String> = retried[index].iter().map(u64::to_string).collect();
            println!(
                "| {} | {rps:.0} | {} | {:.3} | {cpu:.2} | {:.3} | {allocs:.1} | {:+.1} | {} |",
                stack.name(),
                runs.join(", "),
                rps / peer_rps,
                cpu / peer_cpu,
                allocs - peer_allocs,
                retried.join(", ")
            );
        }
        println!();
    }
}
