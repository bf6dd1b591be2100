//! The fleet-wide rate limit against a real `redis-server`: several limiters, each with its own
//! connection, stand for the replicas of a fleet.
//!
//! Each test starts its own `redis-server` on a free 127.0.0.1 port and kills it when done.
//! Without `redis-server` the tests say so and pass, except under `CI=true`, where they fail.
//! These run on the real clock: Redis's `TIME` is the clock every replica shares.

mod fault_server;

use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::time::Duration;

use fault_server::{Answer, FaultServer, status};
use stopover::client::Client;
use stopover::client::limit::{RateLimitPolicy, RedisRateLimit, Unreachable};

/// A `redis-server` of our own; killed when dropped.
struct RedisServer {
    port: u16,
    process: std::process::Child,
}

impl RedisServer {
    fn start() -> Option<RedisServer> {
        let port = free_port();
        let process = match std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(process) => process,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "redis-server is not installed; CI must install it (see .ci/run)"
                );
                eprintln!("SKIPPED: redis-server is not installed");
                return None;
            }
            Err(err) => panic!("redis-server did not start: {err}"),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(RedisServer { port, process })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// `n` replicas: each a client with its own limiter and its own Redis connection.
fn replicas(url: &str, policy: &RateLimitPolicy, n: usize) -> Vec<Client> {
    (0..n)
        .map(|_| {
            let redis = redis::Client::open(url).unwrap();
            let limit = RedisRateLimit::new(redis, policy.clone());
            Client::builder().middleware(limit).build().unwrap()
        })
        .collect()
}

#[tokio::test]
async fn replicas_share_one_limit_and_never_pass_the_burst_together() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    // One a minute with a burst of 3: within the test, exactly 3 requests may go in all.
    let policy = RateLimitPolicy::builder(1, Duration::from_secs(60))
        .burst(3)
        .build()
        .unwrap();
    let fleet = replicas(&redis.url(), &policy, 4);
    let mut tasks = tokio::task::JoinSet::new();
    for client in &fleet {
        for _ in 0..5 {
            tasks.spawn(client.get(server.url("/")).send());
        }
    }
    let (mut sent, mut refused) = (0, 0);
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            Ok(_) => sent += 1,
            Err(err) => {
                assert!(err.is_rate_limited(), "{err}");
                let wait = err.retry_after().expect("a refusal tells the wait");
                assert!(wait > Duration::from_secs(50), "{wait:?}");
                refused += 1;
            }
        }
    }
    assert_eq!((sent, refused), (3, 17));
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn a_request_within_the_bound_waits_for_the_fleet_turn() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let policy = RateLimitPolicy::builder(4, Duration::from_secs(1))
        .burst(1)
        .max_wait(Duration::from_secs(2))
        .build()
        .unwrap();
    let fleet = replicas(&redis.url(), &policy, 2);
    for client in &fleet {
        client.get(server.url("/")).send().await.unwrap();
    }
    let seen = server.seen();
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_millis(240),
        "the second replica waited {gap:?}"
    );
}

#[tokio::test]
async fn a_retry_after_seen_by_one_replica_pauses_every_replica() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = FaultServer::start(|_, index| {
        if index == 0 {
            Answer::new(429).header("retry-after", "2").reply()
        } else {
            status(200, "ok")
        }
    })
    .await;
    let policy = RateLimitPolicy::builder(100, Duration::from_secs(1))
        .build()
        .unwrap();
    let fleet = replicas(&redis.url(), &policy, 4);
    let first = fleet[0].get(server.url("/")).send().await.unwrap();
    assert_eq!(first.status(), 429);
    for client in &fleet[1..] {
        let err = client.get(server.url("/")).send().await.unwrap_err();
        assert!(err.is_rate_limited(), "{err}");
        let wait = err.retry_after().unwrap();
        assert!(
            wait > Duration::from_millis(1500) && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
    }
    assert_eq!(server.hits(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for client in &fleet {
        assert_eq!(
            client.get(server.url("/")).send().await.unwrap().status(),
            200
        );
    }
}

#[tokio::test]
async fn redis_unreachable_fails_closed_within_the_call_timeout() {
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let nobody = format!("redis://127.0.0.1:{}/", free_port());
    let policy = RateLimitPolicy::builder(100, Duration::from_secs(1))
        .build()
        .unwrap();
    let limit = RedisRateLimit::new(redis::Client::open(nobody).unwrap(), policy)
        .call_timeout(Duration::from_millis(300));
    let client = Client::builder().middleware(limit).build().unwrap();
    let started = std::time::Instant::now();
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    assert_eq!(err.retry_after(), None);
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn redis_unreachable_falls_back_to_the_local_limit_when_asked() {
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let nobody = format!("redis://127.0.0.1:{}/", free_port());
    let policy = RateLimitPolicy::builder(100, Duration::from_secs(1))
        .build()
        .unwrap();
    let fallback = RateLimitPolicy::builder(1, Duration::from_secs(60))
        .build()
        .unwrap();
    let limit = RedisRateLimit::new(redis::Client::open(nobody).unwrap(), policy)
        .call_timeout(Duration::from_millis(300))
        .when_unreachable(Unreachable::Local(fallback));
    let client = Client::builder().middleware(limit).build().unwrap();
    assert_eq!(
        client.get(server.url("/")).send().await.unwrap().status(),
        200
    );
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    assert!(err.retry_after().is_some());
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn redis_killed_mid_run_gives_the_chosen_behaviour_and_no_hang() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let policy = RateLimitPolicy::builder(100, Duration::from_secs(1))
        .build()
        .unwrap();
    let limit = RedisRateLimit::new(redis::Client::open(redis.url()).unwrap(), policy)
        .call_timeout(Duration::from_millis(300));
    let client = Client::builder().middleware(limit).build().unwrap();
    assert_eq!(
        client.get(server.url("/")).send().await.unwrap().status(),
        200
    );
    drop(redis);
    let started = std::time::Instant::now();
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(server.hits(), 1);
}
