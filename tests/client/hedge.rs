//! Hedging against loopback servers that answer slowly or fail, on tokio's paused clock.

use std::time::Duration;

use crate::fault_server;
use crate::fault_server::{Answer, FaultServer, Reply, status};
use http::StatusCode;
use stopover::client::hedge::{Hedge, HedgePolicy, HedgePolicyBuilder, HedgePolicyError};
use stopover::client::{Attempts, Client};

const DELAY: Duration = Duration::from_millis(100);

fn client(policy: HedgePolicyBuilder) -> Client {
    Client::builder()
        .middleware(Hedge::new(policy.build().unwrap()))
        .build()
        .unwrap()
}

fn policy() -> HedgePolicyBuilder {
    HedgePolicy::builder().delay(DELAY)
}

/// The first request answers after 10 s, the others at once with `copy`.
fn slow_first() -> impl Fn(&fault_server::Seen, usize) -> Reply {
    |_, index| {
        if index == 0 {
            Answer::new(200)
                .body("first")
                .delay(Duration::from_secs(10))
                .reply()
        } else {
            status(200, "copy")
        }
    }
}

fn attempts(response: &stopover::client::Response) -> Option<u32> {
    response.extensions().get::<Attempts>().map(|a| a.0)
}

#[tokio::test(start_paused = true)]
async fn a_slow_request_is_copied_after_the_delay_and_the_first_answer_wins() {
    let server = FaultServer::start(slow_first()).await;
    let started = tokio::time::Instant::now();
    let response = client(policy()).get(server.url("/")).send().await.unwrap();
    assert_eq!(started.elapsed(), DELAY);
    assert_eq!(attempts(&response), Some(2));
    assert_eq!(response.text().await.unwrap(), "copy");
    let seen = server.seen();
    assert_eq!(seen[1].at - seen[0].at, DELAY);
}

#[tokio::test(start_paused = true)]
async fn an_answer_before_the_delay_is_not_copied() {
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let response = client(policy()).get(server.url("/")).send().await.unwrap();
    assert_eq!(attempts(&response), Some(1));
    tokio::time::sleep(DELAY * 3).await;
    assert_eq!(server.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failure_starts_the_copy_at_once() {
    let server = FaultServer::start(|_, index| {
        if index == 0 {
            status(503, "down")
        } else {
            status(200, "ok")
        }
    })
    .await;
    let started = tokio::time::Instant::now();
    let response = client(policy().delay(Duration::from_secs(5)))
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn when_every_attempt_fails_the_first_failure_is_returned() {
    let server = FaultServer::start(|_, index| status(503, &format!("down {index}"))).await;
    let response = client(policy().max_hedges(2))
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(attempts(&response), Some(3));
    assert_eq!(response.text().await.unwrap(), "down 0");
    assert_eq!(server.hits(), 3);
}

#[tokio::test(start_paused = true)]
async fn copies_never_exceed_the_bound() {
    let server = FaultServer::start(|_, _| Reply::Hang).await;
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        client(policy().max_hedges(2)).get(server.url("/")).send(),
    )
    .await;
    assert!(outcome.is_err(), "nothing answers");
    assert_eq!(server.hits(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_post_without_an_idempotency_key_is_not_copied() {
    let server = FaultServer::start(slow_first()).await;
    let response = client(policy())
        .post(server.url("/"))
        .body("pay")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "first");
    assert_eq!(server.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_post_with_an_idempotency_key_is_copied_with_its_body() {
    let server = FaultServer::start(slow_first()).await;
    let response = client(policy())
        .post(server.url("/"))
        .header("idempotency-key", "k-1")
        .body("pay")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "copy");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|seen| seen.body == b"pay"));
}

#[test]
fn max_hedges_outside_one_to_ten_is_refused() {
    assert_eq!(
        HedgePolicy::builder().max_hedges(0).build().unwrap_err(),
        HedgePolicyError::MaxHedges(0)
    );
    assert_eq!(
        HedgePolicy::builder().max_hedges(11).build().unwrap_err(),
        HedgePolicyError::MaxHedges(11)
    );
}
