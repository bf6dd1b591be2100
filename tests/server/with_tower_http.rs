//! stopover's layers stacked with tower-http 0.7's under axum, over real loopback connections:
//! each test puts one of tower-http's layers next to one of stopover's and checks what the two
//! do together.
#![cfg(feature = "axum")]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use http::StatusCode;
use stopover::server::error::HttpError;
use stopover::server::forwarded::ForwardedInfo;
use stopover::server::{CorsLayer, ErrorLayer, ForwardedLayer, ShieldLayer, TimeoutLayer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::fault_server::capture_logs;
use crate::support::{serve, serve_with_connect_info};

const APP: &str = "https://app.example";

/// A response head as read off the wire: the status and the header lines (names lower-cased).
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Raw {
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }

    /// The comma-separated items of every `name` line, lower-cased.
    fn items(&self, name: &str) -> Vec<String> {
        self.all(name)
            .iter()
            .flat_map(|line| line.split(','))
            .map(|item| item.trim().to_ascii_lowercase())
            .filter(|item| !item.is_empty())
            .collect()
    }
}

/// One HTTP/1.1 GET with exactly these headers (no client adds or decodes anything, so a
/// compressed answer stays compressed), read until the server closes.
async fn get_raw(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Raw {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&answer[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Raw { status, headers }
}

fn cors() -> CorsLayer {
    CorsLayer::builder().allow_origin(APP).build().unwrap()
}

/// A body long enough for tower-http's default compression predicate (over 32 bytes).
async fn long_text() -> String {
    "compress me, ".repeat(100)
}

#[tokio::test]
async fn stopover_cors_keeps_the_vary_of_tower_http_compression() {
    // Compression inside CORS: the response reaches CORS with `Vary: accept-encoding`.
    let app = Router::new()
        .route("/text", get(long_text))
        .layer(CompressionLayer::new())
        .layer(cors());
    let addr = serve(app).await;
    let reply = get_raw(
        addr,
        "/text",
        &[("origin", APP), ("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(reply.one("content-encoding"), Some("gzip"));
    let vary = reply.items("vary");
    assert!(
        vary.contains(&"accept-encoding".to_owned()) && vary.contains(&"origin".to_owned()),
        "Vary lists both layers' request headers: {vary:?}"
    );
}

#[tokio::test]
async fn tower_http_compression_compresses_stopover_error_documents() {
    async fn refuse() -> Result<String, HttpError> {
        Err(HttpError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the order names a product that is no longer sold, pick another one",
        ))
    }
    let app = Router::new()
        .route("/order", get(refuse))
        .layer(ErrorLayer::new())
        .layer(CompressionLayer::new());
    let addr = serve(app).await;
    let reply = get_raw(addr, "/order", &[("accept-encoding", "gzip")]).await;
    assert_eq!(reply.status, 422);
    assert_eq!(reply.one("content-type"), Some("application/json"));
    assert_eq!(reply.one("content-encoding"), Some("gzip"));
}

/// Request ids from a counter (tower-http's `MakeRequestUuid` would need `uuid`).
#[derive(Clone, Default)]
struct Counter(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        http::HeaderValue::from_str(&format!("req-{n}"))
            .ok()
            .map(RequestId::new)
    }
}

#[tokio::test]
async fn tower_http_request_id_is_on_the_error_stopover_renders() {
    // axum's empty 404 for an unknown route, rendered by stopover, inside tower-http's pair.
    let app = Router::new()
        .route("/known", get(|| async { "known" }))
        .layer(ErrorLayer::new())
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(Counter::default()));
    let addr = serve(app).await;
    let reply = get_raw(addr, "/unknown", &[]).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.one("content-type"), Some("application/json"));
    assert_eq!(reply.one("x-request-id"), Some("req-1"));
}

#[tokio::test]
async fn stopover_cors_answers_a_tower_http_timeout() {
    let app = Router::new()
        .route("/slow", get(std::future::pending::<&'static str>))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_millis(20),
        ))
        .layer(cors());
    let addr = serve(app).await;
    let reply = get_raw(addr, "/slow", &[("origin", APP)]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
}

#[tokio::test]
async fn tower_http_trace_reports_stopover_timeouts_as_failures() {
    let (logs, _guard) = capture_logs();
    let app = Router::new()
        .route("/slow", get(std::future::pending::<&'static str>))
        .layer(
            TimeoutLayer::builder(Duration::from_millis(20))
                .build()
                .unwrap(),
        )
        .layer(TraceLayer::new_for_http());
    let addr = serve(app).await;
    let reply = get_raw(addr, "/slow", &[]).await;
    assert_eq!(reply.status, 504);
    let failures = logs.lines_with("response failed");
    assert!(
        failures.iter().any(|line| line.contains("504")),
        "tower-http's trace layer logs the 504 as a failure: {failures:?}"
    );
}

#[tokio::test]
async fn stopover_forwarded_scheme_reaches_a_handler_behind_tower_http_layers() {
    async fn scheme(info: ForwardedInfo) -> String {
        info.scheme().to_string()
    }
    let app = Router::new()
        .route("/scheme", get(scheme))
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .layer(ForwardedLayer::builder().build().unwrap());
    let addr = serve_with_connect_info(app).await;
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{addr}/scheme"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "https");
}

#[tokio::test]
async fn stopover_shield_finishes_a_handler_after_a_tower_http_timeout() {
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    let done = std::sync::Mutex::new(Some(done));
    let done = std::sync::Arc::new(done);
    let app = Router::new()
        .route(
            "/order",
            post(move || {
                let done = done.clone();
                async move {
                    // Outlives tower-http's timeout below, which drops this request's future.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if let Some(done) = done.lock().unwrap().take() {
                        let _ = done.send(());
                    }
                    "stored"
                }
            }),
        )
        .layer(ShieldLayer::builder().build().unwrap())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_millis(20),
        ));
    let addr = serve(app).await;
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://{addr}/order"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    finished
        .await
        .expect("the shielded handler ran to its end after the timeout answered");
}
