//! Client metrics (`metrics` feature) read back from an in-process debugging recorder.
#![cfg(feature = "metrics")]

mod support;

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use stopover::client::breaker::{CircuitBreaker, CircuitBreakerPolicy, Window};
use stopover::client::bulkhead::{Bulkhead, BulkheadPolicy};
use stopover::client::limit::{RateLimit, RateLimitPolicy};
use stopover::client::retry::{Retry, RetryPolicy};
use stopover::client::ssrf::Policy;
use stopover::client::token::{Token, TokenAuth, source_fn};
use stopover::client::{Client, ErrorKind, Origin};

/// The recorder is process-wide and a snapshot drains what it reads (counters included), so a
/// test that snapshots while another is between its requests and its own snapshot would take
/// that test's figures: the tests take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every test reads only the series it alone produces.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().unwrap();
        snapshotter
    })
}

type Series = Vec<(Vec<(String, String)>, DebugValue)>;

/// Every series in the recorder now (a snapshot drains the histograms: take one per test).
fn snapshot() -> Series {
    snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels = std::iter::once((String::new(), key.key().name().to_owned()))
                .chain(
                    key.key()
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned())),
                )
                .collect();
            (labels, value)
        })
        .collect()
}

/// The series named `name` whose labels include all of `labels` (the name is the label `""`).
fn series<'a>(
    all: &'a Series,
    name: &str,
    labels: &[(&str, &str)],
) -> Vec<&'a (Vec<(String, String)>, DebugValue)> {
    all.iter()
        .filter(|(found, _)| found[0].1 == name)
        .filter(|(found, _)| {
            labels
                .iter()
                .all(|(k, v)| found.iter().any(|(fk, fv)| fk == k && fv == v))
        })
        .collect()
}

async fn flaky_server() -> String {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/flaky",
        get(move || {
            let calls = Arc::clone(&calls);
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                } else {
                    "ok".into_response()
                }
            }
        }),
    );
    let addr = support::serve(app).await;
    format!("http://{addr}")
}

#[tokio::test]
async fn each_wire_request_records_a_duration_and_each_retry_is_counted() {
    let _turn = ONE_AT_A_TIME.lock().await;
    snapshotter();
    let base = flaky_server().await;
    let port = base.rsplit(':').next().unwrap().to_owned();
    let policy = RetryPolicy::builder()
        .backoff(Duration::ZERO, Duration::ZERO)
        .no_budget()
        .build()
        .unwrap();
    let client = Client::builder()
        .middleware(Retry::new(policy))
        .build()
        .unwrap();
    client.get(format!("{base}/flaky")).send().await.unwrap();

    let all = snapshot();
    let durations = series(
        &all,
        "http.client.request.duration",
        &[("server.port", &*port)],
    );
    assert_eq!(durations.len(), 2, "{durations:?}");
    let failed = [
        ("http.request.method", "GET"),
        ("server.address", "127.0.0.1"),
        ("server.port", port.as_str()),
        ("url.scheme", "http"),
        ("network.protocol.version", "1.1"),
        ("http.response.status_code", "503"),
        ("error.type", "503"),
    ];
    assert_eq!(
        series(&all, "http.client.request.duration", &failed).len(),
        1
    );
    let ok = series(
        &all,
        "http.client.request.duration",
        &[
            ("server.port", &*port),
            ("http.response.status_code", "200"),
        ],
    );
    assert_eq!(ok.len(), 1);
    assert!(ok[0].0.iter().all(|(k, _)| k != "error.type"), "{ok:?}");
    assert!(matches!(&ok[0].1, DebugValue::Histogram(values) if values.len() == 1));

    let retries = series(&all, "stopover.client.retries", &[]);
    assert!(
        matches!(retries.as_slice(), [(_, DebugValue::Counter(n))] if *n >= 1),
        "{retries:?}"
    );
}

