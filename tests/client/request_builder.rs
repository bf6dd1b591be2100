//! Building a request: URLs, headers, bodies, cloning, HTTP version, and the errors that name what was wrong.

use std::sync::{Arc, Mutex};

use http::Method;
use stopover::client::{Body, Client, ErrorKind, Next, Request, from_fn};

use crate::stream_body;
use crate::support::TestServer;

#[tokio::test]
async fn unparsable_url_is_a_builder_error_naming_it() {
    let err = Client::new().get("http://[::1").send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Builder);
    assert!(err.to_string().contains("http://[::1"), "{err}");
}

#[tokio::test]
async fn relative_url_without_base_url_is_a_builder_error_naming_it() {
    let err = Client::new()
        .get("/relative/path")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_builder());
    assert!(err.to_string().contains("/relative/path"), "{err}");
    assert!(err.to_string().contains("no base URL"), "{err}");
}

#[tokio::test]
async fn unsupported_scheme_is_a_builder_error_naming_it() {
    let err = Client::new()
        .get("file:///etc/passwd")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_builder());
    assert!(err.to_string().contains("\"file\""), "{err}");
}

#[tokio::test]
async fn invalid_header_value_is_a_builder_error_naming_the_header() {
    let err = Client::new()
        .get("http://127.0.0.1:9/")
        .header("x-bad", "line\nbreak")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_builder());
    assert!(err.to_string().contains("x-bad"), "{err}");
}

#[tokio::test]
async fn invalid_header_name_is_a_builder_error_naming_it() {
    let err = Client::new()
        .get("http://127.0.0.1:9/")
        .header("bad header", "v")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_builder());
    assert!(err.to_string().contains("bad header"), "{err}");
}

#[tokio::test]
async fn invalid_base_url_is_refused_at_build() {
    let err = Client::builder().base_url("not a url").build().unwrap_err();
    assert!(err.is_builder());
    assert!(err.to_string().contains("not a url"), "{err}");
}

#[tokio::test]
async fn request_headers_replace_defaults_of_the_same_name() {
    let server = TestServer::start().await;
    let mut defaults = http::HeaderMap::new();
    defaults.insert("x-default", "client".parse().unwrap());
    defaults.insert("x-other", "client".parse().unwrap());
    let client = Client::builder()
        .default_headers(defaults)
        .user_agent("tests/1")
        .build()
        .unwrap();
    client
        .get(server.url("/"))
        .header("x-default", "request")
        .send()
        .await
        .unwrap();
    let headers = &server.seen()[0].headers;
    let values: Vec<_> = headers.get_all("x-default").iter().collect();
    assert_eq!(values, ["request"]);
    assert_eq!(headers["x-other"], "client");
    assert_eq!(headers["user-agent"], "tests/1");
}

#[tokio::test]
async fn json_form_and_query_bodies_are_encoded() {
    let server = TestServer::start().await;
    let client = Client::new();
    client
        .post(server.url("/json"))
        .json(&serde_json::json!({"a": 1}))
        .send()
        .await
        .unwrap();
    client
        .post(server.url("/form?x=1"))
        .query(&[("y", "2 3")])
        .form(&[("k", "v&w")])
        .send()
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(seen[0].body, r#"{"a":1}"#);
    assert_eq!(seen[0].headers["content-type"], "application/json");
    assert_eq!(seen[1].uri.query(), Some("x=1&y=2+3"));
    assert_eq!(seen[1].body, "k=v%26w");
    assert_eq!(
        seen[1].headers["content-type"],
        "application/x-www-form-urlencoded"
    );
}

#[tokio::test]
async fn awaiting_the_request_builder_sends_it() {
    let server = TestServer::start().await;
    let response = Client::new().get(server.url("/")).await.unwrap();
    assert_eq!(response.text().await.unwrap(), "ok");
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn request_builder_try_clone_sends_the_same_request_twice() {
    let server = TestServer::start().await;
    let request = Client::new()
        .put(server.url("/again"))
        .header("x-copy", "1")
        .body("payload");
    let copy = request.try_clone().unwrap();
    request.send().await.unwrap();
    copy.send().await.unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    for hit in seen {
        assert_eq!(hit.method, Method::PUT);
        assert_eq!(hit.headers["x-copy"], "1");
        assert_eq!(hit.body, "payload");
    }
}

#[tokio::test]
async fn request_builder_with_a_stream_or_an_error_cannot_be_cloned() {
    let client = Client::new();
    let streaming = client
        .post("http://127.0.0.1:9/")
        .body(Body::wrap_stream(stream_body(&["a"])));
    assert!(streaming.try_clone().is_none());
    let broken = client.get("http://127.0.0.1:9/").header("bad header", "v");
    assert!(broken.try_clone().is_none());
}

#[tokio::test]
async fn version_sets_the_http_version_of_the_request() {
    let server = TestServer::start().await;
    let seen_by_middleware = Arc::new(Mutex::new(None));
    let record = Arc::clone(&seen_by_middleware);
    let client = Client::builder()
        .middleware(from_fn(move |req: Request, next: Next| {
            *record.lock().unwrap() = Some(req.version());
            next.run(req)
        }))
        .build()
        .unwrap();
    client
        .get(server.url("/"))
        .version(http::Version::HTTP_10)
        .send()
        .await
        .unwrap();
    client.get(server.url("/")).send().await.unwrap();
    let versions: Vec<_> = server.seen().iter().map(|seen| seen.version).collect();
    assert_eq!(versions, [http::Version::HTTP_10, http::Version::HTTP_11]);
    assert_eq!(
        *seen_by_middleware.lock().unwrap(),
        Some(http::Version::HTTP_11)
    );
}
