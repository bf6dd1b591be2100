//! The circuit breaker against loopback servers that fail on purpose, on tokio's paused clock.
//!
//! The scripted server closes its connections after each answer, so no pooled connection
//! leaves a timer that the paused clock would jump to.

use std::time::Duration;

use crate::fault_server;
use crate::fault_server::{Answer, FaultServer, Reply, capture_logs, status};
use http::StatusCode;
use stopover::client::breaker::{
    CircuitBreaker, CircuitBreakerPolicy, CircuitBreakerPolicyBuilder, CircuitState, Window,
};
use stopover::client::retry::{Retry, RetryPolicy};
use stopover::client::{Client, ErrorKind};

const OPEN: Duration = Duration::from_secs(10);

/// Opens at 50 % over the last 2 calls, for 10 s with no jitter; one probe.
fn policy() -> CircuitBreakerPolicyBuilder {
    CircuitBreakerPolicy::builder()
        .failure_rate(0.5)
        .window(Window::Count(2))
        .minimum_calls(2)
        .open_duration(OPEN)
        .open_jitter(0.0)
}

fn client_with(breaker: &CircuitBreaker) -> Client {
    Client::builder()
        .middleware(breaker.clone())
        .build()
        .unwrap()
}

fn breaker(policy: CircuitBreakerPolicyBuilder) -> CircuitBreaker {
    CircuitBreaker::new(policy.build().unwrap())
}

fn key(server: &FaultServer) -> String {
    format!("http://{}", server.addr)
}

