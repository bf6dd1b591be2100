//! The error layer inside axum, over real loopback connections.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};
use stopover::server::error::{
    ErrorConfigError, ErrorContext, ErrorFormat, ErrorLayer, ErrorOrigin, HttpError,
};
use stopover::server::matcher::{PathMatcher, PathRule};
use tower::Layer;

use crate::support::{serve, serve_service};

/// Serves `app` wrapped as a whole in `layer`, the way `ServiceBuilder` or a bare hyper server
/// would: the layer then sees the response exactly as the router made it (with `Allow`).
async fn serve_wrapped(app: Router, layer: ErrorLayer) -> SocketAddr {
    serve_service(layer.layer(app)).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn get_url(addr: SocketAddr, path: &str) -> reqwest::Response {
    client()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap()
}

async fn json_body(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

fn content_type(response: &reqwest::Response) -> Option<&str> {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

fn app() -> Router {
    Router::new()
        .route("/ok", get(|| async { "fine" }))
        .route("/panic", get(panicking))
        .route(
            "/conflict",
            get(|| async {
                HttpError::new(StatusCode::CONFLICT, "item is locked")
                    .with_field("retry_in", 30)
                    .into_response::<Body>()
            }),
        )
}

async fn panicking() -> &'static str {
    panic!("database password is hunter2")
}

#[tokio::test]
async fn unknown_route_becomes_json_404() {
    let addr = serve(app().layer(ErrorLayer::new())).await;
    let response = get_url(addr, "/nope").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(content_type(&response), Some("application/json"));
    assert_eq!(json_body(response).await, json!({"detail": "Not Found"}));
}

#[tokio::test]
async fn wrong_method_becomes_json_405_and_keeps_allow() {
    let addr = serve_wrapped(app(), ErrorLayer::new()).await;
    let response = client()
        .delete(format!("http://{addr}/ok"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()[header::ALLOW], "GET,HEAD");
    assert_eq!(
        json_body(response).await,
        json!({"detail": "Method Not Allowed"})
    );
}

#[tokio::test]
async fn wrong_method_inside_router_layer_becomes_json_405() {
    let addr = serve(app().layer(ErrorLayer::new())).await;
    let response = client()
        .post(format!("http://{addr}/ok"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(response.headers().contains_key(header::ALLOW));
    assert_eq!(
        json_body(response).await,
        json!({"detail": "Method Not Allowed"})
    );
}

#[tokio::test]
async fn handler_http_error_is_rendered_with_extra_data() {
    let addr = serve(app().layer(ErrorLayer::new())).await;
    let response = get_url(addr, "/conflict").await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(
        json_body(response).await,
        json!({"detail": "item is locked", "retry_in": 30})
    );
}

#[tokio::test]
async fn http_error_converts_with_question_mark_in_a_handler() {
    async fn handler() -> Result<String, Response> {
        Err(HttpError::new(StatusCode::FORBIDDEN, "not yours"))?
    }
    let addr = serve(
        Router::new()
            .route("/x", get(handler))
            .layer(ErrorLayer::new()),
    )
    .await;
    let response = get_url(addr, "/x").await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(json_body(response).await, json!({"detail": "not yours"}));
}

#[tokio::test]
async fn http_error_without_the_layer_is_still_json() {
    let addr = serve(app()).await;
    let response = get_url(addr, "/conflict").await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(content_type(&response), Some("application/json"));
    assert_eq!(
        json_body(response).await,
        json!({"detail": "item is locked", "retry_in": 30})
    );
}

#[tokio::test]
async fn panic_becomes_500_with_generic_detail() {
    let addr = serve(app().layer(ErrorLayer::new())).await;
    let response = get_url(addr, "/panic").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        json_body(response).await,
        json!({"detail": "Internal Server Error"})
    );
}

#[tokio::test]
async fn panic_message_is_sent_only_when_enabled() {
    let addr = serve(
        app().layer(
            ErrorLayer::builder()
                .expose_panic_messages(true)
                .build()
                .unwrap(),
        ),
    )
    .await;
    let response = get_url(addr, "/panic").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        json_body(response).await,
        json!({"detail": "database password is hunter2"})
    );
}

#[tokio::test]
async fn panic_in_service_call_becomes_500() {
    let service = tower::service_fn(
        |_req: http::Request<Body>| -> std::future::Ready<Result<Response, Infallible>> {
            panic!("panicked before returning a future")
        },
    );
    let app = Router::new().route_service("/x", service);
    let addr = serve(app.layer(ErrorLayer::new())).await;
    let response = get_url(addr, "/x").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        json_body(response).await,
        json!({"detail": "Internal Server Error"})
    );
}

fn failing_service()
-> impl tower::Service<http::Request<Body>, Response = Response, Error = std::io::Error, Future: Send>
+ Clone
+ Send
+ 'static {
    tower::service_fn(|_req: http::Request<Body>| async {
        Err::<Response, _>(std::io::Error::other("connection to 10.0.0.7 refused"))
    })
}

async fn serve_failing(layer: ErrorLayer) -> SocketAddr {
    serve_service(layer.layer(failing_service())).await
}

#[tokio::test]
async fn service_error_becomes_500_with_generic_detail() {
    let addr = serve_failing(ErrorLayer::new()).await;
    let response = get_url(addr, "/").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        json_body(response).await,
        json!({"detail": "Internal Server Error"})
    );
}

