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
use std::time::{SystemTime, UNIX_EPOCH};

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

const CHILDREN: usize = 4;
const REQUESTS_PER_CHILD: usize = 10;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The fleet's limit: 20 a second with a burst of 5, waiting up to 5 s for a turn.
fn fleet_policy() -> RateLimitPolicy {
    RateLimitPolicy::builder(20, Duration::from_secs(1))
        .burst(5)
        .max_wait(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// One member of the fleet (started by the test below; does nothing when run by itself): at
/// the agreed instant, sends its requests all at once; fails unless every one succeeds.
#[test]
fn fleet_child() {
    if std::env::var_os("STOPOVER_LIMIT_CHILD").is_none() {
        return;
    }
    let var = |name: &str| std::env::var(name).unwrap();
    let (redis_url, target, prefix) =
        (var("FLEET_REDIS"), var("FLEET_TARGET"), var("FLEET_PREFIX"));
    let at: u64 = var("FLEET_AT").parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let limit = RedisRateLimit::new(redis::Client::open(redis_url).unwrap(), fleet_policy())
            .key_prefix(prefix)
            .key(|_| "account".to_owned());
        let client = Client::builder().middleware(limit).build().unwrap();
        tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await;
        let requests = (0..REQUESTS_PER_CHILD).map(|_| {
            let (client, target) = (client.clone(), target.clone());
            tokio::spawn(async move { client.get(target).send().await.map(|r| r.status()) })
        });
        for request in futures_util::future::join_all(requests).await {
            let status = request
                .unwrap()
                .expect("every request gets its turn within 5 s");
            assert_eq!(status, 200);
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_keep_to_one_limit_in_every_window() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    // Late enough that every child has started on a loaded machine.
    let at = now_ms() + 3000;
    let mut children: Vec<_> = (0..CHILDREN)
        .map(|_| {
            tokio::process::Command::new(std::env::current_exe().unwrap())
                .args(["fleet_child", "--exact", "--nocapture", "--test-threads=1"])
                .env("STOPOVER_LIMIT_CHILD", "1")
                .env("FLEET_REDIS", redis.url())
                .env("FLEET_TARGET", server.url("/"))
                .env("FLEET_PREFIX", format!("test:{at}:"))
                .env("FLEET_AT", at.to_string())
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("the test binary starts again")
        })
        .collect();
    for child in &mut children {
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("a child process hung")
            .unwrap();
        assert!(status.success(), "a child failed");
    }
    let mut arrivals: Vec<_> = server.seen().iter().map(|seen| seen.at).collect();
    arrivals.sort();
    assert_eq!(arrivals.len(), CHILDREN * REQUESTS_PER_CHILD);
    // 20 a second and a burst of 5: at most 25 turns are granted in any second. Arrivals can
    // bunch up a little more than grants (a request granted earlier may arrive later than
    // the next one): 2 more are tolerated for that, no more.
    for (i, start) in arrivals.iter().enumerate() {
        let in_window = arrivals[i..]
            .iter()
            .take_while(|t| **t < *start + Duration::from_secs(1))
            .count();
        assert!(in_window <= 20 + 5 + 2, "{in_window} arrivals within 1 s");
    }
    // 40 requests, 5 at once and then 20 a second, take about 1.75 s in all: the processes
    // shared one quota (each alone would have sent its 10 in 0.25 s) and used all of it (the
    // upper bound is loose: a child may start late on a loaded machine).
    let span = *arrivals.last().unwrap() - arrivals[0];
    assert!(span > Duration::from_millis(1500), "{span:?}");
    assert!(span < Duration::from_secs(6), "{span:?}");
}

/// How many scripts Redis has run since it started.
async fn scripts_run(url: &str) -> u64 {
    let mut connection = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .unwrap();
    info.lines()
        .filter(|line| line.starts_with("cmdstat_eval:"))
        .filter_map(|line| line.split("calls=").nth(1))
        .filter_map(|rest| rest.split(',').next())
        .map(|calls| calls.parse::<u64>().unwrap())
        .sum()
}

#[tokio::test]
async fn with_one_script_per_request_each_request_costs_one_round_trip() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let policy = RateLimitPolicy::builder(1000, Duration::from_secs(1))
        .build()
        .unwrap();
    let limit = RedisRateLimit::new(redis::Client::open(redis.url()).unwrap(), policy)
        .one_script_per_request();
    let client = Client::builder().middleware(limit).build().unwrap();
    let before = scripts_run(&redis.url()).await;
    for _ in 0..20 {
        client.get(server.url("/")).send().await.unwrap();
    }
    assert_eq!(scripts_run(&redis.url()).await - before, 20);
}

#[tokio::test]
async fn far_from_the_limit_leases_cost_a_fraction_of_a_round_trip_per_request() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let policy = RateLimitPolicy::builder(1000, Duration::from_secs(1))
        .build()
        .unwrap();
    // The default: leases of up to 16 cells, each spent within 100 ms.
    let client = &replicas(&redis.url(), &policy, 1)[0];
    let before = scripts_run(&redis.url()).await;
    for _ in 0..100 {
        client.get(server.url("/")).send().await.unwrap();
    }
    // Leases of 1, 2, 4, 8 and then 16 cells while every lease is spent in time; a slow
    // machine that lets some leases end unspent asks more often, never once per request.
    let scripts = scripts_run(&redis.url()).await - before;
    assert!(scripts <= 25, "{scripts} scripts for 100 requests");
}

#[tokio::test]
async fn past_the_limit_a_refusal_is_remembered_and_costs_no_round_trip() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let policy = RateLimitPolicy::builder(1, Duration::from_secs(60))
        .burst(1)
        .build()
        .unwrap();
    let client = &replicas(&redis.url(), &policy, 1)[0];
    let before = scripts_run(&redis.url()).await;
    client.get(server.url("/")).send().await.unwrap();
    for _ in 0..20 {
        assert!(client.get(server.url("/")).send().await.is_err());
    }
    // One for the request that went, one for the first refusal; the other 19 were answered
    // from what that refusal said.
    assert_eq!(scripts_run(&redis.url()).await - before, 2);
}