/// Fails the first `failures` requests with `failure`, then answers 200.
fn fail_first(failures: usize, failure: Reply) -> impl Fn(&fault_server::Seen, usize) -> Reply {
    move |_, index| {
        if index < failures {
            failure.clone()
        } else {
            status(200, "ok")
        }
    }
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_fails_fast_with_the_time_until_the_probe_and_sends_nothing() {
    let server = FaultServer::start(|_, _| status(503, "down")).await;
    let breaker = breaker(policy());
    let client = client_with(&breaker);
    for _ in 0..2 {
        let response = client.get(server.url("/")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(breaker.state(&key(&server)), Some(CircuitState::Open));
    tokio::time::advance(Duration::from_secs(4)).await;
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert!(err.is_circuit_open(), "{err}");
    assert_eq!(err.kind(), ErrorKind::CircuitOpen);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(6)));
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn below_the_minimum_number_of_calls_failures_do_not_open_the_circuit() {
    let server = FaultServer::start(|_, _| status(503, "down")).await;
    let breaker = breaker(policy().window(Window::Count(3)).minimum_calls(3));
    let client = client_with(&breaker);
    for _ in 0..2 {
        client.get(server.url("/")).send().await.unwrap();
    }
    assert_eq!(breaker.state(&key(&server)), Some(CircuitState::Closed));
    client.get(server.url("/")).send().await.unwrap();
    assert_eq!(breaker.state(&key(&server)), Some(CircuitState::Open));
}

#[tokio::test(start_paused = true)]
async fn a_successful_probe_after_the_open_duration_closes_the_circuit() {
    let server = FaultServer::start(fail_first(2, status(503, "down"))).await;
    let breaker = breaker(policy());
    let client = client_with(&breaker);
    for _ in 0..2 {
        client.get(server.url("/")).send().await.unwrap();
    }
    tokio::time::advance(OPEN).await;
    let probe = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(probe.status(), StatusCode::OK);
    assert_eq!(breaker.state(&key(&server)), Some(CircuitState::Closed));
    let after = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::OK);
    assert_eq!(server.hits(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_opens_the_circuit_for_another_full_duration() {
    let server = FaultServer::start(|_, _| status(503, "down")).await;
    let breaker = breaker(policy());
    let client = client_with(&breaker);
    for _ in 0..2 {
        client.get(server.url("/")).send().await.unwrap();
    }
    tokio::time::advance(OPEN).await;
    let probe = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(probe.status(), StatusCode::SERVICE_UNAVAILABLE);
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert_eq!(err.retry_after(), Some(OPEN));
    assert_eq!(server.hits(), 3);
}

#[tokio::test(start_paused = true)]
async fn concurrent_calls_beyond_the_probe_bound_are_refused_while_the_probe_runs() {
    let server = FaultServer::start(|_, index| {
        if index < 2 {
            status(503, "down")
        } else {
            Answer::new(200)
                .body("slow ok")
                .delay(Duration::from_secs(1))
                .reply()
        }
    })
    .await;
    let breaker = breaker(policy());
    let client = client_with(&breaker);
    for _ in 0..2 {
        client.get(server.url("/")).send().await.unwrap();
    }
    tokio::time::advance(OPEN).await;
    let probe = tokio::spawn(client.get(server.url("/")).send());
    // Let the probe reach the server before the second call asks.
    while server.hits() < 3 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let refused = client.get(server.url("/")).send().await.unwrap_err();
    assert!(refused.is_circuit_open(), "{refused}");
    assert_eq!(refused.retry_after(), None, "the probe decides when");
    let probe = probe.await.unwrap().unwrap();
    assert_eq!(probe.status(), StatusCode::OK);
    assert_eq!(breaker.state(&key(&server)), Some(CircuitState::Closed));
    assert_eq!(server.hits(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_probe_the_caller_drops_gives_its_slot_back() {
    let server = FaultServer::start(|seen, index| {
        if index < 2 {
            status(503, "down")
        } else if seen.path() == "/hang" {
            Reply::Hang
        } else {
            status(200, "ok")
        }
    })
    .await;
    let breaker = breaker(policy());
    let client = client_with(&breaker);
    for _ in 0..2 {
        client.get(server.url("/")).send().await.unwrap();
    }
    tokio::time::advance(OPEN).await;
    let dropped = tokio::time::timeout(
        Duration::from_secs(1),
        client.get(server.url("/hang")).send(),
    )
    .await;
    assert!(dropped.is_err(), "the caller gave up on the probe");
    assert_eq!(breaker.state(&key(&server)), Some(CircuitState::HalfOpen));
    let probe = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(probe.status(), StatusCode::OK);
    assert_eq!(breaker.state(&key(&server)), Some(CircuitState::Closed));
}

#[tokio::test(start_paused = true)]
async fn slow_answers_open_the_circuit_at_the_slow_call_rate() {
    let server = FaultServer::start(|_, _| {
        Answer::new(200)
            .body("late")
            .delay(Duration::from_secs(3))
            .reply()
    })
    .await;
    let breaker = breaker(
        policy()
            .slow_call_rate(1.0)
            .slow_call_duration(Duration::from_secs(2)),
    );
    let client = client_with(&breaker);
    for _ in 0..2 {
        let response = client.get(server.url("/")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert!(err.is_circuit_open(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn connect_errors_count_as_failures() {
    // Bind and drop: nothing listens on the port.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let breaker = breaker(policy());
    let client = client_with(&breaker);
    let url = format!("http://{addr}/");
    for _ in 0..2 {
        let err = client.get(&url).send().await.unwrap_err();
        assert!(err.is_connect(), "{err}");
    }
    let err = client.get(&url).send().await.unwrap_err();
    assert!(err.is_circuit_open(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_429_does_not_open_the_circuit_by_default() {
    let server = FaultServer::start(|_, _| status(429, "slow down")).await;
    let breaker = breaker(policy());
    let client = client_with(&breaker);
    for _ in 0..4 {
        let response = client.get(server.url("/")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(breaker.state(&key(&server)), Some(CircuitState::Closed));
}

#[tokio::test(start_paused = true)]
async fn each_origin_has_its_own_circuit() {
    let failing = FaultServer::start(|_, _| status(503, "down")).await;
    let healthy = FaultServer::start(|_, _| status(200, "ok")).await;
    let breaker = breaker(policy());
    let client = client_with(&breaker);
    for _ in 0..2 {
        client.get(failing.url("/")).send().await.unwrap();
    }
    assert!(client.get(failing.url("/")).send().await.is_err());
    let response = client.get(healthy.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_key_function_groups_requests_into_one_circuit() {
    let first = FaultServer::start(|_, _| status(503, "down")).await;
    let second = FaultServer::start(|_, _| status(200, "ok")).await;
    let breaker = breaker(policy()).key(|_| "everything".to_owned());
    let client = client_with(&breaker);
    for _ in 0..2 {
        client.get(first.url("/")).send().await.unwrap();
    }
    let err = client.get(second.url("/")).send().await.unwrap_err();
    assert!(err.is_circuit_open(), "{err}");
    assert_eq!(breaker.state("everything"), Some(CircuitState::Open));
    assert_eq!(second.hits(), 0);
}

#[tokio::test(start_paused = true)]
async fn retry_never_retries_into_an_open_circuit() {
    let server = FaultServer::start(|_, _| status(503, "down")).await;
    let breaker = breaker(policy());
    let retry = RetryPolicy::builder()
        .max_attempts(5)
        .backoff(Duration::ZERO, Duration::ZERO)
        .no_budget()
        .build()
        .unwrap();
    let client = Client::builder()
        .middleware(Retry::new(retry))
        .middleware(breaker.clone())
        .build()
        .unwrap();
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert!(err.is_circuit_open(), "{err}");
    // Two attempts opened the circuit; the third was refused and not retried.
    assert_eq!(err.attempts(), Some(3));
    assert_eq!(err.gave_up(), None);
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn each_change_of_state_is_a_tracing_event() {
    let (logs, _guard) = capture_logs();
    let server = FaultServer::start(fail_first(2, status(503, "down"))).await;
    let breaker = breaker(policy());
    let client = client_with(&breaker);
    for _ in 0..2 {
        client.get(server.url("/")).send().await.unwrap();
    }
    tokio::time::advance(OPEN).await;
    client.get(server.url("/")).send().await.unwrap();
    let opened = logs.lines_with("circuit opened");
    assert_eq!(opened.len(), 1, "{}", logs.text());
    assert!(opened[0].contains(&key(&server)), "{}", opened[0]);
    assert!(opened[0].contains("failure_rate=1"), "{}", opened[0]);
    assert_eq!(logs.lines_with("circuit half-open").len(), 1);
    assert_eq!(logs.lines_with("circuit closed").len(), 1);
}