#[tokio::test]
async fn service_error_message_is_sent_only_when_enabled() {
    let addr = serve_failing(
        ErrorLayer::builder()
            .expose_error_messages(true)
            .build()
            .unwrap(),
    )
    .await;
    let response = get_url(addr, "/").await;
    assert_eq!(
        json_body(response).await,
        json!({"detail": "connection to 10.0.0.7 refused"})
    );
}

#[tokio::test]
async fn redirect_passes_untouched() {
    let app = Router::new().route(
        "/old",
        get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/new")]) }),
    );
    let addr = serve(app.layer(ErrorLayer::new())).await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .get(format!("http://{addr}/old"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()[header::LOCATION], "/new");
    assert_eq!(content_type(&response), None);
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn success_passes_untouched() {
    let addr = serve(app().layer(ErrorLayer::new())).await;
    let response = get_url(addr, "/ok").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(&response), Some("text/plain; charset=utf-8"));
    assert_eq!(response.text().await.unwrap(), "fine");
}

#[tokio::test]
async fn no_content_and_not_modified_get_no_body() {
    let app = Router::new()
        .route("/gone", get(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/cached",
            get(|| async { (StatusCode::NOT_MODIFIED, [(header::ETAG, "\"v1\"")]) }),
        );
    let addr = serve(app.layer(ErrorLayer::new())).await;
    let response = get_url(addr, "/gone").await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(content_type(&response), None);
    assert!(response.bytes().await.unwrap().is_empty());
    let response = get_url(addr, "/cached").await;
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(response.headers()[header::ETAG], "\"v1\"");
    assert_eq!(content_type(&response), None);
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn head_error_gets_headers_but_no_body() {
    let addr = serve_wrapped(app(), ErrorLayer::new()).await;
    let response = client()
        .head(format!("http://{addr}/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(content_type(&response), Some("application/json"));
    // The length the GET's document has, as for any HEAD response.
    let document_length = br#"{"detail":"Not Found"}"#.len().to_string();
    assert_eq!(
        response.headers()[header::CONTENT_LENGTH],
        document_length.as_str()
    );
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn error_with_a_body_passes_untouched() {
    let app = Router::new().route(
        "/teapot",
        get(|| async { (StatusCode::BAD_REQUEST, "missing field `name`") }),
    );
    let addr = serve(app.layer(ErrorLayer::new())).await;
    let response = get_url(addr, "/teapot").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(content_type(&response), Some("text/plain; charset=utf-8"));
    assert_eq!(response.text().await.unwrap(), "missing field `name`");
}

#[tokio::test]
async fn problem_json_option_renders_rfc_9457() {
    let layer = ErrorLayer::builder()
        .format(ErrorFormat::ProblemJson)
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = get_url(addr, "/nope").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(content_type(&response), Some("application/problem+json"));
    assert_eq!(
        json_body(response).await,
        json!({"type": "about:blank", "title": "Not Found", "status": 404, "detail": "Not Found"})
    );
}

#[tokio::test]
async fn problem_json_keeps_http_error_data_and_type() {
    let app = Router::new().route(
        "/pay",
        post(|| async {
            HttpError::new(StatusCode::PAYMENT_REQUIRED, "balance too low")
                .with_problem_type("https://example.com/probs/balance")
                .with_field("balance", 30)
                // Reserved members are not overridden by extra data.
                .with_field("status", 200)
                .into_response::<Body>()
        }),
    );
    let addr = serve(
        app.layer(
            ErrorLayer::builder()
                .format(ErrorFormat::ProblemJson)
                .build()
                .unwrap(),
        ),
    )
    .await;
    let response = client()
        .post(format!("http://{addr}/pay"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYMENT_REQUIRED);
    assert_eq!(
        json_body(response).await,
        json!({
            "type": "https://example.com/probs/balance",
            "title": "Payment Required",
            "status": 402,
            "detail": "balance too low",
            "balance": 30
        })
    );
}

fn text_handler(
    label: &'static str,
) -> impl Fn(http::request::Parts, ErrorContext) -> std::future::Ready<http::Response<Bytes>>
+ Send
+ Sync
+ 'static {
    move |_request, ctx| {
        let mut response = http::Response::new(Bytes::from(format!("{label}: {}", ctx.detail())));
        *response.status_mut() = ctx.status();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        std::future::ready(response)
    }
}

#[tokio::test]
async fn per_path_handler_first_match_wins() {
    let layer = ErrorLayer::builder()
        .handler(
            PathMatcher::prefix("/pages/").unwrap(),
            text_handler("pages"),
        )
        .handler(
            PathMatcher::exact("/pages/x").unwrap(),
            text_handler("never"),
        )
        .handler(PathMatcher::regex("/api/.*").unwrap(), text_handler("api"))
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;

    let response = get_url(addr, "/pages/x").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(content_type(&response), Some("text/plain"));
    assert_eq!(response.text().await.unwrap(), "pages: Not Found");

    let response = get_url(addr, "/api/y").await;
    assert_eq!(response.text().await.unwrap(), "api: Not Found");

    let response = get_url(addr, "/other").await;
    assert_eq!(json_body(response).await, json!({"detail": "Not Found"}));
}

#[tokio::test]
async fn per_path_handler_can_be_limited_to_methods() {
    let rule = PathRule::with_methods(PathMatcher::prefix("/").unwrap(), [Method::DELETE]).unwrap();
    let layer = ErrorLayer::builder()
        .handler(rule, text_handler("delete"))
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = client()
        .delete(format!("http://{addr}/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "delete: Not Found");
    let response = get_url(addr, "/nope").await;
    assert_eq!(json_body(response).await, json!({"detail": "Not Found"}));
}

#[tokio::test]
async fn default_handler_replaces_the_built_in_rendering() {
    let layer = ErrorLayer::builder()
        .default_handler(text_handler("default"))
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = get_url(addr, "/nope").await;
    assert_eq!(response.text().await.unwrap(), "default: Not Found");
}

#[tokio::test]
async fn custom_handler_sees_status_detail_data_and_request() {
    let layer = ErrorLayer::builder()
        .handler_headers([http::HeaderName::from_static("x-trace")])
        .default_handler(|request, ctx| async move {
            let body = json!({
                "kind": format!("{:?}", ctx.origin()),
                "status": ctx.status().as_u16(),
                "detail": ctx.detail(),
                "data": ctx.data(),
                "method": request.method.as_str(),
                "uri": request.uri.to_string(),
                "trace": request.headers.get("x-trace").and_then(|v| v.to_str().ok()),
            });
            let mut response = http::Response::new(Bytes::from(body.to_string()));
            *response.status_mut() = ctx.status();
            response
        })
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = client()
        .get(format!("http://{addr}/conflict?x=1"))
        .header("x-trace", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(
        json_body(response).await,
        json!({
            "kind": format!("{:?}", ErrorOrigin::HttpError),
            "status": 409,
            "detail": "item is locked",
            "data": {"retry_in": 30},
            "method": "GET",
            "uri": "/conflict?x=1",
            "trace": "abc",
        })
    );
}

#[tokio::test]
async fn custom_handler_sees_internal_message_of_a_panic() {
    let layer = ErrorLayer::builder()
        .default_handler(|_request, ctx| async move {
            let body = format!("{}|{}", ctx.detail(), ctx.internal_message().unwrap_or(""));
            let mut response = http::Response::new(Bytes::from(body));
            *response.status_mut() = ctx.status();
            response
        })
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = get_url(addr, "/panic").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        response.text().await.unwrap(),
        "Internal Server Error|database password is hunter2"
    );
}

#[tokio::test]
async fn panicking_handler_falls_back_to_the_built_in_rendering() {
    let layer = ErrorLayer::builder()
        .default_handler(
            |_request, _ctx| -> std::future::Ready<http::Response<Bytes>> { panic!("handler bug") },
        )
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = get_url(addr, "/nope").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_body(response).await, json!({"detail": "Not Found"}));
}

#[tokio::test]
async fn skipped_status_is_left_alone() {
    let layer = ErrorLayer::builder()
        .skip_status(StatusCode::NOT_FOUND)
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = get_url(addr, "/nope").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(content_type(&response), None);
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn skipped_path_is_left_alone() {
    let layer = ErrorLayer::builder()
        .skip_path(PathMatcher::prefix("/legacy/").unwrap())
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = get_url(addr, "/legacy/x").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.bytes().await.unwrap().is_empty());
    let response = get_url(addr, "/modern/x").await;
    assert_eq!(json_body(response).await, json!({"detail": "Not Found"}));
}

#[tokio::test]
async fn panic_on_a_skipped_path_still_becomes_500() {
    let layer = ErrorLayer::builder()
        .skip_path(PathMatcher::exact("/panic").unwrap())
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = get_url(addr, "/panic").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        json_body(response).await,
        json!({"detail": "Internal Server Error"})
    );
}

#[tokio::test]
async fn headers_of_the_error_response_are_kept() {
    let app = Router::new().route(
        "/login",
        get(|| async {
            let mut response = StatusCode::UNAUTHORIZED.into_response();
            let headers = response.headers_mut();
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("120"));
            headers.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
            headers.append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
            response
        }),
    );
    let addr = serve(app.layer(ErrorLayer::new())).await;
    let response = get_url(addr, "/login").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let headers = response.headers();
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(headers[header::RETRY_AFTER], "120");
    let cookies: Vec<_> = headers.get_all(header::SET_COOKIE).iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(content_type(&response), Some("application/json"));
    assert_eq!(json_body(response).await, json!({"detail": "Unauthorized"}));
}

#[tokio::test]
async fn http_error_headers_are_sent() {
    let app = Router::new().route(
        "/slow-down",
        get(|| async {
            HttpError::from_status(StatusCode::TOO_MANY_REQUESTS)
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("30"))
                .into_response::<Body>()
        }),
    );
    let addr = serve(app.layer(ErrorLayer::new())).await;
    let response = get_url(addr, "/slow-down").await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()[header::RETRY_AFTER], "30");
    assert_eq!(
        json_body(response).await,
        json!({"detail": "Too Many Requests"})
    );
}

#[test]
fn skipping_a_non_error_status_is_a_config_error() {
    let err = ErrorLayer::builder()
        .skip_status(StatusCode::OK)
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        ErrorConfigError::NotAnErrorStatus { status } if status == StatusCode::OK
    ));
    assert!(err.to_string().contains("200"));
}

#[test]
fn bad_handler_pattern_is_a_config_error() {
    assert!(PathMatcher::regex("/items/(").is_err());
    assert!(PathMatcher::exact("items").is_err());
}

fn rejecting_app() -> Router {
    Router::new()
        .route(
            "/items",
            post(|axum::Json(item): axum::Json<Value>| async move { axum::Json(item) }),
        )
        .route(
            "/leaky",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "db password is hunter2") }),
        )
        .route(
            "/json",
            get(|| async { (StatusCode::BAD_REQUEST, axum::Json(json!({"own": "shape"}))) }),
        )
        .route(
            "/html",
            get(|| async {
                (
                    StatusCode::NOT_FOUND,
                    axum::response::Html("<h1>no such page</h1>"),
                )
            }),
        )
        .route(
            "/large",
            get(|| async { (StatusCode::BAD_REQUEST, "x".repeat(9000)) }),
        )
        .route(
            "/stream",
            get(|| async {
                let chunks =
                    futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from("streamed text"))]);
                (StatusCode::BAD_REQUEST, Body::from_stream(chunks))
            }),
        )
}

