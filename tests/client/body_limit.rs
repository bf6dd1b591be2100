//! The response body limit: whole-body readers stop at it, from `Content-Length` up front or
//! while the bytes arrive; a request can set its own.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body as AxumBody;
use bytes::Bytes;
use stopover::client::{Client, Error, ErrorKind};

use crate::fault_server::{Answer, FaultServer};

/// Fails the test instead of hanging when a reader waits for a body that never ends.
async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("the read stopped at the limit")
}

/// A server whose every answer is a chunked body of 8 KiB chunks that never ends.
async fn endless_body() -> SocketAddr {
    let app = Router::new().fallback(|| async {
        let chunks = futures_util::stream::repeat_with(|| {
            Ok::<_, std::io::Error>(Bytes::from(vec![b'a'; 8 * 1024]))
        });
        AxumBody::from_stream(chunks)
    });
    crate::support::serve(app).await
}

/// A server announcing `length` bytes, sending 5 of them, and then nothing more.
async fn announcing(length: u64) -> FaultServer {
    FaultServer::start(move |_, _| {
        Answer::new(200)
            .body("start")
            .announce_length(length)
            .reply()
    })
    .await
}

fn assert_too_large(err: &Error, limit: u64) {
    assert_eq!(err.kind(), ErrorKind::BodyTooLarge, "{err}");
    assert!(err.to_string().contains(&limit.to_string()), "{err}");
}

#[tokio::test]
async fn a_content_length_over_the_limit_fails_before_reading() {
    let server = announcing(10 * 1024 * 1024).await;
    let client = Client::builder().body_limit(1024).build().unwrap();
    let response = client.get(server.url("/")).send().await.unwrap();
    let err = bounded(response.bytes()).await.unwrap_err();
    assert_too_large(&err, 1024);
}

#[tokio::test]
async fn the_default_limit_is_64_mib() {
    let server = announcing(64 * 1024 * 1024 + 1).await;
    let response = Client::new().get(server.url("/")).send().await.unwrap();
    let err = bounded(response.bytes()).await.unwrap_err();
    assert_too_large(&err, 64 * 1024 * 1024);
}

#[tokio::test]
async fn every_whole_body_reader_stops_an_endless_body_at_the_limit() {
    let addr = endless_body().await;
    let url = format!("http://{addr}/");
    let client = Client::builder().body_limit(100_000).build().unwrap();
    let get = || client.get(&url).send();
    let errors = [
        bounded(async { get().await.unwrap().bytes().await.map(drop) }).await,
        bounded(async { get().await.unwrap().text().await.map(drop) }).await,
        bounded(async {
            get()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .map(drop)
        })
        .await,
        bounded(async { get().await.unwrap().buffer().await.map(drop) }).await,
    ];
    for result in errors {
        assert_too_large(&result.unwrap_err(), 100_000);
    }
}

#[tokio::test]
async fn a_request_limit_replaces_the_clients() {
    let body = vec![b'x'; 64 * 1024];
    let server = FaultServer::start(move |_, _| Answer::new(200).body(body.clone()).reply()).await;
    let client = Client::builder().body_limit(1024).build().unwrap();
    let raised = client.get(server.url("/")).body_limit(1024 * 1024).send();
    assert_eq!(
        raised.await.unwrap().bytes().await.unwrap().len(),
        64 * 1024
    );
    let lowered = Client::new().get(server.url("/")).body_limit(1000).send();
    assert_too_large(&lowered.await.unwrap().bytes().await.unwrap_err(), 1000);
}

#[tokio::test]
async fn a_body_at_the_limit_is_read() {
    let server = FaultServer::start(|_, _| Answer::new(200).body("0123456789").reply()).await;
    let client = Client::builder().body_limit(10).build().unwrap();
    let response = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "0123456789");
}
