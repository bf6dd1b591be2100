//! The logging middlewares against loopback servers, reading what tracing printed.

use std::time::Duration;

use http::{HeaderName, StatusCode};
use stopover::client::logging::{LogToService, Logging, QueryRedaction, Redaction};
use stopover::client::retry::{Retry, RetryPolicy};
use stopover::client::{Client, ErrorKind};

use crate::fault_server::{Answer, FaultServer, Reply, capture_logs, status};

fn logging_client(logging: Logging) -> Client {
    Client::builder().middleware(logging).build().unwrap()
}

fn no_wait_retry() -> Retry {
    Retry::new(
        RetryPolicy::builder()
            .backoff(Duration::ZERO, Duration::ZERO)
            .no_budget()
            .build()
            .unwrap(),
    )
}

fn closed_port_url(path: &str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}{path}")
}

#[tokio::test]
async fn each_response_is_an_event_in_a_span_with_method_url_and_hop() {
    let (logs, _guard) = capture_logs();
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    logging_client(Logging::new())
        .get(server.url("/items?page=2"))
        .send()
        .await
        .unwrap();
    let events = logs.lines_with(": response");
    assert_eq!(events.len(), 1, "{}", logs.text());
    let event = &events[0];
    for expected in [
        "http_request{",
        "method=GET",
        &format!("url={}", server.url("/items?page=2")),
        "hop=0",
        "status=200",
        "duration_ms=",
    ] {
        assert!(event.contains(expected), "{expected:?} missing in {event}");
    }
}

#[tokio::test]
async fn a_failed_request_is_a_warning_with_the_error() {
    let (logs, _guard) = capture_logs();
    let err = logging_client(Logging::new())
        .get(closed_port_url("/"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    let events = logs.lines_with("request failed");
    assert_eq!(events.len(), 1, "{}", logs.text());
    assert!(
        events[0].contains("WARN") && events[0].contains("error="),
        "{}",
        events[0]
    );
}

#[tokio::test]
async fn headers_are_not_logged_unless_asked_for() {
    let (logs, _guard) = capture_logs();
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    logging_client(Logging::new())
        .get(server.url("/"))
        .header("x-visible", "marker-value")
        .send()
        .await
        .unwrap();
    assert!(!logs.text().contains("marker-value"), "{}", logs.text());
}

#[tokio::test]
async fn logged_headers_hide_credentials_and_user_named_headers() {
    let (logs, _guard) = capture_logs();
    let server = FaultServer::start(|_, _| {
        Answer::new(200)
            .header("set-cookie", "sid=response-cookie")
            .header("x-served-by", "edge-7")
            .reply()
    })
    .await;
    let logging = Logging::new()
        .headers(true)
        .redaction(Redaction::default().header(HeaderName::from_static("x-api-key")));
    logging_client(logging)
        .get(server.url("/"))
        .bearer_auth("bearer-secret")
        .header("cookie", "sid=request-cookie")
        .header("proxy-authorization", "Basic proxy-secret")
        .header("x-api-key", "key-secret")
        .header("x-visible", "marker-value")
        .send()
        .await
        .unwrap();
    let text = logs.text();
    for secret in [
        "bearer-secret",
        "request-cookie",
        "proxy-secret",
        "key-secret",
        "response-cookie",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(
        text.contains("marker-value") && text.contains("edge-7"),
        "{text}"
    );
    assert!(text.contains(r#""authorization": "[redacted]""#), "{text}");
}

#[tokio::test]
async fn query_values_can_be_hidden_in_logged_urls() {
    let (logs, _guard) = capture_logs();
    let server = FaultServer::start(|_, _| status(200, "ok")).await;
    let redaction = Redaction::default().query(QueryRedaction::Keys(vec!["access_token".into()]));
    // The client's spans carry the URL too: they get the same redaction.
    Client::builder()
        .span_redaction(redaction.clone())
        .middleware(Logging::new().redaction(redaction))
        .build()
        .unwrap()
        .get(server.url("/feed?access_token=tok-secret&page=3"))
        .send()
        .await
        .unwrap();
    let text = logs.text();
    assert!(!text.contains("tok-secret"), "{text}");
    assert!(text.contains("access_token=REDACTED&page=3"), "{text}");
    // What was sent is untouched: redaction is for the logs only.
    assert_eq!(
        server.seen()[0].target,
        "/feed?access_token=tok-secret&page=3"
    );
}

#[tokio::test]
async fn inside_retry_each_attempt_is_logged_with_its_number() {
    let (logs, _guard) = capture_logs();
    let server = FaultServer::start(|_, index| {
        if index == 0 {
            status(503, "busy")
        } else {
            status(200, "ok")
        }
    })
    .await;
    let client = Client::builder()
        .middleware(no_wait_retry())
        .middleware(Logging::new())
        .build()
        .unwrap();
    client.get(server.url("/")).send().await.unwrap();
    let events = logs.lines_with(": response");
    assert_eq!(events.len(), 2, "{}", logs.text());
    assert!(events[0].contains("attempt=1") && events[0].contains("status=503"));
    assert!(events[1].contains("attempt=2") && events[1].contains("status=200"));
}

#[tokio::test]
async fn outside_retry_the_call_is_logged_once_with_the_attempt_count() {
    let (logs, _guard) = capture_logs();
    let server = FaultServer::start(|_, index| {
        if index == 0 {
            status(503, "busy")
        } else {
            status(200, "ok")
        }
    })
    .await;
    let client = Client::builder()
        .middleware(Logging::new())
        .middleware(no_wait_retry())
        .build()
        .unwrap();
    client.get(server.url("/")).send().await.unwrap();
    let events = logs.lines_with(": response");
    assert_eq!(events.len(), 1, "{}", logs.text());
    assert!(events[0].contains("attempts=2") && events[0].contains("status=200"));
}

#[tokio::test]
async fn outside_retry_a_failed_call_is_logged_once_with_the_attempt_count() {
    let (logs, _guard) = capture_logs();
    let client = Client::builder()
        .middleware(Logging::new())
        .middleware(no_wait_retry())
        .build()
        .unwrap();
    client.get(closed_port_url("/")).send().await.unwrap_err();
    let events = logs.lines_with("request failed");
    assert_eq!(events.len(), 1, "{}", logs.text());
    assert!(events[0].contains("attempts=3"), "{}", events[0]);
}

#[tokio::test]
async fn each_redirect_hop_is_logged_with_its_number() {
    let (logs, _guard) = capture_logs();
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/old" => Answer::new(302).header("location", "/new").reply(),
        _ => status(200, "moved here"),
    })
    .await;
    logging_client(Logging::new())
        .get(server.url("/old"))
        .send()
        .await
        .unwrap();
    let events = logs.lines_with(": response");
    assert_eq!(events.len(), 2, "{}", logs.text());
    assert!(events[0].contains("hop=0") && events[0].contains("status=302"));
    assert!(events[1].contains("hop=1") && events[1].contains("status=200"));
}

#[tokio::test]
async fn the_log_service_gets_one_record_per_request_and_never_logs_itself() {
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/log" => status(204, ""),
        _ => status(200, "data"),
    })
    .await;
    let client = Client::builder()
        .middleware(LogToService::new(&server.url("/log")).unwrap())
        .build()
        .unwrap();
    for path in ["/a", "/b", "/c"] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(server.hits_to("/log"), 3);
    let record: serde_json::Value = serde_json::from_slice(&server.seen()[1].body).unwrap();
    assert_eq!(record["method"], "GET");
    assert_eq!(record["url"], server.url("/a"));
    assert_eq!(record["status"], 200);
    assert_eq!(record["hop"], 0);
    assert!(record["duration_ms"].is_u64());
}

#[tokio::test]
async fn a_log_service_answering_500_never_fails_the_request() {
    let (logs, _guard) = capture_logs();
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/log" => status(500, "log store down"),
        _ => status(200, "data"),
    })
    .await;
    let client = Client::builder()
        .middleware(LogToService::new(&server.url("/log")).unwrap())
        .build()
        .unwrap();
    let response = client.get(server.url("/a")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "data");
    let warnings = logs.lines_with("log service refused a record");
    assert_eq!(warnings.len(), 1, "{}", logs.text());
    assert!(warnings[0].contains("status=500"));
}

