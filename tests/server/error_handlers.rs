//! The error layer's async handlers, data-only bodies, `error_response` and skipped error types,
//! over real loopback connections.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::{StatusCode, header};
use serde_json::{Value, json};
use stopover::server::error::{ErrorContext, ErrorFormat, ErrorLayer, HttpError};
use stopover::server::matcher::PathMatcher;
use tokio::sync::{mpsc, oneshot};
use tower::{BoxError, ServiceBuilder};

use crate::support::serve;

async fn get_url(addr: SocketAddr, path: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap()
}

async fn json_body(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

fn text(status: StatusCode, body: String) -> http::Response<Bytes> {
    let mut response = http::Response::new(Bytes::from(body));
    *response.status_mut() = status;
    response
}

fn app() -> Router {
    Router::new().route("/ok", get(|| async { "fine" })).route(
        "/geo",
        get(|| async {
            HttpError::new(
                StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
                "blocked in region",
            )
            .with_field("ignored", true)
            .with_body(json!({"error": {"code": "geo_blocked"}}))
            .into_response::<Body>()
        }),
    )
}

/// A stand-in for a database or an error tracker: answers each question on another task.
fn spawn_store() -> mpsc::Sender<(String, oneshot::Sender<String>)> {
    let (tx, mut rx) = mpsc::channel::<(String, oneshot::Sender<String>)>(8);
    tokio::spawn(async move {
        while let Some((path, reply)) = rx.recv().await {
            let _ = reply.send(format!("incident for {path}"));
        }
    });
    tx
}

#[tokio::test]
async fn async_default_handler_awaits_before_answering() {
    let store = spawn_store();
    let layer = ErrorLayer::builder()
        .default_handler(move |request, ctx: ErrorContext| {
            let store = store.clone();
            async move {
                let (reply, answer) = oneshot::channel();
                store
                    .send((request.uri.path().to_owned(), reply))
                    .await
                    .unwrap();
                let incident = answer.await.unwrap();
                text(ctx.status(), format!("{}: {incident}", ctx.detail()))
            }
        })
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = get_url(addr, "/missing").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.text().await.unwrap(),
        "Not Found: incident for /missing"
    );
}

#[derive(Clone)]
struct Tenant(&'static str);

#[tokio::test]
async fn async_path_handler_sees_the_request_extensions() {
    let layer = ErrorLayer::builder()
        .handler_extension::<Tenant>()
        .handler(
            PathMatcher::prefix("/pages/").unwrap(),
            |request: http::request::Parts, ctx: ErrorContext| async move {
                let tenant = request.extensions.get::<Tenant>().map_or("none", |t| t.0);
                text(ctx.status(), format!("{tenant}: {}", ctx.detail()))
            },
        )
        .build()
        .unwrap();
    let app = app().layer(layer).layer(axum::Extension(Tenant("acme")));
    let addr = serve(app).await;
    let response = get_url(addr, "/pages/x").await;
    assert_eq!(response.text().await.unwrap(), "acme: Not Found");
    let response = get_url(addr, "/api/x").await;
    assert_eq!(json_body(response).await, json!({"detail": "Not Found"}));
}

#[tokio::test]
async fn async_handler_panicking_after_an_await_falls_back_to_the_built_in_rendering() {
    let layer = ErrorLayer::builder()
        .default_handler(|_request, _ctx| async {
            tokio::task::yield_now().await;
            panic!("template missing");
            #[allow(unreachable_code)]
            http::Response::new(Bytes::new())
        })
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = get_url(addr, "/missing").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_body(response).await, json!({"detail": "Not Found"}));
}

#[tokio::test]
async fn data_only_body_replaces_the_whole_document() {
    let addr = serve(app().layer(ErrorLayer::new())).await;
    let response = get_url(addr, "/geo").await;
    assert_eq!(response.status(), StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        json_body(response).await,
        json!({"error": {"code": "geo_blocked"}})
    );
}

#[tokio::test]
async fn data_only_body_is_plain_json_in_the_problem_format() {
    let addr = serve(
        app().layer(
            ErrorLayer::builder()
                .format(ErrorFormat::ProblemJson)
                .build()
                .unwrap(),
        ),
    )
    .await;
    let response = get_url(addr, "/geo").await;
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        json_body(response).await,
        json!({"error": {"code": "geo_blocked"}})
    );
}

#[tokio::test]
async fn handler_sees_the_data_only_body() {
    let layer = ErrorLayer::builder()
        .default_handler(|_request, ctx: ErrorContext| async move {
            text(
                ctx.status(),
                format!("{}|{}", ctx.detail(), ctx.body().unwrap()),
            )
        })
        .build()
        .unwrap();
    let addr = serve(app().layer(layer)).await;
    let response = get_url(addr, "/geo").await;
    assert_eq!(
        response.text().await.unwrap(),
        r#"blocked in region|{"error":{"code":"geo_blocked"}}"#
    );
}

