//! What each resilience middleware costs a request on a healthy upstream, in process: each
//! client ends in a middleware that answers without the network, so the figures are the
//! middleware's own cost (and building the request) over a client with no resilience.
//!
//! `cargo bench -p stopover-benches --bench resilience` prints allocations per request
//! (exact, counting allocator). `RESILIENCE_PROFILE=<stack>` sends 20,000 requests through
//! one stack and exits, for `valgrind --tool=callgrind` (instructions per request).
//! `RESILIENCE_PENDING=1` makes the answer come on the second poll, as from the network (a
//! hedge then arms its timer):
//!
//! ```text
//! for s in none passthrough retry breaker limit bulkhead hedge hedge-quantile timeouts pipeline; do
//!   RESILIENCE_PROFILE=$s valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     --toggle-collect='tokio::runtime::runtime::Runtime::block_on*' $BIN 2>&1 | grep Collected
//! done
//! ```

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use std::hint::black_box;
use std::time::Duration;

use stopover::client::breaker::CircuitBreaker;
use stopover::client::bulkhead::{Bulkhead, BulkheadPolicy};
use stopover::client::hedge::{Hedge, HedgePolicy};
use stopover::client::limit::{RateLimit, RateLimitPolicy};
use stopover::client::retry::Retry;
use stopover::client::{Chain, Client, Next, Request, Response, from_fn};
use stopover::resilience::StandardPipeline;

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

const URL: &str = "http://127.0.0.1:9/items?page=1";
const STACKS: [&str; 10] = [
    "none",
    "passthrough",
    "retry",
    "breaker",
    "limit",
    "bulkhead",
    "hedge",
    "hedge-quantile",
    "timeouts",
    "pipeline",
];
const PROFILE_REQUESTS: usize = 20_000;

fn stack(name: &str) -> Chain {
    let generous = || {
        RateLimitPolicy::builder(1_000_000_000, Duration::from_secs(1))
            .build()
            .expect("a valid rate")
    };
    match name {
        "none" => Chain::new(),
        // The floor: what any middleware pays for its place in the chain.
        "passthrough" => Chain::new().with(from_fn(|req: Request, next: Next| next.run(req))),
        // The pipeline's two timeouts, written as it writes them: a total timeout around the
        // rest of the chain, and an attempt timeout set on the request.
        "timeouts" => Chain::new()
            .with(from_fn(|req: Request, next: Next| async move {
                match tokio::time::timeout(Duration::from_secs(30), next.run(req)).await {
                    Ok(outcome) => outcome,
                    // Never reached here; the pipeline's own error is a timeout.
                    Err(_) => Err(stopover::client::Error::bulkhead_full()),
                }
            }))
            .with(from_fn(|mut req: Request, next: Next| {
                if req.attempt_timeout().is_none() {
                    req.set_attempt_timeout(Some(Duration::from_secs(10)));
                }
                next.run(req)
            })),
        "retry" => Chain::new().with(Retry::default()),
        "breaker" => Chain::new().with(CircuitBreaker::default()),
        "limit" => Chain::new().with(RateLimit::new(generous())),
        "bulkhead" => Chain::new().with(Bulkhead::new(
            BulkheadPolicy::builder(1000)
                .build()
                .expect("a valid bulkhead"),
        )),
        "hedge" => Chain::new().with(Hedge::new(
            HedgePolicy::builder().build().expect("a valid policy"),
        )),
        "hedge-quantile" => Chain::new().with(Hedge::new(
            HedgePolicy::builder()
                .delay_quantile(0.95)
                .build()
                .expect("a valid policy"),
        )),
        "pipeline" => StandardPipeline::builder()
            .rate_limit(RateLimit::new(generous()))
            .build()
            .expect("a valid pipeline")
            .chain(),
        other => panic!("no stack {other}"),
    }
}

fn client(name: &str) -> Client {
    // With `RESILIENCE_PENDING` set, the answer comes on the second poll, as it does from the
    // network: a middleware that arms a timer only when the request is still out pays for it.
    let pending = std::env::var_os("RESILIENCE_PENDING").is_some();
    Client::builder()
        .middlewares(stack(name))
        .middleware(from_fn(move |req: Request, _next: Next| async move {
            if pending {
                tokio::task::yield_now().await;
            }
            Ok(Response::from_http(
                http::Response::new(bytes::Bytes::new()),
                req.url().clone(),
            ))
        }))
        .build()
        .expect("the client builds")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn main() {
    let rt = runtime();
    if let Ok(target) = std::env::var("RESILIENCE_PROFILE") {
        let client = client(&target);
        rt.block_on(async {
            for _ in 0..PROFILE_REQUESTS {
                black_box(client.get(URL).send().await.expect("answered"));
            }
        });
        return;
    }
    println!("allocations per request on a healthy upstream (exact, counting allocator)");
    println!("| stack | allocations | over none |");
    println!("|---|---|---|");
    let mut none = 0.0;
    for name in STACKS {
        let client = client(name);
        let (allocations, _) = counting_alloc::per_call(2_000, || {
            rt.block_on(async {
                black_box(client.get(URL).send().await.expect("answered"));
            })
        });
        if name == "none" {
            none = allocations;
        }
        println!("| {name} | {allocations:.1} | {:+.1} |", allocations - none);
    }
}