const PAUSE_CHILDREN: usize = 4;
/// Workers per child process; each has at most one request in flight at a time.
/// With leases, each worker may also spend one cell its process leased before the pause.
const PAUSE_WORKERS: usize = 2;
/// How long a worker rests between two requests.
const PAUSE_PACE: Duration = Duration::from_millis(100);

/// One member of the fleet for the shared-pause test (started by the test below; does nothing
/// when run by itself): from the agreed instant on, each worker sends a request tagged with
/// the child's index, rests, and sends again, for 4.5 s. A request that meets the pause waits
/// for its end (the bound, 3 s, is longer than the pause); fails unless every answer is a 200
/// or the 429 the server sends once.
#[test]
fn pause_child() {
    let Some(index) = std::env::var_os("STOPOVER_PAUSE_CHILD") else {
        return;
    };
    let index = index.into_string().unwrap();
    let var = |name: &str| std::env::var(name).unwrap();
    let (redis_url, target, prefix) =
        (var("FLEET_REDIS"), var("FLEET_TARGET"), var("FLEET_PREFIX"));
    let at: u64 = var("FLEET_AT").parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let policy = RateLimitPolicy::builder(100, Duration::from_secs(1))
            .max_wait(Duration::from_secs(3))
            .build()
            .unwrap();
        let mut limit = RedisRateLimit::new(redis::Client::open(redis_url).unwrap(), policy)
            .key_prefix(prefix)
            .key(|_| "account".to_owned());
        if std::env::var_os("FLEET_ONE_SCRIPT_PER_REQUEST").is_some() {
            limit = limit.one_script_per_request();
        }
        let client = Client::builder().middleware(limit).build().unwrap();
        tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await;
        let until = std::time::Instant::now() + Duration::from_millis(4500);
        let workers = (0..PAUSE_WORKERS).map(|_| {
            let (client, target, index) = (client.clone(), target.clone(), index.clone());
            tokio::spawn(async move {
                while std::time::Instant::now() < until {
                    let response = client
                        .get(&target)
                        .header("x-child", &index)
                        .send()
                        .await
                        .expect("every request gets its turn within 3 s");
                    assert!(
                        [200, 429].contains(&response.status().as_u16()),
                        "{}",
                        response.status()
                    );
                    tokio::time::sleep(PAUSE_PACE).await;
                }
            })
        });
        for worker in futures_util::future::join_all(workers).await {
            worker.unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_seen_by_one_process_stops_every_process_for_its_length() {
    // One script per request: all that may arrive during the pause is what was in flight.
    pause_across_processes(true, PAUSE_WORKERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_leases_a_retry_after_stops_every_process_once_its_lease_is_spent() {
    // A worker's next request, 100 ms after its answer, may still spend a cell its process
    // leased before the pause (a lease lives 100 ms): one more per worker, never more.
    pause_across_processes(false, 2 * PAUSE_WORKERS).await;
}

async fn pause_across_processes(one_script_per_request: bool, allowed_per_process: usize) {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // Once every child has been seen three times (all are running), child 0's next request
    // gets the 429; the instant it was answered is kept.
    let answered_429 = std::sync::Arc::new(std::sync::Mutex::new(None));
    let server = FaultServer::start({
        let answered_429 = answered_429.clone();
        let seen_per_child = std::sync::Mutex::new([0usize; PAUSE_CHILDREN]);
        move |seen, _| {
            let child: usize = seen.header("x-child").unwrap().parse().unwrap();
            let mut per_child = seen_per_child.lock().unwrap();
            per_child[child] += 1;
            let mut answered = answered_429.lock().unwrap();
            if child == 0 && answered.is_none() && per_child.iter().all(|n| *n >= 3) {
                *answered = Some(tokio::time::Instant::now());
                return Answer::new(429).header("retry-after", "2").reply();
            }
            status(200, "ok")
        }
    })
    .await;
    let at = now_ms() + 3000;
    let mut children: Vec<_> = (0..PAUSE_CHILDREN)
        .map(|index| {
            let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
            command
                .args(["pause_child", "--exact", "--nocapture", "--test-threads=1"])
                .env("STOPOVER_PAUSE_CHILD", index.to_string())
                .env("FLEET_REDIS", redis.url())
                .env("FLEET_TARGET", server.url("/"))
                .env("FLEET_PREFIX", format!("pause:{at}:"))
                .env("FLEET_AT", at.to_string())
                .stdout(Stdio::null())
                .kill_on_drop(true);
            if one_script_per_request {
                command.env("FLEET_ONE_SCRIPT_PER_REQUEST", "1");
            }
            command.spawn().expect("the test binary starts again")
        })
        .collect();
    for child in &mut children {
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("a child process hung")
            .unwrap();
        assert!(status.success(), "a child failed");
    }
    let answered_429 = answered_429.lock().unwrap().expect("child 0 got the 429");
    let pause_end = answered_429 + Duration::from_secs(2);
    for child in 0..PAUSE_CHILDREN {
        let arrivals: Vec<_> = server
            .seen()
            .iter()
            .filter(|seen| seen.header("x-child") == Some(&child.to_string()))
            .map(|seen| seen.at)
            .collect();
        // The pause is written to Redis after the 429 left the server, and lasts 2 s from
        // there: it covers all of [answered, answered + 2 s). What may still arrive in that
        // span is what was let through before the pause was written: one request per worker
        // at most, since a worker sends one request, waits for its answer and rests 100 ms
        // (the margin: the pause reaches Redis within 100 ms of the 429 leaving the server).
        // Without the shared pause each process would send about 40 in that span.
        let during = arrivals
            .iter()
            .filter(|at| **at > answered_429 && **at < pause_end)
            .count();
        eprintln!(
            "child {child}: {during} during the pause, {} in all",
            arrivals.len()
        );
        assert!(
            during <= allowed_per_process,
            "child {child}: {during} requests arrived during the pause"
        );
        assert!(
            arrivals.iter().any(|at| *at < answered_429),
            "child {child} sent nothing before the 429"
        );
        assert!(
            arrivals.iter().any(|at| *at >= pause_end),
            "child {child} sent nothing after the pause"
        );
    }
}

const LEASE_CHILDREN: usize = 4;
const LEASE_WORKERS: usize = 4;

/// The fleet's limit for the lease test: 200 a second with a burst of 80. A lease lives
/// 100 ms, 20 cells at this rate: Redis keeps them out of the burst, so leases are on.
fn lease_policy() -> RateLimitPolicy {
    RateLimitPolicy::builder(200, Duration::from_secs(1))
        .burst(80)
        .build()
        .unwrap()
}

/// One member of the fleet for the lease test (started by the test below; does nothing when
/// run by itself): from the agreed instant on, each worker sends a request, rests 30 ms and
/// sends again, for 3 s: over 500 a second over the fleet, more than twice the limit, with
/// the burst spent at the start. A refusal is no failure.
#[test]
fn lease_child() {
    if std::env::var_os("STOPOVER_LEASE_CHILD").is_none() {
        return;
    }
    let var = |name: &str| std::env::var(name).unwrap();
    let (redis_url, target, prefix) =
        (var("FLEET_REDIS"), var("FLEET_TARGET"), var("FLEET_PREFIX"));
    let at: u64 = var("FLEET_AT").parse().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let limit = RedisRateLimit::new(redis::Client::open(redis_url).unwrap(), lease_policy())
            .key_prefix(prefix)
            .key(|_| "account".to_owned());
        let client = Client::builder().middleware(limit).build().unwrap();
        tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await;
        let until = std::time::Instant::now() + Duration::from_secs(3);
        let workers = (0..LEASE_WORKERS).map(|_| {
            let (client, target) = (client.clone(), target.clone());
            tokio::spawn(async move {
                while std::time::Instant::now() < until {
                    match client.get(&target).send().await {
                        Ok(response) => assert_eq!(response.status(), 200),
                        Err(err) => assert!(err.is_rate_limited(), "{err}"),
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            })
        });
        for worker in futures_util::future::join_all(workers).await {
            worker.unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_with_leases_keep_to_one_limit_in_every_window() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let before = scripts_run(&redis.url()).await;
    let at = now_ms() + 3000;
    let mut children: Vec<_> = (0..LEASE_CHILDREN)
        .map(|_| {
            tokio::process::Command::new(std::env::current_exe().unwrap())
                .args(["lease_child", "--exact", "--nocapture", "--test-threads=1"])
                .env("STOPOVER_LEASE_CHILD", "1")
                .env("FLEET_REDIS", redis.url())
                .env("FLEET_TARGET", server.url("/"))
                .env("FLEET_PREFIX", format!("lease:{at}:"))
                .env("FLEET_AT", at.to_string())
                .stdout(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("the test binary starts again")
        })
        .collect();
    for child in &mut children {
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("a child process hung")
            .unwrap();
        assert!(status.success(), "a child failed");
    }
    let scripts = scripts_run(&redis.url()).await - before;
    let mut arrivals: Vec<_> = server.seen().iter().map(|seen| seen.at).collect();
    arrivals.sort();
    // 200 a second and a burst of 80: at most 280 in any second, leased cells included (a
    // cell leased late in one second and spent early in the next is paid for by the 20 cells
    // Redis keeps out of the burst). 2 more are tolerated for arrival jitter, as above.
    let mut busiest = 0;
    for (i, start) in arrivals.iter().enumerate() {
        let in_window = arrivals[i..]
            .iter()
            .take_while(|t| **t < *start + Duration::from_secs(1))
            .count();
        busiest = busiest.max(in_window);
    }
    eprintln!(
        "{} arrivals, {scripts} scripts, at most {busiest} in a second",
        arrivals.len()
    );
    assert!(busiest <= 200 + 80 + 2, "{busiest} arrivals within 1 s");
    // The fleet asked for more than the limit and used it: 80 at once, then 200 a second
    // (each process alone would send about 400 in 3 s). Leases are large at the start, while
    // the burst lasts, and a single cell once the fleet is at the limit; the scripts printed
    // also count refusals, each asked again once its wait is over.
    assert!(arrivals.len() > 500, "{} arrivals", arrivals.len());
}

/// Redis round trips per request, one script per request against leases, far from the limit,
/// near it and past it: far from the limit one script per request costs exactly one round trip
/// per request sent and leases at most a quarter of one; near it leases cost fewer than one
/// script per request. Prints the figures of BENCHMARKS.md with
/// `cargo test --features redis --test rate_limit_redis -- --nocapture round_trips`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trips_per_request_are_fewer_with_leases() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let mut ratios = Vec::new();
    println!("| case | mode | requests sent | refused | scripts | scripts per request sent |");
    println!("|---|---|---|---|---|---|");
    for (case, requests, per_second, burst, workers, pace) in [
        // 500 requests one after the other, the limit a million a second.
        (
            "far: 1,000,000/s, sequential",
            500,
            1_000_000,
            1_000_000,
            1,
            None,
        ),
        // 4 workers each paced at 40 a second: 160 a second against 200.
        (
            "near: 200/s burst 80, 160/s asked",
            320,
            200,
            80,
            4,
            Some(25),
        ),
        // 4 workers back to back: far more than 200 a second.
        ("over: 200/s burst 80, unpaced", 800, 200, 80, 4, Some(0)),
    ] {
        for leases in [false, true] {
            let policy = RateLimitPolicy::builder(per_second, Duration::from_secs(1))
                .burst(burst)
                .build()
                .unwrap();
            let mut limit = RedisRateLimit::new(redis::Client::open(redis.url()).unwrap(), policy)
                .key_prefix(format!("measure:{case}:{leases}:"));
            if !leases {
                limit = limit.one_script_per_request();
            }
            let client = Client::builder().middleware(limit).build().unwrap();
            let before = scripts_run(&redis.url()).await;
            let hits_before = server.hits();
            let per_worker = requests / workers;
            let runs = (0..workers).map(|_| {
                let (client, target) = (client.clone(), server.url("/"));
                tokio::spawn(async move {
                    let mut refused = 0;
                    for _ in 0..per_worker {
                        if client.get(&target).send().await.is_err() {
                            refused += 1;
                        }
                        if let Some(pace) = pace {
                            tokio::time::sleep(Duration::from_millis(pace)).await;
                        }
                    }
                    refused
                })
            });
            let refused: usize = futures_util::future::join_all(runs)
                .await
                .into_iter()
                .map(Result::unwrap)
                .sum();
            let scripts = scripts_run(&redis.url()).await - before;
            let sent = server.hits() - hits_before;
            let mode = if leases {
                "leases (16, 100 ms)"
            } else {
                "one script per request"
            };
            let per_request = scripts as f64 / sent.max(1) as f64;
            println!("| {case} | {mode} | {sent} | {refused} | {scripts} | {per_request:.2} |");
            ratios.push((case, leases, per_request));
        }
    }
    let ratio = |case: &str, leases: bool| {
        ratios
            .iter()
            .find(|(c, l, _)| c.starts_with(case) && *l == leases)
            .map(|(_, _, ratio)| *ratio)
            .unwrap()
    };
    assert_eq!(ratio("far", false), 1.0, "{ratios:?}");
    assert!(ratio("far", true) <= 0.25, "{ratios:?}");
    assert!(ratio("near", true) < ratio("near", false), "{ratios:?}");
}
