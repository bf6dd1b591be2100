//! The timeout layer inside axum, over real loopback connections, on tokio's paused clock.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http::{Method, StatusCode, header};
use serde_json::{Value, json};
use stopover::server::error::{ErrorFormat, ErrorLayer};
use stopover::server::matcher::{PathMatcher, PathRule};
use stopover::server::timeout::{TimeoutConfigError, TimeoutLayer};
use tokio::time::sleep;

use crate::counting;
use crate::support::serve;

const SHORT: Duration = Duration::from_millis(50);
const SLOW: Duration = Duration::from_secs(5);

async fn send(addr: SocketAddr, method: Method, path: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .request(method, format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap()
}

async fn json_body(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

async fn slow() -> &'static str {
    sleep(SLOW).await;
    "slow but done"
}

fn app() -> Router {
    Router::new()
        .route("/fast", get(|| async { "fast" }))
        .route("/slow", get(slow).post(slow))
        .route("/reports/yearly", get(slow))
        .route("/reports/daily", get(slow))
}

#[tokio::test(start_paused = true)]
async fn slow_handler_gets_504_json() {
    let addr = serve(app().layer(TimeoutLayer::builder(SHORT).build().unwrap())).await;
    let response = send(addr, Method::GET, "/slow").await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        json_body(response).await,
        json!({"detail": "Request timed out"})
    );
}

#[tokio::test(start_paused = true)]
async fn fast_handler_is_not_touched() {
    let addr = serve(app().layer(TimeoutLayer::builder(SHORT).build().unwrap())).await;
    let response = send(addr, Method::GET, "/fast").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "fast");
}

#[tokio::test(start_paused = true)]
async fn timeout_status_is_configurable() {
    let layer = TimeoutLayer::builder(SHORT)
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = send(addr, Method::GET, "/slow").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        json_body(response).await,
        json!({"detail": "Request timed out"})
    );
}

#[tokio::test(start_paused = true)]
async fn ignored_path_is_not_limited() {
    let layer = TimeoutLayer::builder(SHORT)
        .ignore(PathMatcher::exact("/slow").unwrap())
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = send(addr, Method::GET, "/slow").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "slow but done");
}

