//! `Client` as a `tower::Service<http::Request<B>>`, and the conversions between the `http`
//! crate's types and the client's, against a real loopback server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::BodyExt;
use stopover::client::ssrf::{Policy, Rule};
use stopover::client::{Client, ErrorKind, Request, Response, from_fn};
use tower::ServiceExt;

use crate::support::TestServer;

#[tokio::test]
async fn oneshot_runs_through_the_middleware_chain() {
    let server = TestServer::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let client = Client::builder()
        .middleware(from_fn(move |mut request, next| {
            seen.fetch_add(1, Ordering::SeqCst);
            request
                .headers_mut()
                .insert("x-chain", "yes".parse().unwrap());
            async move { next.run(request).await }
        }))
        .build()
        .unwrap();
    let request = http::Request::post(server.url("/echo"))
        .header("x-own", "kept")
        .body("payload")
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, http::Method::POST);
    assert_eq!(seen[0].headers["x-chain"], "yes");
    assert_eq!(seen[0].headers["x-own"], "kept");
    assert_eq!(&seen[0].body[..], b"payload");
}

#[tokio::test]
async fn oneshot_follows_redirects() {
    let server = TestServer::start().await;
    let request = http::Request::get(server.url("/hops/2"))
        .body(String::new())
        .unwrap();
    let response = Client::new().oneshot(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"done");
    assert_eq!(server.paths(), ["/hops/2", "/hops/1", "/hops/0"]);
}

#[tokio::test]
async fn oneshot_is_refused_by_the_ssrf_policy() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .ssrf_policy(Policy::default())
        .build()
        .unwrap();
    let request = http::Request::get(server.url("/")).body("");
    let err = client.oneshot(request.unwrap()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused);
    assert_eq!(
        err.refusal().map(|refusal| refusal.rule()),
        Some(Rule::Ipv4Loopback)
    );
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn a_relative_uri_is_a_builder_error() {
    let request = http::Request::get("/only/a/path").body("").unwrap();
    let err = Client::new().oneshot(request).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Builder);
    assert!(err.to_string().contains("/only/a/path"), "{err}");
}

#[tokio::test]
async fn into_http_keeps_status_headers_and_streams_the_body() {
    let server = TestServer::start().await;
    let response = Client::new().get(server.url("/status/201")).await.unwrap();
    let http = response.into_http();
    assert_eq!(http.status(), http::StatusCode::CREATED);
    assert!(http.headers().contains_key(http::header::DATE));
    let body = http.into_body().collect().await.unwrap().to_bytes();
    assert!(body.is_empty());
}

#[test]
fn http_request_converts_both_ways() {
    let request = http::Request::put("http://example.test/a?b=c")
        .header("x-one", "1")
        .extension(7u8)
        .body("body")
        .unwrap();
    let request = Request::try_from(request).unwrap();
    assert_eq!(request.method(), http::Method::PUT);
    assert_eq!(request.url().as_str(), "http://example.test/a?b=c");
    assert_eq!(request.headers()["x-one"], "1");
    assert_eq!(request.extensions().get::<u8>(), Some(&7));
    assert_eq!(request.body().as_bytes(), Some(&b"body"[..]));
    let back = http::Request::<stopover::client::Body>::try_from(request).unwrap();
    assert_eq!(back.uri(), "http://example.test/a?b=c");
    assert_eq!(back.headers()["x-one"], "1");
    assert_eq!(back.body().as_bytes(), Some(&b"body"[..]));
}

#[test]
fn a_relative_http_request_does_not_convert() {
    let request = http::Request::get("/relative").body("").unwrap();
    let err = Request::try_from(request).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Builder);
}

#[tokio::test]
async fn response_converts_into_http() {
    let response = Response::from_http(
        http::Response::builder()
            .status(404)
            .header("x-from", "middleware")
            .body("missing")
            .unwrap(),
        "http://example.test/".parse().unwrap(),
    );
    let http: http::Response<stopover::client::HttpBody> = response.into();
    assert_eq!(http.status(), http::StatusCode::NOT_FOUND);
    assert_eq!(http.headers()["x-from"], "middleware");
    let body = http.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"missing");
}
