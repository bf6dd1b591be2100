//! Hedging against loopback servers that answer slowly or fail, on tokio's paused clock.

use std::time::Duration;

use crate::fault_server;
use crate::fault_server::{Answer, FaultServer, Reply, status};
use crate::span_capture::capture;
use crate::stream_body;
use http::StatusCode;
use stopover::client::hedge::{Budget, Hedge, HedgePolicy, HedgePolicyBuilder, HedgePolicyError};
use stopover::client::{Attempts, Body, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
    assert_eq!(attempts(&response), None, "one request, nothing to tell");
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

/// Requests `0..fast` answer after 20 ms; then the first request of the slow one answers after
/// 10 s and its copy at once.
fn fast_then_slow(fast: usize) -> impl Fn(&fault_server::Seen, usize) -> Reply {
    move |_, index| {
        if index < fast {
            Answer::new(200)
                .body("fast")
                .delay(Duration::from_millis(20))
                .reply()
        } else if index == fast {
            Answer::new(200)
                .body("first")
                .delay(Duration::from_secs(10))
                .reply()
        } else {
            status(200, "copy")
        }
    }
}

fn quantile_policy() -> HedgePolicyBuilder {
    HedgePolicy::builder()
        .delay(Duration::from_millis(300))
        .delay_quantile(0.5)
        .min_samples(5)
        .quantile_window(Duration::from_secs(1))
}

/// Sends `fast` requests, lets their window end, then a slow one; the time from the slow
/// request to its copy, and the answer.
async fn gap_to_the_copy(fast: usize) -> (Duration, String) {
    let server = FaultServer::start(fast_then_slow(fast)).await;
    let client = client(quantile_policy());
    for _ in 0..fast {
        client.get(server.url("/")).send().await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let response = client.get(server.url("/")).send().await.unwrap();
    let text = response.text().await.unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), fast + 2);
    (seen[fast + 1].at - seen[fast].at, text)
}

#[tokio::test(start_paused = true)]
async fn once_a_window_has_enough_answers_the_copy_goes_at_their_quantile() {
    let (gap, text) = gap_to_the_copy(5).await;
    assert_eq!(text, "copy");
    // The median of 20 ms answers, read from its bucket: at most an eighth above.
    assert!(gap >= Duration::from_millis(20), "{gap:?}");
    assert!(gap <= Duration::from_micros(22_500), "{gap:?}");
}