#[tokio::test]
async fn an_unreachable_log_service_never_fails_the_request() {
    let (logs, _guard) = capture_logs();
    let server = FaultServer::start(|_, _| status(200, "data")).await;
    let client = Client::builder()
        .middleware(LogToService::new(&closed_port_url("/log")).unwrap())
        .build()
        .unwrap();
    let response = client.get(server.url("/a")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        logs.lines_with("log service failed").len(),
        1,
        "{}",
        logs.text()
    );
}

#[tokio::test(start_paused = true)]
async fn a_log_service_that_hangs_does_not_hold_the_request() {
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/log" => Reply::Hang,
        _ => status(200, "data"),
    })
    .await;
    let client = Client::builder()
        .middleware(
            LogToService::new(&server.url("/log"))
                .unwrap()
                .timeout(Duration::from_secs(2)),
        )
        .build()
        .unwrap();
    let response =
        tokio::time::timeout(Duration::from_secs(60), client.get(server.url("/a")).send())
            .await
            .expect("the request finished")
            .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn log_records_are_redacted_too() {
    let server = FaultServer::start(|seen, _| match seen.path() {
        "/log" => status(204, ""),
        _ => status(200, "data"),
    })
    .await;
    let client = Client::builder()
        .middleware(
            LogToService::new(&server.url("/log"))
                .unwrap()
                .redaction(Redaction::default().query(QueryRedaction::All)),
        )
        .build()
        .unwrap();
    client
        .get(server.url("/a?signature=sig-secret"))
        .send()
        .await
        .unwrap();
    let record = String::from_utf8_lossy(&server.seen()[1].body).into_owned();
    assert!(!record.contains("sig-secret"), "{record}");
    assert!(record.contains("signature=REDACTED"), "{record}");
}

#[tokio::test]
async fn a_logged_error_hides_query_values_too() {
    let (logs, _guard) = capture_logs();
    let log_server = FaultServer::start(|_, _| status(204, "")).await;
    let redaction = Redaction::default().query(QueryRedaction::Keys(vec!["sig".into()]));
    let client = Client::builder()
        .middleware(Logging::new().redaction(redaction.clone()))
        .middleware(
            LogToService::new(&log_server.url("/log"))
                .unwrap()
                .redaction(redaction),
        )
        .build()
        .unwrap();
    let err = client
        .get(closed_port_url("/a?sig=sig-secret"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    let warnings = logs.lines_with("request failed");
    assert_eq!(warnings.len(), 1, "{}", logs.text());
    assert!(!warnings[0].contains("sig-secret"), "{}", warnings[0]);
    assert!(warnings[0].contains("sig=REDACTED"), "{}", warnings[0]);
    let record = String::from_utf8_lossy(&log_server.seen()[0].body).into_owned();
    assert!(!record.contains("sig-secret"), "{record}");
    assert!(record.contains("\"error\""), "{record}");
}

#[test]
fn a_log_endpoint_that_is_not_a_url_is_refused() {
    let err = LogToService::new("/log").unwrap_err();
    assert!(err.to_string().contains("/log"), "{err}");
}
