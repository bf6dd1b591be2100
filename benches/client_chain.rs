//! Client chain cost, in process: stopover against reqwest-middleware with the same number of
//! pass-through middlewares, each ending in a middleware that answers without the network, so
//! the figures are the chain's own cost plus building the request.
//!
//! `cargo bench -p stopover-benches --bench client_chain` prints the allocation table first, then criterion's times.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use std::hint::black_box;

use criterion::{Criterion, criterion_group};
use stopover::client::{Client, Next, Request, Response, from_fn};

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

const URL: &str = "http://127.0.0.1:9/items?page=1";
const DEPTHS: [usize; 4] = [0, 1, 4, 16];
const PROFILE_REQUESTS: usize = 20_000;

fn stopover_client(depth: usize) -> Client {
    let mut builder = Client::builder();
    for _ in 0..depth {
        builder = builder.middleware(from_fn(|req: Request, next: Next| next.run(req)));
    }
    builder
        .middleware(from_fn(|req: Request, _next: Next| async move {
            Ok(Response::from_http(
                http::Response::new(bytes::Bytes::new()),
                req.url().clone(),
            ))
        }))
        .build()
        .expect("the client builds")
}

struct PassThrough;

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for PassThrough {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        next.run(req, extensions).await
    }
}

struct Answer;

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for Answer {
    async fn handle(
        &self,
        _req: reqwest::Request,
        _extensions: &mut http::Extensions,
        _next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        Ok(reqwest::Response::from(http::Response::new("")))
    }
}

fn peer_client(depth: usize) -> reqwest_middleware::ClientWithMiddleware {
    let mut builder = reqwest_middleware::ClientBuilder::new(reqwest::Client::new());
    for _ in 0..depth {
        builder = builder.with(PassThrough);
    }
    builder.with(Answer).build()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn print_allocations() {
    let rt = runtime();
    println!("allocations per request (exact, counting allocator)");
    println!("| middlewares | stopover | reqwest-middleware |");
    println!("|---|---|---|");
    for depth in DEPTHS {
        let client = stopover_client(depth);
        let (ours, _) = counting_alloc::per_call(2_000, || {
            rt.block_on(async {
                let response = client.get(URL).send().await.expect("answered");
                black_box(response);
            })
        });
        let peer = peer_client(depth);
        let (theirs, _) = counting_alloc::per_call(2_000, || {
            rt.block_on(async {
                let response = peer.get(URL).send().await.expect("answered");
                black_box(response);
            })
        });
        println!("| {depth} | {ours:.1} | {theirs:.1} |");
    }
}

fn bench_chain(c: &mut Criterion) {
    let rt = runtime();
    for depth in DEPTHS {
        let mut group = c.benchmark_group(format!("client_chain/{depth}"));
        let client = stopover_client(depth);
        group.bench_function("stopover", |b| {
            b.to_async(&rt)
                .iter(|| async { client.get(URL).send().await.expect("answered") })
        });
        let peer = peer_client(depth);
        group.bench_function("reqwest-middleware", |b| {
            b.to_async(&rt)
                .iter(|| async { peer.get(URL).send().await.expect("answered") })
        });
        group.finish();
    }
}

/// `CLIENT_CHAIN_PROFILE=<client>/<depth>` (`stopover/4`, `reqwest-middleware/4`): sends
/// `PROFILE_REQUESTS` requests with one client and exits, for `valgrind --tool=callgrind`;
/// `none/0` only builds the runtime, to subtract. `benches/instructions.sh` runs them all.
fn profile(target: &str) {
    let rt = runtime();
    for depth in DEPTHS {
        if target == format!("stopover/{depth}") {
            let client = stopover_client(depth);
            rt.block_on(async {
                for _ in 0..PROFILE_REQUESTS {
                    black_box(client.get(URL).send().await.expect("answered"));
                }
            });
        } else if target == format!("reqwest-middleware/{depth}") {
            let peer = peer_client(depth);
            rt.block_on(async {
                for _ in 0..PROFILE_REQUESTS {
                    black_box(peer.get(URL).send().await.expect("answered"));
                }
            });
        }
    }
}

criterion_group!(benches, bench_chain);

fn main() {
    if let Ok(target) = std::env::var("CLIENT_CHAIN_PROFILE") {
        profile(&target);
        return;
    }
    print_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