async fn post_malformed_json(addr: SocketAddr) -> reqwest::Response {
    client()
        .post(format!("http://{addr}/items"))
        .header(header::CONTENT_TYPE, "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn plain_text_rejection_passes_untouched_by_default() {
    let addr = serve(rejecting_app().layer(ErrorLayer::new())).await;
    let response = post_malformed_json(addr).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(content_type(&response), Some("text/plain; charset=utf-8"));
}

#[tokio::test]
async fn rewrite_bodies_renders_a_plain_text_rejection_as_json() {
    let addr =
        serve(rejecting_app().layer(ErrorLayer::builder().rewrite_bodies(true).build().unwrap()))
            .await;
    let response = post_malformed_json(addr).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(content_type(&response), Some("application/json"));
    let length: usize = response.headers()[header::CONTENT_LENGTH]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    assert_eq!(bytes.len(), length);
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("Failed to parse the request body as JSON"),
        "{detail}"
    );
}

#[tokio::test]
async fn rewrite_bodies_hides_the_text_of_a_5xx() {
    let addr =
        serve(rejecting_app().layer(ErrorLayer::builder().rewrite_bodies(true).build().unwrap()))
            .await;
    let response = get_url(addr, "/leaky").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        json_body(response).await,
        json!({"detail": "Internal Server Error"})
    );
}

