//! What the server layers tell `tracing`: the error layer's event in the server conventions'
//! names at configurable levels, and the shield and timeout layers' marks on the request span.

use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{Next, from_fn};
use axum::routing::{get, post};
use http::StatusCode;
use stopover::server::error::{ErrorLayer, HttpError};
use stopover::server::shield::ShieldLayer;
use stopover::server::timeout::TimeoutLayer;
use tracing::Instrument;

use crate::span_capture;
use crate::span_capture::capture;
use crate::support::serve;

/// A request span declaring the fields the layers record, as a `TraceLayer` user would.
async fn request_span(request: Request, next: Next) -> axum::response::Response {
    let span = tracing::info_span!(
        "request",
        shielded = tracing::field::Empty,
        timed_out = tracing::field::Empty,
    );
    next.run(request).instrument(span).await
}

async fn status_of(method: &str, url: String) -> u16 {
    let client = reqwest::Client::new();
    let method = http::Method::from_bytes(method.as_bytes()).unwrap();
    client
        .request(method, url)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn failed_events(spans: &span_capture::Spans) -> Vec<span_capture::Event> {
    spans
        .events()
        .into_iter()
        .filter(|event| event.field("message") == Some("request failed"))
        .collect()
}

#[tokio::test]
async fn error_events_use_server_convention_names_and_the_matched_route() {
    let (spans, _guard) = capture();
    let app = Router::new()
        .route(
            "/items/{id}",
            get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .layer(
            ErrorLayer::builder()
                .route_from(|ext| ext.get::<MatchedPath>().map(MatchedPath::as_str))
                .build()
                .unwrap(),
        );
    let addr = serve(app).await;
    assert_eq!(
        status_of("GET", format!("http://{addr}/items/7")).await,
        500
    );
    let events = failed_events(&spans);
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event.level, tracing::Level::ERROR);
    assert_eq!(event.field("http.request.method"), Some("GET"));
    assert_eq!(event.field("url.path"), Some("/items/7"));
    assert_eq!(event.field("http.route"), Some("/items/{id}"));
    assert_eq!(event.field("http.response.status_code"), Some("500"));
    assert_eq!(event.field("error.type"), Some("500"));
}

#[tokio::test]
async fn error_event_levels_for_5xx_and_4xx_are_configurable() {
    let (spans, _guard) = capture();
    let app = Router::new()
        .route("/boom", get(|| async { StatusCode::BAD_GATEWAY }))
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .layer(
            ErrorLayer::builder()
                .server_error_level(tracing::Level::WARN)
                .client_error_level(tracing::Level::INFO)
                .build()
                .unwrap(),
        );
    let addr = serve(app).await;
    assert_eq!(status_of("GET", format!("http://{addr}/boom")).await, 502);
    assert_eq!(
        status_of("GET", format!("http://{addr}/missing")).await,
        404
    );
    let levels: Vec<_> = failed_events(&spans)
        .iter()
        .map(|event| (event.field("url.path").unwrap().to_owned(), event.level))
        .collect();
    assert_eq!(
        levels,
        [
            ("/boom".to_owned(), tracing::Level::WARN),
            ("/missing".to_owned(), tracing::Level::INFO)
        ]
    );
}

#[tokio::test]
async fn a_5xx_a_handler_returns_as_an_http_error_is_logged_at_warn() {
    let (spans, _guard) = capture();
    let app = Router::new()
        .route(
            "/draining",
            get(|| async {
                HttpError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "draining, try another replica",
                )
                .into_response::<axum::body::Body>()
            }),
        )
        .layer(ErrorLayer::new());
    let addr = serve(app).await;
    assert_eq!(
        status_of("GET", format!("http://{addr}/draining")).await,
        503
    );
    let events = failed_events(&spans);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].level, tracing::Level::WARN);
}

#[tokio::test]
async fn the_level_of_a_5xx_made_from_an_http_error_is_configurable() {
    let (spans, _guard) = capture();
    let app = Router::new()
        .route(
            "/upstream",
            get(|| async {
                HttpError::new(StatusCode::BAD_GATEWAY, "the ledger did not answer")
                    .into_response::<axum::body::Body>()
            }),
        )
        .layer(
            ErrorLayer::builder()
                .http_error_level(tracing::Level::INFO)
                .build()
                .unwrap(),
        );
    let addr = serve(app).await;
    assert_eq!(
        status_of("GET", format!("http://{addr}/upstream")).await,
        502
    );
    let events = failed_events(&spans);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].level, tracing::Level::INFO);
}

