//! Client spans by OpenTelemetry's HTTP client conventions, captured with an in-process
//! `tracing` layer from a real request against a loopback server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use stopover::client::retry::{Retry, RetryPolicy};
use stopover::client::{Client, ErrorKind};

use crate::span_capture::capture;

/// `/start` redirects (303) to `/flaky`, which answers 503 once and then 200.
async fn redirect_then_flaky() -> String {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/start", get(|| async { Redirect::to("/flaky?x=1") }))
        .route(
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
    let addr = crate::support::serve(app).await;
    format!("http://{addr}")
}

fn retrying_client() -> Client {
    let policy = RetryPolicy::builder()
        .backoff(Duration::ZERO, Duration::ZERO)
        .no_budget()
        .build()
        .unwrap();
    Client::builder()
        .user_agent("spans-test/1.0")
        .middleware(Retry::new(policy))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_redirected_retried_request_is_one_logical_span_over_a_span_per_wire_request() {
    let base = redirect_then_flaky().await;
    let (spans, _guard) = capture();
    let url = format!("http://user:secret@{}/start#frag", &base["http://".len()..]);
    let response = retrying_client().get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);

    let client = spans.client();
    assert_eq!(client.len(), 4, "{client:#?}");
    let port = base.rsplit(':').next().unwrap().to_owned();
    let (logical, wire) = (&client[0], &client[1..]);

    assert_eq!(logical.name, "GET");
    assert_eq!(logical.field("http.request.method"), Some("GET"));
    assert_eq!(logical.field("url.full"), Some(&*format!("{base}/start")));
    assert_eq!(logical.field("server.address"), Some("127.0.0.1"));
    assert_eq!(logical.field("server.port"), Some(&*port));
    assert_eq!(logical.field("http.response.status_code"), Some("200"));
    assert_eq!(logical.field("error.type"), None);
    assert_eq!(logical.field("otel.status_code"), None);

    let expected = [
        ("/start", None, "303", None),
        ("/flaky?x=1", Some("1"), "503", Some("503")),
        ("/flaky?x=1", Some("2"), "200", None),
    ];
    for (span, (path, resends, status, error)) in wire.iter().zip(expected) {
        assert_eq!(span.parent, Some(logical.id), "{span:#?}");
        assert_eq!(span.name, "GET");
        assert_eq!(span.field("otel.kind"), Some("client"));
        assert_eq!(span.field("http.request.method"), Some("GET"));
        assert_eq!(span.field("url.full"), Some(&*format!("{base}{path}")));
        assert_eq!(span.field("server.address"), Some("127.0.0.1"));
        assert_eq!(span.field("server.port"), Some(&*port));
        assert_eq!(span.field("network.protocol.version"), Some("1.1"));
        assert_eq!(span.field("user_agent.original"), Some("spans-test/1.0"));
        assert_eq!(
            span.field("http.request.resend_count"),
            resends,
            "{span:#?}"
        );
        assert_eq!(span.field("http.response.status_code"), Some(status));
        assert_eq!(span.field("error.type"), error);
        let failed = error.map(|_| "ERROR");
        assert_eq!(span.field("otel.status_code"), failed, "{span:#?}");
    }
}

#[tokio::test]
async fn a_failed_connection_sets_error_type_and_status_on_both_spans() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (spans, _guard) = capture();
    let err = Client::new()
        .post(format!("http://{addr}/"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    let client = spans.client();
    assert_eq!(client.len(), 2, "{client:#?}");
    for span in &client {
        assert_eq!(span.name, "POST");
        assert_eq!(span.field("error.type"), Some("connect"));
        assert_eq!(span.field("otel.status_code"), Some("ERROR"));
        assert_eq!(span.field("http.response.status_code"), None);
    }
}

#[tokio::test]
async fn an_unlisted_method_is_other_with_its_original_name() {
    let base = redirect_then_flaky().await;
    let (spans, _guard) = capture();
    let method = http::Method::from_bytes(b"PURGE").unwrap();
    Client::new()
        .request(method, format!("{base}/start"))
        .send()
        .await
        .unwrap();
    let client = spans.client();
    let logical = &client[0];
    assert_eq!(logical.name, "HTTP");
    assert_eq!(logical.field("http.request.method"), Some("_OTHER"));
    assert_eq!(logical.field("http.request.method_original"), Some("PURGE"));
}

#[tokio::test]
async fn a_request_timeout_is_recorded_on_the_logical_span() {
    let app = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            "late"
        }),
    );
    let addr = crate::support::serve(app).await;
    let (spans, _guard) = capture();

    let err = Client::new()
        .get(format!("http://{addr}/slow"))
        .timeout(Duration::from_millis(50))
        .send()
        .await
        .unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Timeout);
    let client = spans.client();
    let logical = &client[0];
    assert_eq!(logical.field("error.type"), Some("timeout"), "{client:#?}");
    assert_eq!(logical.field("otel.status_code"), Some("ERROR"));
}

fn exception_events(spans: &crate::span_capture::Spans) -> Vec<crate::span_capture::Event> {
    spans
        .events()
        .into_iter()
        .filter(|event| event.name == "http.client.request.exception")
        .collect()
}

#[tokio::test]
async fn a_call_that_fails_is_one_exception_event_at_warn_in_its_logical_span() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (spans, _guard) = capture();

    Client::new()
        .get(format!("http://user:secret@{addr}/"))
        .send()
        .await
        .unwrap_err();

    let events = exception_events(&spans);
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event.level, tracing::Level::WARN);
    assert_eq!(event.span, Some("GET"));
    assert_eq!(event.field("exception.type"), Some("connect"));
    let message = event.field("exception.message").unwrap();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(!message.contains("secret"), "{message}");
}

#[tokio::test]
async fn a_5xx_response_is_not_an_exception_event() {
    let app = Router::new().route(
        "/",
        get(|| async { StatusCode::SERVICE_UNAVAILABLE.into_response() }),
    );
    let addr = crate::support::serve(app).await;
    let (spans, _guard) = capture();

    let response = Client::new()
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 503);
    assert_eq!(exception_events(&spans).len(), 0);
    assert_eq!(spans.client()[0].field("error.type"), Some("503"));
}

#[tokio::test]
async fn a_call_its_caller_cancels_ends_its_spans_without_an_error() {
    let arrived = Arc::new(tokio::sync::Notify::new());
    let app = Router::new().route(
        "/",
        get({
            let arrived = arrived.clone();
            move || async move {
                arrived.notify_one();
                std::future::pending::<()>().await;
            }
        }),
    );
    let addr = crate::support::serve(app).await;
    let (spans, _guard) = capture();

    let client = Client::new();
    let call = client.get(format!("http://{addr}/")).send();
    tokio::select! {
        _ = call => panic!("the server never answers"),
        () = arrived.notified() => {} // the caller gives up: the call's future is dropped
    }

    let client_spans = spans.client();
    assert_eq!(client_spans.len(), 2, "{client_spans:#?}");
    for span in &client_spans {
        assert_eq!(span.field("error.type"), None, "{span:#?}");
        assert_eq!(span.field("otel.status_code"), None, "{span:#?}");
    }
    assert_eq!(exception_events(&spans).len(), 0);
}
