use std::convert::Infallible;
use std::fmt;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};
use serde_json::{Map, Value};
use tower::ServiceExt;
use tower_layer::Layer;
use tower_service::Service;

use super::policy::error_chain;
use super::*;
use crate::server::http_error::{reason, render};

fn empty_status(status: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = status;
    response
}

#[tokio::test]
async fn head_error_has_no_body_but_keeps_the_document_length() {
    let leaf = tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(empty_status(StatusCode::NOT_FOUND))
    });
    let mut request = Request::new(());
    *request.method_mut() = Method::HEAD;
    let response = ErrorLayer::new()
        .layer(leaf)
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(response.headers()[header::CONTENT_LENGTH], "22");
    assert!(response.body().is_end_stream());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
}

#[tokio::test]
async fn handler_choosing_no_content_sends_no_body() {
    let leaf = tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(empty_status(StatusCode::GONE))
    });
    let layer = ErrorLayer::builder()
        .default_handler(|_request, _ctx| async {
            let mut response = Response::new(Bytes::from_static(b"ignored"));
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        })
        .build()
        .unwrap();
    let response = layer.layer(leaf).oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(!response.headers().contains_key(header::CONTENT_LENGTH));
    assert!(response.body().is_end_stream());
}

#[derive(Clone)]
struct NeverReady;

impl Service<Request<()>> for NeverReady {
    type Response = Response<Full<Bytes>>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Err(std::io::Error::other("backend pool closed")))
    }

    fn call(&mut self, _req: Request<()>) -> Self::Future {
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(
            b"unreachable",
        )))))
    }
}

#[tokio::test]
async fn poll_ready_error_becomes_500_on_the_next_call() {
    let service = ErrorLayer::builder()
        .expose_error_messages(true)
        .build()
        .unwrap()
        .layer(NeverReady);
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"detail":"backend pool closed"}"#);
}

#[test]
fn extra_data_cannot_override_the_detail() {
    let mut data = Map::new();
    data.insert("detail".into(), Value::from("spoofed"));
    data.insert("code".into(), Value::from(7));
    let body = render(
        ErrorFormat::Json,
        StatusCode::BAD_REQUEST,
        "real",
        None,
        Some(&data),
    );
    assert_eq!(&body[..], br#"{"detail":"real","code":7}"#);
}

#[test]
fn status_without_a_reason_phrase_gets_a_generic_one() {
    let status = StatusCode::from_u16(599).unwrap();
    assert_eq!(reason(status), "Server Error");
    assert_eq!(reason(StatusCode::from_u16(499).unwrap()), "Client Error");
}

#[test]
fn error_chain_joins_sources() {
    let inner = std::io::Error::other("refused");
    let outer = std::io::Error::other(WithSource(inner));
    assert_eq!(error_chain(&outer), "upstream failed: refused");
}

#[derive(Debug)]
struct WithSource(std::io::Error);

impl fmt::Display for WithSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("upstream failed")
    }
}

impl std::error::Error for WithSource {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