#[tokio::test]
async fn shield_and_timeout_mark_the_request_span() {
    let (spans, _guard) = capture();
    let app = Router::new()
        .route("/order", post(|| async { "stored" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        )
        .layer(ShieldLayer::builder().build().unwrap())
        .layer(
            TimeoutLayer::builder(Duration::from_millis(50))
                .build()
                .unwrap(),
        )
        .layer(from_fn(request_span));
    let addr = serve(app).await;
    assert_eq!(status_of("POST", format!("http://{addr}/order")).await, 200);
    assert_eq!(status_of("GET", format!("http://{addr}/slow")).await, 504);
    let requests: Vec<_> = spans
        .all()
        .into_iter()
        .filter(|span| span.name == "request")
        .collect();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(requests[0].field("shielded"), Some("true"));
    assert_eq!(requests[0].field("timed_out"), None);
    assert_eq!(requests[1].field("shielded"), None, "GET is not shielded");
    assert_eq!(requests[1].field("timed_out"), Some("true"));
}

#[tokio::test]
async fn a_shielded_handler_logs_inside_the_request_span() {
    let (spans, _guard) = capture();
    let app = Router::new()
        .route(
            "/order",
            post(|| async {
                tracing::info!(step = "stored", "order handler");
                "stored"
            }),
        )
        .layer(ShieldLayer::builder().build().unwrap())
        .layer(from_fn(request_span));
    let addr = serve(app).await;

    assert_eq!(status_of("POST", format!("http://{addr}/order")).await, 200);

    let events = spans.events();
    let handler = events
        .iter()
        .find(|event| event.field("step") == Some("stored"))
        .expect("the handler's event");
    assert_eq!(handler.span, Some("request"), "{events:#?}");
}

fn exception_events(spans: &span_capture::Spans) -> Vec<span_capture::Event> {
    spans
        .events()
        .into_iter()
        .filter(|event| event.name == "http.server.request.exception")
        .collect()
}

#[tokio::test]
async fn a_handler_panic_is_a_server_request_exception_event() {
    let (spans, _guard) = capture();
    let app = Router::new()
        .route(
            "/boom",
            get(|| async {
                panic!("ledger out of balance");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .layer(ErrorLayer::new());
    let addr = serve(app).await;
    assert_eq!(status_of("GET", format!("http://{addr}/boom")).await, 500);
    let events = exception_events(&spans);
    assert_eq!(events.len(), 1, "{:#?}", spans.events());
    let event = &events[0];
    assert_eq!(event.level, tracing::Level::ERROR);
    assert_eq!(event.field("exception.type"), Some("panic"));
    assert_eq!(
        event.field("exception.message"),
        Some("ledger out of balance")
    );
    assert_eq!(event.field("http.response.status_code"), Some("500"));
    assert_eq!(event.field("error.message"), None);
}

#[tokio::test]
async fn an_error_the_handler_answers_on_purpose_is_not_an_exception_event() {
    let (spans, _guard) = capture();
    let app = Router::new()
        .route(
            "/draining",
            get(|| async {
                HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "draining")
                    .into_response::<axum::body::Body>()
            }),
        )
        .layer(ErrorLayer::new());
    let addr = serve(app).await;
    assert_eq!(
        status_of("GET", format!("http://{addr}/draining")).await,
        503
    );
    assert_eq!(failed_events(&spans).len(), 1);
    assert_eq!(exception_events(&spans).len(), 0);
}

#[tokio::test]
async fn a_shielded_handler_panic_is_a_server_request_exception_event() {
    let (spans, _guard) = capture();
    let app = Router::new()
        .route(
            "/pay",
            post(|| async {
                panic!("card network unreachable");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .layer(ShieldLayer::builder().build().unwrap());
    let addr = serve(app).await;
    assert_eq!(status_of("POST", format!("http://{addr}/pay")).await, 500);
    let events = exception_events(&spans);
    assert_eq!(events.len(), 1, "{:#?}", spans.events());
    assert_eq!(events[0].level, tracing::Level::ERROR);
    assert_eq!(events[0].field("exception.type"), Some("panic"));
    assert_eq!(
        events[0].field("exception.message"),
        Some("card network unreachable")
    );
}