#[tokio::test]
async fn rewrite_bodies_leaves_json_bodies_alone() {
    let addr =
        serve(rejecting_app().layer(ErrorLayer::builder().rewrite_bodies(true).build().unwrap()))
            .await;
    let response = get_url(addr, "/json").await;
    assert_eq!(json_body(response).await, json!({"own": "shape"}));
}

#[tokio::test]
async fn rewrite_bodies_leaves_bodies_over_the_limit_alone() {
    let addr =
        serve(rejecting_app().layer(ErrorLayer::builder().rewrite_bodies(true).build().unwrap()))
            .await;
    let response = get_url(addr, "/large").await;
    assert_eq!(content_type(&response), Some("text/plain; charset=utf-8"));
    assert_eq!(response.text().await.unwrap().len(), 9000);
}

#[tokio::test]
async fn rewrite_bodies_leaves_bodies_of_unknown_size_alone() {
    let addr =
        serve(rejecting_app().layer(ErrorLayer::builder().rewrite_bodies(true).build().unwrap()))
            .await;
    let response = get_url(addr, "/stream").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.text().await.unwrap(), "streamed text");
}

#[tokio::test]
async fn rendered_error_drops_the_content_encoding_of_the_replaced_body() {
    let app = Router::new().route(
        "/gone",
        get(|| async { (StatusCode::GONE, [(header::CONTENT_ENCODING, "gzip")]) }),
    );
    let addr = serve(app.layer(ErrorLayer::new())).await;
    let response = get_url(addr, "/gone").await;
    assert_eq!(response.status(), StatusCode::GONE);
    assert_eq!(response.headers().get(header::CONTENT_ENCODING), None);
    assert_eq!(json_body(response).await, json!({"detail": "Gone"}));
}

#[tokio::test]
async fn rewrite_bodies_leaves_html_pages_alone() {
    let addr =
        serve(rejecting_app().layer(ErrorLayer::builder().rewrite_bodies(true).build().unwrap()))
            .await;
    let response = get_url(addr, "/html").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(content_type(&response), Some("text/html; charset=utf-8"));
    assert_eq!(response.text().await.unwrap(), "<h1>no such page</h1>");
}

#[tokio::test]
async fn rewrite_bodies_sends_the_text_of_a_5xx_only_when_exposed() {
    let layer = ErrorLayer::builder()
        .rewrite_bodies(true)
        .expose_error_messages(true)
        .build()
        .unwrap();
    let addr = serve(rejecting_app().layer(layer)).await;
    let response = get_url(addr, "/leaky").await;
    assert_eq!(
        json_body(response).await,
        json!({"detail": "db password is hunter2"})
    );
}