#[tokio::test]
async fn token_refreshes_are_counted_by_outcome() {
    let _turn = ONE_AT_A_TIME.lock().await;
    snapshotter();
    let base = flaky_server().await;
    let auth = TokenAuth::new(source_fn(|_| async { Ok(Token::new("t-1")) }))
        .origins([Origin::parse(&base).unwrap()]);
    let client = Client::builder().middleware(auth).build().unwrap();
    client.get(format!("{base}/flaky")).send().await.unwrap();
    let all = snapshot();
    let refreshes = series(
        &all,
        "stopover.client.token.refreshes",
        &[("outcome", "ok")],
    );
    assert!(
        matches!(refreshes.as_slice(), [(_, DebugValue::Counter(n))] if *n >= 1),
        "{refreshes:?}"
    );
}

#[tokio::test]
async fn ssrf_refusals_are_counted_by_rule() {
    let _turn = ONE_AT_A_TIME.lock().await;
    snapshotter();
    let client = Client::builder()
        .ssrf_policy(Policy::builder().build().unwrap())
        .build()
        .unwrap();
    let err = client.get("http://127.0.0.1:9/").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused);
    let rule = err.refusal().unwrap().rule().as_str();
    let all = snapshot();
    let refusals = series(
        &all,
        "stopover.client.ssrf.refusals",
        &[("rule", rule), ("mode", "enforced")],
    );
    assert!(
        matches!(refusals.as_slice(), [(_, DebugValue::Counter(n))] if *n >= 1),
        "{refusals:?}"
    );
}

/// A loopback address nothing listens on: every request to it is a connect error.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}/", listener.local_addr().unwrap())
}

fn counter(all: &Series, name: &str, labels: &[(&str, &str)]) -> u64 {
    series(all, name, labels)
        .iter()
        .map(|(_, value)| match value {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

#[tokio::test]
async fn circuit_breaker_transitions_and_refusals_are_counted() {
    let _turn = ONE_AT_A_TIME.lock().await;
    snapshotter();
    let policy = CircuitBreakerPolicy::builder()
        .window(Window::Count(1))
        .minimum_calls(1)
        .build()
        .unwrap();
    let client = Client::builder()
        .middleware(CircuitBreaker::new(policy))
        .build()
        .unwrap();
    let url = closed_port();
    assert!(client.get(&url).send().await.unwrap_err().is_connect());
    assert!(client.get(&url).send().await.unwrap_err().is_circuit_open());
    let all = snapshot();
    assert_eq!(
        counter(
            &all,
            "stopover.client.circuit_breaker.transitions",
            &[("state", "open")]
        ),
        1
    );
    assert_eq!(
        counter(&all, "stopover.client.circuit_breaker.rejections", &[]),
        1
    );
}

#[tokio::test]
async fn rate_limit_and_bulkhead_refusals_are_counted() {
    let _turn = ONE_AT_A_TIME.lock().await;
    snapshotter();
    let limit = RateLimit::new(
        RateLimitPolicy::builder(1, Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let client = Client::builder().middleware(limit).build().unwrap();
    let url = closed_port();
    client.get(&url).send().await.unwrap_err();
    assert!(client.get(&url).send().await.unwrap_err().is_rate_limited());

    let bulkhead = Bulkhead::new(BulkheadPolicy::builder(1).build().unwrap());
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let key = format!("http://{}", hanging.local_addr().unwrap());
    let client = Client::builder()
        .middleware(bulkhead.clone())
        .build()
        .unwrap();
    // The listener never accepts: the first request waits in its backlog, holding the slot.
    let first = tokio::spawn(client.get(format!("{key}/")).send());
    while bulkhead.in_flight(&key) == 0 {
        tokio::task::yield_now().await;
    }
    let refused = client.get(format!("{key}/")).send().await.unwrap_err();
    assert!(refused.is_bulkhead_full(), "{refused}");
    first.abort();

    let all = snapshot();
    assert_eq!(
        counter(&all, "stopover.client.rate_limit.rejections", &[]),
        1
    );
    assert_eq!(counter(&all, "stopover.client.bulkhead.rejections", &[]), 1);
}
