//! What the Redis token store costs a request whose token is cached and fresh: the same client
//! chain (a bearer token middleware, then a middleware that answers without the network) with
//! no token middleware, with the in-process cache, and with the cache on the Redis store.
//! The target is no Redis round trip at all while the token is fresh: the bench also counts
//! the commands Redis processed during the timed requests (`INFO stats`).
//!
//! `cargo bench -p stopover-benches --bench token_store` starts its own `redis-server` on a
//! free loopback port; without one installed it measures the in-process rows only and says so.

use std::hint::black_box;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group};
use stopover::client::token::redis::RedisTokenStore;
use stopover::client::token::{Token, TokenAuth, TokenCache, source_fn};
use stopover::client::{Client, ClientBuilder, Next, Request, Response, from_fn};

const URL: &str = "http://127.0.0.1:9/items";
/// The origin of [`URL`]: the token's scope.
const ORIGIN: &str = "http://127.0.0.1:9";
const COUNTED_REQUESTS: u64 = 10_000;

struct RedisServer {
    port: u16,
    process: Child,
}

impl RedisServer {
    fn start() -> Option<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .ok()?
            .port();
        let process = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        for _ in 0..500 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(RedisServer { port, process });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Commands Redis has processed so far (includes the `INFO` asking).
    fn commands_processed(&self) -> Option<u64> {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "INFO", "stats"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .find_map(|line| line.strip_prefix("total_commands_processed:"))
            .and_then(|count| count.trim().parse().ok())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn answering(builder: ClientBuilder) -> Client {
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

/// The token's scope: the origin every measured request names (nothing goes on the wire).
fn scoped<S: stopover::client::token::TokenSource>(auth: TokenAuth<S>) -> TokenAuth<S> {
    auth.origins([stopover::client::Origin::parse(ORIGIN).expect("a valid origin")])
}

fn token_cache() -> TokenCache<impl stopover::client::token::TokenSource> {
    TokenCache::new(source_fn(|_client| async {
        Ok(Token::new("bench-token").expires_in(Duration::from_secs(3600)))
    }))
}

fn bench_token_store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let none = answering(Client::builder());
    let in_process = answering(
        Client::builder().middleware(scoped(TokenAuth::from_cache(Arc::new(token_cache())))),
    );
    let redis = RedisServer::start();
    let on_redis = redis.as_ref().map(|server| {
        let store = RedisTokenStore::new(format!("redis://127.0.0.1:{}/", server.port))
            .expect("a valid Redis URL");
        let client = answering(Client::builder().middleware(scoped(TokenAuth::from_cache(
            Arc::new(token_cache().with_store(store)),
        ))));
        // The first request fetches the token through Redis; the ones measured find it cached.
        rt.block_on(client.get(URL).send()).expect("answered");
        client
    });
    if redis.is_none() {
        println!("redis-server is not installed (apt-get install redis-server): no Redis row");
    }
    if let (Some(server), Some(client)) = (&redis, &on_redis) {
        let before = server.commands_processed();
        rt.block_on(async {
            for _ in 0..COUNTED_REQUESTS {
                black_box(client.get(URL).send().await.expect("answered"));
            }
        });
        if let (Some(before), Some(after)) = (before, server.commands_processed()) {
            // One of them is the second INFO.
            println!(
                "Redis commands during {COUNTED_REQUESTS} requests on a fresh token: {}",
                after - before - 1
            );
        }
    }

    let mut group = c.benchmark_group("token_store");
    group.bench_function("no_token", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(none.get(URL).send().await.expect("answered")) })
    });
    group.bench_function("in_process", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(in_process.get(URL).send().await.expect("answered")) })
    });
    if let Some(client) = &on_redis {
        group.bench_function("redis", |b| {
            b.to_async(&rt)
                .iter(|| async { black_box(client.get(URL).send().await.expect("answered")) })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_token_store);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