/// A custom middleware that refuses requests without an API key, rendering its error the way
/// the error layer would.
fn keyed_app(layer: ErrorLayer) -> Router {
    app().layer(middleware::from_fn(move |request: Request, next: Next| {
        let layer = layer.clone();
        async move {
            if request.headers().contains_key("x-api-key") {
                return next.run(request).await;
            }
            let (parts, _body) = request.into_parts();
            let err = HttpError::new(StatusCode::UNAUTHORIZED, "an API key is required");
            layer.error_response(&parts, err).await.map(Body::from)
        }
    }))
}

#[tokio::test]
async fn error_response_renders_in_the_layer_format() {
    let layer = ErrorLayer::builder()
        .format(ErrorFormat::ProblemJson)
        .build()
        .unwrap();
    let addr = serve(keyed_app(layer)).await;
    let response = get_url(addr, "/ok").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(
        json_body(response).await,
        json!({
            "type": "about:blank",
            "title": "Unauthorized",
            "status": 401,
            "detail": "an API key is required",
        })
    );
}

#[tokio::test]
async fn error_response_runs_the_matching_handler() {
    let layer = ErrorLayer::builder()
        .handler(
            PathMatcher::exact("/ok").unwrap(),
            |request: http::request::Parts, ctx: ErrorContext| async move {
                text(ctx.status(), format!("{} at {}", ctx.detail(), request.uri))
            },
        )
        .build()
        .unwrap();
    let addr = serve(keyed_app(layer)).await;
    let response = get_url(addr, "/ok").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.text().await.unwrap(),
        "an API key is required at /ok"
    );
}

#[tokio::test]
async fn error_response_leaves_a_skipped_status_unrendered() {
    let layer = ErrorLayer::builder()
        .skip_status(StatusCode::UNAUTHORIZED)
        .format(ErrorFormat::ProblemJson)
        .build()
        .unwrap();
    let addr = serve(keyed_app(layer)).await;
    let response = get_url(addr, "/ok").await;
    // The error's own conversion, not the layer's problem document.
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        json_body(response).await,
        json!({"detail": "an API key is required"})
    );
}

#[derive(Debug, thiserror::Error)]
#[error("backend is shedding load")]
struct Overloaded;

#[derive(Debug, thiserror::Error)]
#[error("backend at 10.0.0.7 refused")]
struct Refused;

/// An inner service that fails with `Overloaded` on `/busy` and `Refused` elsewhere, behind
/// an error layer that lets `Overloaded` through to axum's `HandleErrorLayer`.
async fn serve_skipping() -> SocketAddr {
    let inner = tower::service_fn(|request: Request| async move {
        if request.uri().path() == "/busy" {
            Err::<Response, BoxError>(Box::new(Overloaded))
        } else {
            Err(Box::new(Refused) as BoxError)
        }
    });
    let service = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|err: BoxError| async move {
            (StatusCode::SERVICE_UNAVAILABLE, format!("outer: {err}")).into_response()
        }))
        .map_response(|response: http::Response<_>| response.map(Body::new))
        .layer(
            ErrorLayer::builder()
                .skip_error::<Overloaded>()
                .build()
                .unwrap(),
        )
        .service(inner);
    serve(Router::new().fallback_service(service)).await
}

#[tokio::test]
async fn skipped_error_type_goes_to_the_outer_layer() {
    let addr = serve_skipping().await;
    let response = get_url(addr, "/busy").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.text().await.unwrap(),
        "outer: backend is shedding load"
    );
}

#[tokio::test]
async fn error_of_another_type_is_still_rendered_with_skip_error() {
    let addr = serve_skipping().await;
    let response = get_url(addr, "/other").await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        json_body(response).await,
        json!({"detail": "Internal Server Error"})
    );
}

#[tokio::test(flavor = "current_thread")]
async fn handlers_cost_successful_requests_no_copy_of_their_headers_or_extensions() {
    use tower::{Layer, Service, ServiceExt};

    let leaf = tower::service_fn(|_req: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(
            http::Response::new(http_body_util::Empty::<Bytes>::new()),
        )
    });
    let errors = ErrorLayer::builder()
        .handler(
            PathMatcher::prefix("/pages/").unwrap(),
            |_request, ctx| async move { text(ctx.status(), "page".to_owned()) },
        )
        .default_handler(|_request, ctx| async move { text(ctx.status(), "default".to_owned()) })
        .build()
        .unwrap();
    let mut service = errors.layer(leaf);
    let uri: http::Uri = "/pages/items?page=2".parse().unwrap();
    let request = || {
        let mut request = http::Request::new(());
        *request.uri_mut() = uri.clone();
        request
            .headers_mut()
            .insert("x-trace", "abc".parse().unwrap());
        request
            .headers_mut()
            .insert(header::ACCEPT, "text/html".parse().unwrap());
        request.extensions_mut().insert(Tenant("acme"));
        request
    };
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

    let mut requests: Vec<_> = (0..100).map(|_| request()).collect();
    let before = crate::counting::allocations();
    for request in requests.drain(..) {
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        drop(response);
    }
    let allocations = crate::counting::allocations() - before;
    assert_eq!(allocations, 0, "{allocations} allocations for 100 requests");
}