#[tokio::test(start_paused = true)]
async fn ignored_path_and_method_pair_exempts_only_that_method() {
    let rule =
        PathRule::with_methods(PathMatcher::exact("/slow").unwrap(), [Method::POST]).unwrap();
    let layer = TimeoutLayer::builder(SHORT).ignore(rule).build().unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = send(addr, Method::POST, "/slow").await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = send(addr, Method::GET, "/slow").await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn per_path_duration_replaces_the_default() {
    let layer = TimeoutLayer::builder(SHORT)
        .path_timeout(PathMatcher::prefix("/reports/").unwrap(), SLOW * 2)
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = send(addr, Method::GET, "/reports/daily").await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = send(addr, Method::GET, "/slow").await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn per_path_duration_first_match_wins() {
    let layer = TimeoutLayer::builder(SLOW * 2)
        .path_timeout(PathMatcher::exact("/reports/yearly").unwrap(), SHORT)
        .path_timeout(PathMatcher::prefix("/reports/").unwrap(), SLOW * 2)
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = send(addr, Method::GET, "/reports/yearly").await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let response = send(addr, Method::GET, "/reports/daily").await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn ignore_rules_win_over_per_path_durations() {
    let layer = TimeoutLayer::builder(SHORT)
        .path_timeout(PathMatcher::exact("/slow").unwrap(), SHORT)
        .ignore(PathMatcher::exact("/slow").unwrap())
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = send(addr, Method::GET, "/slow").await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn timed_out_handler_is_dropped_at_its_await() {
    struct SetOnDrop(Arc<AtomicBool>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let app = Router::new().route(
        "/work",
        get({
            let (dropped, finished) = (dropped.clone(), finished.clone());
            move || async move {
                let _guard = SetOnDrop(dropped);
                sleep(SLOW).await;
                finished.store(true, Ordering::SeqCst);
                "done"
            }
        }),
    );
    let addr = serve(app.layer(TimeoutLayer::builder(SHORT).build().unwrap())).await;
    let response = send(addr, Method::GET, "/work").await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(dropped.load(Ordering::SeqCst));
    // Let the handler's sleep pass: it must not resume.
    sleep(SLOW * 2).await;
    assert!(!finished.load(Ordering::SeqCst));
}

#[tokio::test(start_paused = true)]
async fn streaming_body_is_not_cut_once_the_head_is_ready() {
    let app = Router::new().route(
        "/stream",
        get(|| async {
            let chunks = futures_util::stream::unfold(0u8, |sent| async move {
                if sent == 2 {
                    return None;
                }
                sleep(SLOW).await;
                Some((Ok::<_, Infallible>(Bytes::from_static(b"chunk ")), sent + 1))
            });
            Body::from_stream(chunks)
        }),
    );
    let addr = serve(app.layer(TimeoutLayer::builder(SHORT).build().unwrap())).await;
    let response = send(addr, Method::GET, "/stream").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "chunk chunk ");
}

#[tokio::test(start_paused = true)]
async fn timeout_is_rendered_by_an_outer_error_layer() {
    let app = app()
        .layer(TimeoutLayer::builder(SHORT).build().unwrap())
        .layer(
            ErrorLayer::builder()
                .format(ErrorFormat::ProblemJson)
                .build()
                .unwrap(),
        );
    let addr = serve(app).await;
    let response = send(addr, Method::GET, "/slow").await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(
        json_body(response).await,
        json!({
            "type": "about:blank",
            "title": "Gateway Timeout",
            "status": 504,
            "detail": "Request timed out"
        })
    );
}

#[tokio::test(start_paused = true)]
async fn timeout_with_default_error_layer_stays_a_504() {
    // aiohttp-middlewares turns this pairing into `500 {"detail": ""}`.
    let app = app()
        .layer(TimeoutLayer::builder(SHORT).build().unwrap())
        .layer(ErrorLayer::new());
    let addr = serve(app).await;
    let response = send(addr, Method::GET, "/slow").await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        json_body(response).await,
        json!({"detail": "Request timed out"})
    );
}

#[test]
fn zero_duration_is_a_config_error() {
    assert!(matches!(
        TimeoutLayer::builder(Duration::ZERO).build(),
        Err(TimeoutConfigError::ZeroDuration { .. })
    ));
    let err = TimeoutLayer::builder(SHORT)
        .path_timeout(PathMatcher::prefix("/reports/").unwrap(), Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(matches!(&err, TimeoutConfigError::ZeroDuration { what } if what == "/reports/"));
}

#[test]
fn non_error_status_is_a_config_error() {
    let err = TimeoutLayer::builder(SHORT)
        .status(StatusCode::OK)
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        TimeoutConfigError::NotAnErrorStatus { status } if status == StatusCode::OK
    ));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn happy_path_through_error_and_timeout_layers_allocates_nothing() {
    use tower::{Layer, Service, ServiceExt};

    let leaf = tower::service_fn(|_req: http::Request<()>| async {
        // Yield once so the timer is really registered, as with any handler that waits.
        tokio::task::yield_now().await;
        Ok::<_, Infallible>(http::Response::new(http_body_util::Empty::<Bytes>::new()))
    });
    let timeout = TimeoutLayer::builder(SLOW)
        .ignore(PathMatcher::regex(r"/stream/\d+").unwrap())
        .ignore(
            PathRule::with_methods(PathMatcher::exact("/upload").unwrap(), [Method::POST]).unwrap(),
        )
        .path_timeout(PathMatcher::prefix("/reports/").unwrap(), SLOW * 2)
        .build()
        .unwrap();
    let errors = ErrorLayer::builder()
        .skip_path(PathMatcher::regex("/legacy/.*").unwrap())
        .build()
        .unwrap();
    let mut service = errors.layer(timeout.layer(leaf));
    let uri: http::Uri = "/reports/daily?year=2026".parse().unwrap();
    let request = || {
        let mut request = http::Request::new(());
        *request.uri_mut() = uri.clone();
        request
    };

    // Warm up: the timer wheel, the regex caches and the URI's shared buffer are set up once.
    for _ in 0..3 {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(request())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    let mut requests = Vec::with_capacity(100);
    requests.extend((0..100).map(|_| request()));
    let before = counting::allocations();
    for request in requests.drain(..) {
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        drop(response);
    }
    let allocations = counting::allocations() - before;
    assert_eq!(allocations, 0, "{allocations} allocations for 100 requests");
}

#[tokio::test(start_paused = true)]
async fn rules_see_the_raw_path_the_router_routes_on() {
    // `/a%2Fslow` is one segment for axum's router, so a rule for `/a/` must not apply to it.
    let app = Router::new()
        .route("/a/slow", get(slow))
        .route("/{segment}", get(slow));
    let layer = TimeoutLayer::builder(SHORT)
        .ignore(PathMatcher::prefix("/a/").unwrap())
        .build()
        .unwrap();
    let addr = serve(app.layer(layer)).await;
    let response = send(addr, Method::GET, "/a/slow").await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = send(addr, Method::GET, "/a%2Fslow").await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
}
