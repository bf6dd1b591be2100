//! The retry middleware against loopback servers that fail on purpose.
//!
//! Waits are checked on tokio's paused clock (`start_paused = true`): the server stamps each
//! request with the virtual instant it arrived. The scripted server closes its connections
//! after each answer, so no pooled connection leaves a timer that the paused clock would jump to.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use stopover::client::retry::{Attempts, Budget, GaveUp, Retry, RetryPolicy, RetryPolicyBuilder};
use stopover::client::{Body, Client, ErrorKind, Next, Request, from_fn};

use crate::fault_server;
use crate::fault_server::{Answer, FaultServer, Reply, capture_logs, status};

/// A policy that never waits, so tests without a clock run at once.
fn no_wait() -> RetryPolicyBuilder {
    RetryPolicy::builder()
        .backoff(Duration::ZERO, Duration::ZERO)
        .no_budget()
}

fn client(policy: RetryPolicyBuilder) -> Client {
    Client::builder()
        .middleware(Retry::new(policy.build().unwrap()))
        .build()
        .unwrap()
}

fn attempts(response: &stopover::client::Response) -> Option<u32> {
    response
        .extensions()
        .get::<Attempts>()
        .map(|attempts| attempts.0)
}

fn gave_up(response: &stopover::client::Response) -> Option<GaveUp> {
    response.extensions().get::<GaveUp>().copied()
}

