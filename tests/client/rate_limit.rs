//! The rate limit against loopback servers, on tokio's paused clock: the server stamps each
//! request with the virtual instant it arrived.

use std::time::Duration;

use crate::fault_server::{Answer, FaultServer, status};
use http::StatusCode;
use stopover::client::limit::{RateLimit, RateLimitPolicy, RateLimitPolicyBuilder};
use stopover::client::{Client, ErrorKind};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn client(policy: RateLimitPolicyBuilder) -> Client {
    Client::builder()
        .middleware(RateLimit::new(policy.build().unwrap()))
        .build()
        .unwrap()
}

/// Arrival instants, as offsets from the first.
fn arrivals(server: &FaultServer) -> Vec<Duration> {
    let seen = server.seen();
    let mut at: Vec<_> = seen.iter().map(|seen| seen.at).collect();
    at.sort();
    at.iter().map(|instant| *instant - at[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn a_request_over_the_rate_fails_fast_with_the_wait_and_is_not_sent() {
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let client = client(RateLimitPolicy::builder(2, Duration::from_secs(1)));
    for _ in 0..2 {
        client.get(server.url("/")).send().await.unwrap();
    }
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_eq!(err.retry_after(), Some(ms(500)));
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_request_within_the_wait_bound_waits_for_its_turn() {
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let client = client(
        RateLimitPolicy::builder(2, Duration::from_secs(1))
            .burst(1)
            .max_wait(Duration::from_secs(1)),
    );
    for _ in 0..3 {
        let response = client.get(server.url("/")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(arrivals(&server), [ms(0), ms(500), ms(1000)]);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_would_wait_past_the_bound_fails_at_once() {
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let client = client(
        RateLimitPolicy::builder(1, Duration::from_secs(1))
            .burst(1)
            .max_wait(ms(999)),
    );
    client.get(server.url("/")).send().await.unwrap();
    let before = tokio::time::Instant::now();
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(before.elapsed(), Duration::ZERO, "no wait before failing");
}

#[tokio::test(start_paused = true)]
async fn concurrent_arrivals_never_exceed_the_rate_plus_the_burst_in_any_second() {
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let client = client(
        RateLimitPolicy::builder(5, Duration::from_secs(1))
            .burst(2)
            .max_wait(Duration::from_secs(60)),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..30 {
        tasks.spawn(client.get(server.url("/")).send());
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap().status(), StatusCode::OK);
    }
    let at = arrivals(&server);
    assert_eq!(at.len(), 30);
    for (i, start) in at.iter().enumerate() {
        let in_window = at[i..]
            .iter()
            .take_while(|t| **t < *start + Duration::from_secs(1))
            .count();
        assert!(
            in_window <= 5 + 2,
            "{in_window} arrivals in 1 s from {start:?}: {at:?}"
        );
    }
    // And the pace is the rate, not slower: 30 requests, 2 at once, then one every 200 ms.
    assert_eq!(at.last(), Some(&ms(200 * 28)));
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_pauses_the_key_for_every_request() {
    let server = FaultServer::start(|_, index| {
        if index == 0 {
            Answer::new(429).header("retry-after", "2").reply()
        } else {
            status(200, "ok")
        }
    })
    .await;
    let client = client(RateLimitPolicy::builder(100, Duration::from_secs(1)));
    let first = client.get(server.url("/a")).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
    let err = client.get(server.url("/b")).send().await.unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    tokio::time::advance(Duration::from_secs(2)).await;
    let after = client.get(server.url("/b")).send().await.unwrap();
    assert_eq!(after.status(), StatusCode::OK);
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn requests_waiting_on_a_pause_go_when_it_ends() {
    let server = FaultServer::start(|_, index| {
        if index == 0 {
            Answer::new(503).header("retry-after", "2").reply()
        } else {
            status(200, "ok")
        }
    })
    .await;
    let client = client(
        RateLimitPolicy::builder(100, Duration::from_secs(1)).max_wait(Duration::from_secs(5)),
    );
    let first = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::SERVICE_UNAVAILABLE);
    let second = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(arrivals(&server), [ms(0), ms(2000)]);
}

#[tokio::test(start_paused = true)]
async fn a_429_without_retry_after_does_not_pause_the_key() {
    let server = FaultServer::start(|_, index| {
        if index == 0 {
            status(429, "slow down")
        } else {
            status(200, "ok")
        }
    })
    .await;
    let client = client(RateLimitPolicy::builder(100, Duration::from_secs(1)));
    client.get(server.url("/")).send().await.unwrap();
    let second = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_on_another_status_does_not_pause_the_key() {
    let server = FaultServer::start(|_, index| {
        if index == 0 {
            Answer::new(500).header("retry-after", "30").reply()
        } else {
            status(200, "ok")
        }
    })
    .await;
    let client = client(RateLimitPolicy::builder(100, Duration::from_secs(1)));
    client.get(server.url("/")).send().await.unwrap();
    assert!(client.get(server.url("/")).send().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_longer_than_the_cap_pauses_for_the_cap() {
    let server =
        FaultServer::start(|_, _| Answer::new(429).header("retry-after", "3600").reply()).await;
    let client = client(
        RateLimitPolicy::builder(100, Duration::from_secs(1))
            .retry_after_cap(Duration::from_secs(5)),
    );
    client.get(server.url("/")).send().await.unwrap();
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
}

#[tokio::test(start_paused = true)]
async fn pausing_can_be_turned_off() {
    let server =
        FaultServer::start(|_, _| Answer::new(429).header("retry-after", "10").reply()).await;
    let client =
        client(RateLimitPolicy::builder(100, Duration::from_secs(1)).pause_on_retry_after(false));
    client.get(server.url("/")).send().await.unwrap();
    assert!(client.get(server.url("/")).send().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn each_origin_has_its_own_rate() {
    let first = FaultServer::start(|_, _| status(200, "ok")).await;
    let second = FaultServer::start(|_, _| status(200, "ok")).await;
    let client = client(RateLimitPolicy::builder(1, Duration::from_secs(1)));
    client.get(first.url("/")).send().await.unwrap();
    assert!(client.get(first.url("/")).send().await.is_err());
    assert!(client.get(second.url("/")).send().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_key_function_shares_one_rate_between_origins() {
    let first = FaultServer::start(|_, _| status(200, "ok")).await;
    let second = FaultServer::start(|_, _| status(200, "ok")).await;
    let limit = RateLimit::new(
        RateLimitPolicy::builder(1, Duration::from_secs(1))
            .build()
            .unwrap(),
    )
    .key(|_| "account-42".to_owned());
    let client = Client::builder().middleware(limit).build().unwrap();
    client.get(first.url("/")).send().await.unwrap();
    let err = client.get(second.url("/")).send().await.unwrap_err();
    assert!(err.is_rate_limited(), "{err}");
    assert_eq!(second.hits(), 0);
}
