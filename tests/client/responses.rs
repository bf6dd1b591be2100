//! Reading a response (bytes, text, JSON, stream) and the transport errors a caller branches on.

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use stopover::client::{Chain, Client, ErrorKind, Next, Request, Response, from_fn};

use crate::support::TestServer;

#[tokio::test]
async fn response_body_reads_as_bytes_text_json_and_stream() {
    let server = TestServer::start().await;
    let client = Client::new();
    let bytes = client
        .get(server.url("/"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(bytes, "ok");
    let err = client
        .get(server.url("/"))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap_err();
    assert!(err.is_decode());
    use futures_util::StreamExt;
    let chunks: Vec<Bytes> = client
        .get(server.url("/"))
        .send()
        .await
        .unwrap()
        .bytes_stream()
        .map(|chunk| chunk.unwrap())
        .collect()
        .await;
    assert_eq!(chunks.concat(), b"ok");
}

#[tokio::test]
async fn error_for_status_names_status_and_url() {
    let server = TestServer::start().await;
    let err = Client::new()
        .get(server.url("/status/404"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap_err();
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(err.url().unwrap().path(), "/status/404");
}

#[tokio::test]
async fn connection_refused_is_a_connect_error_with_the_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Client::new()
        .get(format!("http://{addr}/gone"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert_eq!(err.url().unwrap().path(), "/gone");
}

#[tokio::test]
async fn bytes_stream_can_be_read_with_next_without_pinning() {
    use futures_util::StreamExt;
    let server = TestServer::start().await;
    let response = Client::new().get(server.url("/")).send().await.unwrap();
    let mut chunks = response.bytes_stream();
    let mut body = Vec::new();
    while let Some(chunk) = chunks.next().await {
        body.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(body, b"ok");
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_also_bounds_reading_the_body() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .attempt_timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let response = client.get(server.url("/stall")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let err = response.bytes().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.url().unwrap().path(), "/stall");
}

#[tokio::test]
async fn content_length_comes_from_the_response() {
    let server = TestServer::start().await;
    let client = Client::new();
    let known = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(known.content_length(), Some(2));
    let streamed = client.get(server.url("/stall")).send().await.unwrap();
    assert_eq!(streamed.content_length(), None);
}

/// A resolver that never answers, so that connecting runs out of the connect timeout.
struct SilentDns;

impl reqwest::dns::Resolve for SilentDns {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(futures_util::future::pending())
    }
}

#[tokio::test(start_paused = true)]
async fn connect_timeout_is_a_connect_error_that_is_also_a_timeout() {
    let client = Client::builder()
        .dns_resolver(Arc::new(SilentDns))
        .connect_timeout(std::time::Duration::from_secs(1))
        .build()
        .unwrap();
    let err = client
        .post("http://unanswered.test/upload")
        .body("never sent")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err:?}");
    assert!(err.is_connect());
    assert!(err.is_timeout());
    assert_eq!(err.url().unwrap().path(), "/upload");
}

#[tokio::test]
async fn text_drops_a_leading_byte_order_mark_and_refuses_invalid_utf8() {
    let server = TestServer::start().await;
    let answer_with = |body: &'static [u8]| {
        from_fn(move |req: Request, _next: Next| async move {
            Ok(Response::from_http(
                http::Response::new(body),
                req.url().clone(),
            ))
        })
    };
    let client = Client::new();
    let with_bom = client
        .get(server.url("/"))
        .middlewares(Chain::new().with(answer_with(b"\xEF\xBB\xBFhello")))
        .send()
        .await
        .unwrap();
    assert_eq!(with_bom.text().await.unwrap(), "hello");
    let latin1 = client
        .get(server.url("/"))
        .middlewares(Chain::new().with(answer_with(b"caf\xE9")))
        .send()
        .await
        .unwrap();
    assert!(latin1.text().await.unwrap_err().is_decode());
}

#[tokio::test]
async fn connection_closed_before_a_response_is_a_transport_error() {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 1024];
        let _ = socket.read(&mut request).await;
        // Closed without a byte of response.
    });
    let err = Client::new()
        .get(format!("http://{addr}/hang-up"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err:?}");
    assert!(!err.is_timeout() && !err.is_connect());
    assert_eq!(err.url().unwrap().path(), "/hang-up");
}
