//! The bulkhead against loopback servers that answer slowly, on tokio's paused clock.

use std::time::Duration;

use crate::fault_server::{Answer, FaultServer, Reply, status};
use http::StatusCode;
use stopover::client::bulkhead::{
    Bulkhead, BulkheadPolicy, BulkheadPolicyBuilder, BulkheadPolicyError,
};
use stopover::client::{Client, ErrorKind};

fn slow() -> Reply {
    Answer::new(200)
        .body("slow")
        .delay(Duration::from_secs(1))
        .reply()
}

fn client_with(bulkhead: &Bulkhead) -> Client {
    Client::builder()
        .middleware(bulkhead.clone())
        .build()
        .unwrap()
}

fn bulkhead(policy: BulkheadPolicyBuilder) -> Bulkhead {
    Bulkhead::new(policy.build().unwrap())
}

/// Waits (on the paused clock) until the server has seen `n` requests.
async fn until_hits(server: &FaultServer, n: usize) {
    while server.hits() < n {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_past_the_limit_is_refused_at_once_without_a_queue() {
    let server = FaultServer::start(|_, _| slow()).await;
    let bulkhead = bulkhead(BulkheadPolicy::builder(2));
    let client = client_with(&bulkhead);
    let first = tokio::spawn(client.get(server.url("/")).send());
    let second = tokio::spawn(client.get(server.url("/")).send());
    until_hits(&server, 2).await;
    assert_eq!(bulkhead.in_flight(&format!("http://{}", server.addr)), 2);
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert!(err.is_bulkhead_full(), "{err}");
    assert_eq!(err.kind(), ErrorKind::BulkheadFull);
    for task in [first, second] {
        assert_eq!(task.await.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_goes_when_a_slot_frees() {
    let server = FaultServer::start(|_, _| slow()).await;
    let client = client_with(&bulkhead(BulkheadPolicy::builder(1).queue(1)));
    let first = tokio::spawn(client.get(server.url("/")).send());
    until_hits(&server, 1).await;
    let second = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    first.await.unwrap().unwrap();
    let seen = server.seen();
    assert!(
        seen[1].at - seen[0].at >= Duration::from_secs(1),
        "the second request waited for the first's answer"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_finding_the_queue_full_is_refused() {
    let server = FaultServer::start(|_, _| slow()).await;
    let client = client_with(&bulkhead(BulkheadPolicy::builder(1).queue(1)));
    let first = tokio::spawn(client.get(server.url("/")).send());
    until_hits(&server, 1).await;
    let queued = tokio::spawn(client.get(server.url("/")).send());
    // The paused clock moves only once every task is idle: the queued request is waiting.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert!(err.is_bulkhead_full(), "{err}");
    assert!(err.to_string().contains("queue is full"), "{err}");
    first.await.unwrap().unwrap();
    queued.await.unwrap().unwrap();
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_is_refused_after_the_queue_timeout() {
    let server = FaultServer::start(|_, _| slow()).await;
    let client = client_with(&bulkhead(
        BulkheadPolicy::builder(1)
            .queue(1)
            .queue_timeout(Duration::from_millis(300)),
    ));
    let first = tokio::spawn(client.get(server.url("/")).send());
    until_hits(&server, 1).await;
    let before = tokio::time::Instant::now();
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert!(err.is_bulkhead_full(), "{err}");
    assert_eq!(before.elapsed(), Duration::from_millis(300));
    first.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_request_its_caller_drops_frees_its_slot() {
    let server = FaultServer::start(|seen, _| {
        if seen.path() == "/hang" {
            Reply::Hang
        } else {
            status(200, "ok")
        }
    })
    .await;
    let client = client_with(&bulkhead(BulkheadPolicy::builder(1)));
    let dropped = tokio::time::timeout(
        Duration::from_secs(1),
        client.get(server.url("/hang")).send(),
    )
    .await;
    assert!(dropped.is_err());
    let response = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn each_origin_has_its_own_compartment() {
    let busy = FaultServer::start(|_, _| slow()).await;
    let other = FaultServer::start(|_, _| status(200, "ok")).await;
    let client = client_with(&bulkhead(BulkheadPolicy::builder(1)));
    let first = tokio::spawn(client.get(busy.url("/")).send());
    until_hits(&busy, 1).await;
    assert!(client.get(busy.url("/")).send().await.is_err());
    assert!(client.get(other.url("/")).send().await.is_ok());
    first.await.unwrap().unwrap();
}

#[test]
fn invalid_configurations_name_the_bad_input() {
    assert_eq!(
        BulkheadPolicy::builder(0).build().unwrap_err(),
        BulkheadPolicyError::ZeroConcurrency
    );
    assert_eq!(
        BulkheadPolicy::builder(1)
            .queue_timeout(Duration::ZERO)
            .build()
            .unwrap_err(),
        BulkheadPolicyError::ZeroQueueTimeout
    );
    assert_eq!(
        BulkheadPolicy::builder(usize::MAX).build().unwrap_err(),
        BulkheadPolicyError::ConcurrencyTooLarge(usize::MAX)
    );
    assert_eq!(
        BulkheadPolicy::builder(1).max_keys(0).build().unwrap_err(),
        BulkheadPolicyError::ZeroMaxKeys
    );
}
