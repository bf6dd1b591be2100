//! The standard resilience pipeline against loopback servers, on tokio's paused clock: each
//! test shows one consequence of the order its module doc explains.

use std::time::Duration;

use crate::fault_server::{FaultServer, Reply, status};
use http::StatusCode;
use stopover::client::breaker::{CircuitBreaker, CircuitBreakerPolicy, Window};
use stopover::client::limit::{RateLimit, RateLimitPolicy};
use stopover::client::retry::{Retry, RetryPolicy};
use stopover::client::{Attempts, Client};
use stopover::resilience::{StandardPipeline, StandardPipelineBuilder, StandardPipelineError};

fn client(pipeline: StandardPipelineBuilder) -> Client {
    Client::builder()
        .middlewares(pipeline.build().unwrap().chain())
        .build()
        .unwrap()
}

fn eager_retry(attempts: u32) -> Retry {
    Retry::new(
        RetryPolicy::builder()
            .max_attempts(attempts)
            .backoff(Duration::ZERO, Duration::ZERO)
            .no_budget()
            .build()
            .unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn a_hanging_attempt_is_cut_by_the_attempt_timeout_and_retried() {
    let server = FaultServer::start(|_, index| {
        if index == 0 {
            Reply::Hang
        } else {
            status(200, "ok")
        }
    })
    .await;
    let client = client(StandardPipeline::builder().attempt_timeout(Duration::from_secs(1)));
    let response = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.extensions().get::<Attempts>(), Some(&Attempts(2)));
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_total_timeout_bounds_every_attempt_and_every_wait() {
    let server = FaultServer::start(|_, _| Reply::Hang).await;
    let client = client(
        StandardPipeline::builder()
            .retry(eager_retry(10))
            .total_timeout(Duration::from_secs(15))
            .attempt_timeout(Duration::from_secs(10)),
    );
    let started = tokio::time::Instant::now();
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(15));
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn attempts_that_time_out_open_the_breaker_and_the_retry_stops_there() {
    let server = FaultServer::start(|_, _| Reply::Hang).await;
    let breaker = CircuitBreaker::new(
        CircuitBreakerPolicy::builder()
            .window(Window::Count(2))
            .minimum_calls(2)
            .build()
            .unwrap(),
    );
    let client = client(
        StandardPipeline::builder()
            .retry(eager_retry(5))
            .circuit_breaker(breaker)
            .attempt_timeout(Duration::from_secs(1)),
    );
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert!(err.is_circuit_open(), "{err}");
    assert_eq!(err.attempts(), Some(3));
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_call_over_the_rate_is_refused_before_any_attempt() {
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let limit = RateLimit::new(
        RateLimitPolicy::builder(1, Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    let client = client(StandardPipeline::builder().rate_limit(limit));
    client.get(server.url("/")).send().await.unwrap();
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    assert_eq!(err.attempts(), None, "refused outside the retry");
    assert_eq!(server.hits(), 1);
}

#[test]
fn timeouts_that_cannot_work_are_refused_by_name() {
    let err = |builder: StandardPipelineBuilder| builder.build().unwrap_err();
    assert_eq!(
        err(StandardPipeline::builder().total_timeout(Duration::ZERO)),
        StandardPipelineError::ZeroTimeout("total_timeout")
    );
    assert_eq!(
        err(StandardPipeline::builder().attempt_timeout(Duration::ZERO)),
        StandardPipelineError::ZeroTimeout("attempt_timeout")
    );
    assert_eq!(
        err(StandardPipeline::builder()
            .total_timeout(Duration::from_secs(5))
            .attempt_timeout(Duration::from_secs(6))),
        StandardPipelineError::AttemptAboveTotal {
            attempt: Duration::from_secs(6),
            total: Duration::from_secs(5)
        }
    );
}

#[test]
fn the_default_pipeline_has_four_middlewares_and_pieces_add_to_it() {
    assert_eq!(
        StandardPipeline::builder().build().unwrap().chain().len(),
        4
    );
    let limit = RateLimit::new(
        RateLimitPolicy::builder(1, Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    let with_limit = StandardPipeline::builder()
        .rate_limit(limit)
        .build()
        .unwrap();
    assert_eq!(with_limit.chain().len(), 5);
}