/// The waits between the requests the server saw.
fn gaps(server: &FaultServer) -> Vec<Duration> {
    server
        .seen()
        .windows(2)
        .map(|pair| pair[1].at - pair[0].at)
        .collect()
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

#[tokio::test]
async fn a_503_is_retried_and_the_success_tells_the_attempt_count() {
    let server = FaultServer::start(fail_first(2, status(503, "busy"))).await;
    let response = client(no_wait()).get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(attempts(&response), Some(3));
    assert_eq!(gave_up(&response), None);
    assert_eq!(response.text().await.unwrap(), "ok");
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn attempts_never_exceed_the_bound() {
    let server = FaultServer::start(|_, _| status(503, "busy")).await;
    let response = client(no_wait().max_attempts(4))
        .get(server.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(attempts(&response), Some(4));
    assert_eq!(gave_up(&response), Some(GaveUp::MaxAttempts));
    assert_eq!(server.hits(), 4);
}

#[tokio::test(start_paused = true)]
async fn the_default_policy_makes_three_attempts_in_all() {
    let server = FaultServer::start(|_, _| status(500, "broken")).await;
    let client = Client::builder()
        .middleware(Retry::default())
        .build()
        .unwrap();
    let response = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn a_status_outside_the_set_is_returned_at_once() {
    let server = FaultServer::start(|_, _| status(404, "missing")).await;
    let response = client(no_wait()).get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(attempts(&response), Some(1));
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn a_429_is_retried() {
    let server = FaultServer::start(fail_first(1, status(429, "slow down"))).await;
    let response = client(no_wait()).get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn a_post_without_opt_in_is_sent_once() {
    let server = FaultServer::start(|_, _| status(503, "busy")).await;
    let response = client(no_wait())
        .post(server.url("/charge"))
        .body("amount=10")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(gave_up(&response), Some(GaveUp::NotIdempotent));
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn a_patch_without_opt_in_is_sent_once() {
    let server = FaultServer::start(|_, _| status(503, "busy")).await;
    let response = client(no_wait())
        .patch(server.url("/item"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn a_post_with_an_idempotency_key_is_retried() {
    let server = FaultServer::start(fail_first(1, status(503, "busy"))).await;
    let response = client(no_wait())
        .post(server.url("/charge"))
        .header("Idempotency-Key", "9f1c2d")
        .body("amount=10")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn a_post_is_retried_when_opted_in() {
    let server = FaultServer::start(fail_first(1, status(503, "busy"))).await;
    let response = client(no_wait().retry_non_idempotent(true))
        .post(server.url("/charge"))
        .body("amount=10")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn a_connection_closed_before_a_response_is_retried() {
    let server = FaultServer::start(fail_first(2, Reply::Close)).await;
    let response = client(no_wait()).get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(attempts(&response), Some(3));
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn a_post_whose_connection_closed_before_a_response_is_not_resent() {
    let server = FaultServer::start(fail_first(1, Reply::Close)).await;
    let err = client(no_wait())
        .post(server.url("/charge"))
        .body("amount=10")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err}");
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn an_error_that_is_not_retried_tells_the_caller_why() {
    let server = FaultServer::start(fail_first(1, Reply::Close)).await;
    let err = client(no_wait())
        .post(server.url("/charge"))
        .body("amount=10")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.gave_up(), Some(GaveUp::NotIdempotent), "{err:?}");
    assert_eq!(err.attempts(), Some(1));
    assert!(
        err.to_string()
            .ends_with("(not retried after 1 attempt: method not idempotent)"),
        "{err}"
    );
}

#[tokio::test]
async fn an_error_after_the_last_attempt_tells_the_attempt_count() {
    let server = FaultServer::start(|_, _| Reply::Close).await;
    let err = client(no_wait())
        .get(server.url("/"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport);
    assert_eq!(err.attempts(), Some(3));
    assert_eq!(err.gave_up(), Some(GaveUp::MaxAttempts));
    assert!(err.to_string().contains("after 3 attempts"), "{err}");
}

#[tokio::test]
async fn a_connect_error_is_retried_even_for_a_post() {
    // A port nobody listens on: the request never leaves, so resending a POST is safe.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    let client = Client::builder()
        .middleware(Retry::new(no_wait().build().unwrap()))
        .middleware(from_fn(move |req: Request, next: Next| {
            counter.fetch_add(1, Ordering::SeqCst);
            next.run(req)
        }))
        .build()
        .unwrap();
    let err = client
        .post(format!("http://{addr}/charge"))
        .body("amount=10")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert_eq!(sent.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_connect_error_resends_a_streaming_body_that_was_never_read() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    let client = Client::builder()
        .middleware(Retry::new(no_wait().build().unwrap()))
        .middleware(from_fn(move |req: Request, next: Next| {
            counter.fetch_add(1, Ordering::SeqCst);
            next.run(req)
        }))
        .build()
        .unwrap();
    let err = client
        .put(format!("http://{addr}/upload"))
        .body(Body::wrap_stream_replayable(chunks(&["a", "b"]), 64))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert_eq!(err.gave_up(), Some(GaveUp::MaxAttempts), "{err}");
    assert_eq!(sent.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_middleware_error_is_not_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let client = Client::builder()
        .middleware(Retry::new(no_wait().build().unwrap()))
        .middleware(from_fn(move |_req: Request, _next: Next| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Err(stopover::client::Error::middleware("signing key missing")) }
        }))
        .build()
        .unwrap();
    let err = client.get("http://127.0.0.1:9/").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Middleware);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(err.attempts(), Some(1));
    assert_eq!(err.gave_up(), None);
}

#[tokio::test]
async fn a_request_refused_by_the_connection_policy_is_not_retried() {
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    let client = Client::builder()
        .ssrf_policy(stopover::client::ssrf::Policy::builder().build().unwrap())
        .middleware(Retry::new(no_wait().build().unwrap()))
        .middleware(from_fn(move |req: Request, next: Next| {
            counter.fetch_add(1, Ordering::SeqCst);
            next.run(req)
        }))
        .build()
        .unwrap();
    let err = client.get(server.url("/")).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    assert_eq!(sent.load(Ordering::SeqCst), 1);
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn an_attempt_that_times_out_is_retried() {
    let server = FaultServer::start(fail_first(1, Reply::Hang)).await;
    let client = Client::builder()
        .attempt_timeout(Duration::from_millis(300))
        .middleware(Retry::new(no_wait().build().unwrap()))
        .build()
        .unwrap();
    let response = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(attempts(&response), Some(2));
    assert_eq!(server.hits(), 2);
}

#[tokio::test(start_paused = true)]
async fn retry_after_in_seconds_is_honoured() {
    let server = FaultServer::start(fail_first(
        1,
        Answer::new(429).header("Retry-After", "7").reply(),
    ))
    .await;
    // The backoff alone would wait at most 10 ms.
    let policy =
        RetryPolicy::builder().backoff(Duration::from_millis(10), Duration::from_millis(10));
    let response = client(policy).get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let gap = gaps(&server)[0];
    assert!(
        gap >= Duration::from_secs(7) && gap < Duration::from_secs(8),
        "{gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date_is_honoured() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let retry_at = httpdate::fmt_http_date(now + Duration::from_secs(12));
    let server = FaultServer::start(fail_first(
        1,
        Answer::new(503).header("Retry-After", &retry_at).reply(),
    ))
    .await;
    let policy = RetryPolicy::builder()
        .backoff(Duration::from_millis(10), Duration::from_millis(10))
        .wall_clock(move || now);
    let response = client(policy).get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let gap = gaps(&server)[0];
    assert!(
        gap >= Duration::from_secs(12) && gap < Duration::from_secs(13),
        "{gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_capped() {
    let server = FaultServer::start(fail_first(
        1,
        Answer::new(503).header("Retry-After", "86400").reply(),
    ))
    .await;
    let policy = RetryPolicy::builder().retry_after_cap(Duration::from_secs(5));
    let response = client(policy).get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let gap = gaps(&server)[0];
    assert!(
        gap >= Duration::from_secs(5) && gap < Duration::from_secs(6),
        "{gap:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_without_a_cap_stops_at_the_deadline_instead_of_panicking() {
    let server = FaultServer::start(fail_first(
        1,
        Answer::new(503)
            .header("Retry-After", "99999999999999999999")
            .reply(),
    ))
    .await;
    let policy = no_wait()
        .retry_after_cap(Duration::MAX)
        .total_deadline(Duration::from_secs(60));
    let response = client(policy).get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(gave_up(&response), Some(GaveUp::Deadline));
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn a_total_deadline_too_far_to_represent_is_no_deadline() {
    let server = FaultServer::start(fail_first(1, status(503, "busy"))).await;
    let policy = no_wait().total_deadline(Duration::MAX);
    let response = client(policy).get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(attempts(&response), Some(2));
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_exponentially_up_to_its_maximum() {
    let server = FaultServer::start(fail_first(3, status(502, "bad gateway"))).await;
    // The random source at its maximum waits the whole ceiling: 2 s, 4 s, then the 5 s cap.
    let policy = RetryPolicy::builder()
        .max_attempts(4)
        .backoff(Duration::from_secs(2), Duration::from_secs(5))
        .random_source(|| u64::MAX);
    let response = client(policy).get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let gaps = gaps(&server);
    for (gap, expected) in gaps.iter().zip([2, 4, 5]) {
        let expected = Duration::from_secs(expected);
        assert!(
            *gap >= expected && *gap < expected + Duration::from_secs(1),
            "{gaps:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_is_jittered_below_its_ceiling() {
    let server = FaultServer::start(fail_first(1, status(503, "busy"))).await;
    let policy = RetryPolicy::builder()
        .backoff(Duration::from_secs(8), Duration::from_secs(8))
        .random_source(|| u64::MAX / 4);
    client(policy).get(server.url("/")).send().await.unwrap();
    let gap = gaps(&server)[0];
    assert!(
        gap >= Duration::from_secs(2) && gap < Duration::from_secs(3),
        "{gap:?}"
    );
}

#[tokio::test]
async fn the_total_deadline_stops_retries_that_would_end_after_it() {
    let server = FaultServer::start(|_, _| status(503, "busy")).await;
    // Attempts at about 0, 0.5 and 1.0 s; a fourth would start at 1.5 s, past the deadline.
    let policy = RetryPolicy::builder()
        .max_attempts(10)
        .no_budget()
        .backoff(Duration::from_millis(500), Duration::from_millis(500))
        .random_source(|| u64::MAX)
        .total_deadline(Duration::from_millis(1200));
    let response = client(policy).get(server.url("/")).send().await.unwrap();
    assert_eq!(gave_up(&response), Some(GaveUp::Deadline));
    let hits = server.hits();
    assert!((2..=3).contains(&hits), "{hits}");
    assert_eq!(attempts(&response), Some(hits as u32));
}

#[tokio::test(start_paused = true)]
async fn the_total_deadline_cuts_an_attempt_in_flight() {
    let server = FaultServer::start(|_, _| Reply::Hang).await;
    let policy = no_wait().total_deadline(Duration::from_secs(30));
    let err = client(policy)
        .get(server.url("/"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(server.hits(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_past_the_deadline_is_not_waited_for() {
    let server =
        FaultServer::start(|_, _| Answer::new(503).header("Retry-After", "120").reply()).await;
    let policy = RetryPolicy::builder()
        .retry_after_cap(Duration::from_secs(300))
        .total_deadline(Duration::from_secs(60));
    let started = tokio::time::Instant::now();
    let response = client(policy).get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(gave_up(&response), Some(GaveUp::Deadline));
    assert_eq!(server.hits(), 1);
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[tokio::test]
async fn the_budget_stops_retries_when_most_requests_fail() {
    let server = FaultServer::start(|_, _| status(503, "down")).await;
    // 2 retries of floor plus one per ten requests: for 20 requests, at most 4 retries
    // where the attempts alone would allow 40.
    let policy = RetryPolicy::builder()
        .backoff(Duration::ZERO, Duration::ZERO)
        .budget(Budget::default().min_retries(2).ratio(0.1));
    let client = client(policy);
    let mut stopped_by_budget = 0;
    for _ in 0..20 {
        let response = client.get(server.url("/")).send().await.unwrap();
        if gave_up(&response) == Some(GaveUp::Budget) {
            stopped_by_budget += 1;
        }
    }
    assert!(server.hits() <= 20 + 4, "{}", server.hits());
    assert!(stopped_by_budget >= 16, "{stopped_by_budget}");
}

#[tokio::test]
async fn the_budget_is_shared_by_clones_of_the_middleware() {
    let server = FaultServer::start(|_, _| status(503, "down")).await;
    let retry = Retry::new(
        RetryPolicy::builder()
            .backoff(Duration::ZERO, Duration::ZERO)
            .budget(Budget::default().min_retries(1).ratio(0.0))
            .build()
            .unwrap(),
    );
    let first = Client::builder().middleware(retry.clone()).build().unwrap();
    let second = Client::builder().middleware(retry).build().unwrap();
    first.get(server.url("/")).send().await.unwrap();
    let response = second.get(server.url("/")).send().await.unwrap();
    assert_eq!(gave_up(&response), Some(GaveUp::Budget));
    // One retry in all: the second client found the budget already spent.
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn a_buffered_body_is_replayed_on_every_attempt() {
    let server = FaultServer::start(fail_first(2, status(503, "busy"))).await;
    let response = client(no_wait())
        .put(server.url("/doc"))
        .body("the document")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bodies: Vec<_> = server.seen().into_iter().map(|seen| seen.body).collect();
    assert_eq!(bodies, vec![b"the document".to_vec(); 3]);
}

fn chunks(
    parts: &[&'static str],
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + use<> {
    let parts: Vec<_> = parts
        .iter()
        .map(|part| Ok(Bytes::from_static(part.as_bytes())))
        .collect();
    futures_util::stream::iter(parts)
}

#[tokio::test]
async fn a_streaming_body_within_its_cap_is_replayed() {
    let server = FaultServer::start(fail_first(1, status(503, "busy"))).await;
    let body = Body::wrap_stream_replayable(chunks(&["stream", "ed ", "body"]), 1024);
    let response = client(no_wait())
        .put(server.url("/doc"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bodies: Vec<_> = server.seen().into_iter().map(|seen| seen.body).collect();
    assert_eq!(bodies, vec![b"streamed body".to_vec(); 2]);
}

#[tokio::test]
async fn a_streaming_body_over_its_cap_is_not_resent_and_the_response_says_why() {
    let server = FaultServer::start(|_, _| status(503, "busy")).await;
    let body = Body::wrap_stream_replayable(chunks(&["more than ", "eight bytes"]), 8);
    let response = client(no_wait())
        .put(server.url("/doc"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(gave_up(&response), Some(GaveUp::BodyNotReplayable));
    assert_eq!(server.hits(), 1);
    // What was sent was the whole body, never a silently empty one.
    assert_eq!(server.seen()[0].body, b"more than eight bytes");
}

#[tokio::test]
async fn a_streaming_body_without_a_cap_is_sent_once() {
    let server = FaultServer::start(|_, _| status(503, "busy")).await;
    let response = client(no_wait())
        .put(server.url("/doc"))
        .body(Body::wrap_stream(chunks(&["one-shot"])))
        .send()
        .await
        .unwrap();
    assert_eq!(gave_up(&response), Some(GaveUp::BodyNotReplayable));
    assert_eq!(server.hits(), 1);
    assert_eq!(server.seen()[0].body, b"one-shot");
}

#[tokio::test]
async fn a_discarded_response_is_read_away_so_its_connection_is_reused() {
    let server = FaultServer::start(|_, index| {
        let answer = if index == 0 {
            // Under the 64 KiB drain limit, but more than arrives with the head.
            Answer::new(503).body(vec![b'x'; 48 * 1024])
        } else {
            Answer::new(200).body("ok")
        };
        answer.keep_alive().reply()
    })
    .await;
    let response = client(no_wait()).get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.hits(), 2);
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn a_long_discarded_response_is_dropped_rather_than_read() {
    let server = FaultServer::start(|_, index| {
        let answer = if index == 0 {
            Answer::new(503).body(vec![b'x'; 256 * 1024])
        } else {
            Answer::new(200).body("ok")
        };
        answer.keep_alive().reply()
    })
    .await;
    let response = client(no_wait()).get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.connections(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_discarded_response_that_stalls_does_not_hold_up_the_retry() {
    let server = FaultServer::start(fail_first(
        1,
        Answer::new(503)
            .body("partial")
            .announce_length(1000)
            .reply(),
    ))
    .await;
    let response = tokio::time::timeout(
        Duration::from_secs(60),
        client(no_wait()).get(server.url("/")).send(),
    )
    .await
    .expect("the retry went ahead")
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn each_retry_is_a_tracing_event() {
    let (logs, _guard) = capture_logs();
    let server = FaultServer::start(fail_first(2, status(503, "busy"))).await;
    client(no_wait()).get(server.url("/")).send().await.unwrap();
    let retries = logs.lines_with("retrying request");
    assert_eq!(retries.len(), 2, "{}", logs.text());
    assert!(retries[0].contains("attempt=1") && retries[0].contains("status 503"));
    assert!(retries[1].contains("attempt=2"));
}

#[tokio::test]
async fn giving_up_is_a_tracing_event_with_the_reason() {
    let (logs, _guard) = capture_logs();
    let server = FaultServer::start(|_, _| status(503, "busy")).await;
    client(no_wait())
        .post(server.url("/"))
        .body("x")
        .send()
        .await
        .unwrap();
    let lines = logs.lines_with("not retrying request");
    assert_eq!(lines.len(), 1, "{}", logs.text());
    assert!(lines[0].contains("method not idempotent"), "{}", lines[0]);
}