#[tokio::test(start_paused = true)]
async fn before_a_window_has_enough_answers_the_copy_goes_after_the_fixed_delay() {
    let (gap, text) = gap_to_the_copy(4).await;
    assert_eq!(text, "copy");
    assert_eq!(gap, Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_sends_no_copy() {
    // Every first request is slow; the copies answer at once.
    let server = FaultServer::start(|_, index| {
        if index == 1 {
            status(200, "copy")
        } else {
            Answer::new(200)
                .body("first")
                .delay(Duration::from_secs(10))
                .reply()
        }
    })
    .await;
    let client = client(policy().budget(Budget::default().min_retries(1).ratio(0.0)));
    let copied = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(copied.text().await.unwrap(), "copy");
    let alone = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(attempts(&alone), None);
    assert_eq!(alone.text().await.unwrap(), "first");
    assert_eq!(server.hits(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_past_its_replay_cap_is_sent_once_and_arrives_whole() {
    let server = FaultServer::start(slow_first()).await;
    let response = client(policy())
        .put(server.url("/"))
        .body(Body::wrap_stream_replayable(
            stream_body(&["abc", "def"]),
            4,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "first");
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, b"abcdef");
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_within_its_replay_cap_is_copied_whole() {
    let server = FaultServer::start(slow_first()).await;
    let response = client(policy())
        .put(server.url("/"))
        .body(Body::wrap_stream_replayable(
            stream_body(&["abc", "def"]),
            64,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "copy");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|seen| seen.body == b"abcdef"), "{seen:?}");
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_without_a_replay_cap_is_sent_once() {
    let server = FaultServer::start(slow_first()).await;
    let response = client(policy())
        .put(server.url("/"))
        .body(Body::wrap_stream(stream_body(&["abc", "def"])))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "first");
    assert_eq!(server.hits(), 1);
    assert_eq!(server.seen()[0].body, b"abcdef");
}

#[tokio::test(start_paused = true)]
async fn each_copy_is_its_own_wire_span_with_its_resend_count() {
    let warm_up = FaultServer::start(|_, _| status(200, "ok")).await;
    let server = FaultServer::start(slow_first()).await;
    let (spans, _guard) = capture();
    // Another test thread registering the client's span callsites at the moment the capture
    // starts can leave them disabled for it (tracing caches each callsite's interest); until a
    // probe request is seen, the interests are computed again.
    for _ in 0..100 {
        client(policy()).get(warm_up.url("/")).send().await.unwrap();
        if !spans.client().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        tracing::callsite::rebuild_interest_cache();
    }
    let before = spans.client().len();
    assert!(before > 0, "the capture never saw a client span");
    let response = client(policy()).get(server.url("/")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "copy");
    let client_spans = spans.client()[before..].to_vec();
    assert_eq!(client_spans.len(), 3, "{client_spans:#?}");
    let logical = &client_spans[0];
    let wire = &client_spans[1..];
    assert!(wire.iter().all(|span| span.parent == Some(logical.id)));
    let mut resends: Vec<_> = wire
        .iter()
        .map(|span| span.field("http.request.resend_count"))
        .collect();
    resends.sort();
    assert_eq!(resends, [None, Some("1")], "{wire:#?}");
    let copy = wire
        .iter()
        .find(|span| span.field("http.request.resend_count").is_some())
        .unwrap();
    assert_eq!(copy.field("http.response.status_code"), Some("200"));
}

/// Reads a request head (the requests here have no body).
async fn read_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap() == 0 {
            return;
        }
        head.push(byte[0]);
    }
}

#[tokio::test(start_paused = true)]
async fn the_losing_request_is_cancelled_and_its_connection_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed, was_closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        // The first request is never answered; its copy is, on a second connection.
        let (mut first, _) = listener.accept().await.unwrap();
        read_head(&mut first).await;
        let (mut second, _) = listener.accept().await.unwrap();
        read_head(&mut second).await;
        second
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ncopy")
            .await
            .unwrap();
        let mut rest = [0u8; 64];
        while matches!(first.read(&mut rest).await, Ok(n) if n > 0) {}
        let _ = closed.send(());
        // Keeps the winner's connection open until the end of the test.
        let _ = second.read(&mut rest).await;
    });
    let response = client(policy())
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "copy");
    tokio::time::timeout(Duration::from_secs(30), was_closed)
        .await
        .expect("the first request's connection is closed")
        .unwrap();
}

/// Five 20 ms answers from `learn`, a window's wait, then a slow request to `slow`: the time
/// from the slow request to its copy.
async fn gap_after_learning_elsewhere(hedge: Hedge, learn: &str, slow: &str) -> Duration {
    let server = FaultServer::start(fast_then_slow(5)).await;
    let client = Client::builder().middleware(hedge).build().unwrap();
    for _ in 0..5 {
        client.get(server.url(learn)).send().await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let response = client.get(server.url(slow)).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "copy");
    let seen = server.seen();
    seen[6].at - seen[5].at
}

#[tokio::test(start_paused = true)]
async fn the_latencies_of_one_origin_do_not_set_the_delay_of_another() {
    let learned =
        FaultServer::start(|_, _| Answer::new(200).delay(Duration::from_millis(20)).reply()).await;
    let server = FaultServer::start(fast_then_slow(0)).await;
    let client = client(quantile_policy());
    for _ in 0..5 {
        client.get(learned.url("/")).send().await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    client.get(server.url("/")).send().await.unwrap();
    let seen = server.seen();
    assert_eq!(seen[1].at - seen[0].at, Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn a_key_function_keeps_one_record_per_key() {
    let per_path = || {
        Hedge::new(quantile_policy().build().unwrap())
            .key(|request| request.url().path().to_owned())
    };
    let other_path = gap_after_learning_elsewhere(per_path(), "/a", "/b").await;
    assert_eq!(other_path, Duration::from_millis(300));
    let same_path = gap_after_learning_elsewhere(per_path(), "/a", "/a").await;
    assert!(same_path < Duration::from_millis(300), "{same_path:?}");
}
