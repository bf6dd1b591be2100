//! Response decompression against a loopback server that answers with a fixed encoded body
//! when the request's `Accept-Encoding` offers its coding, and plain text otherwise.
//!
//! The encoded bodies are fixed bytes, so the tests need no encoder: gzip (RFC 1952), zlib for
//! `deflate` (RFC 1950) and zstd (RFC 8878) made once with the reference tools, and brotli
//! (RFC 7932) built here as an uncompressed meta-block.

#![cfg(feature = "gzip")]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use stopover::client::{Client, ErrorKind, Next, Request, from_fn};

const TEXT: &str = "decoded: the quick brown fox jumps over the lazy dog";

/// `TEXT`, gzip-encoded.
const GZIP: [u8; 69] = [
    0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0x4b, 0x49, 0x4d, 0xce, 0x4f, 0x49,
    0x4d, 0xb1, 0x52, 0x28, 0xc9, 0x48, 0x55, 0x28, 0x2c, 0xcd, 0x4c, 0xce, 0x56, 0x48, 0x2a, 0xca,
    0x2f, 0xcf, 0x53, 0x48, 0xcb, 0xaf, 0x50, 0xc8, 0x2a, 0xcd, 0x2d, 0x28, 0x56, 0xc8, 0x2f, 0x4b,
    0x2d, 0x02, 0x4b, 0xe7, 0x24, 0x56, 0x55, 0x2a, 0xa4, 0xe4, 0xa7, 0x03, 0x00, 0x43, 0xa2, 0x80,
    0x54, 0x34, 0x00, 0x00, 0x00,
];

/// `TEXT` in the zlib format, which is what HTTP's `deflate` means.
#[cfg(feature = "deflate")]
const DEFLATE: [u8; 57] = [
    0x78, 0x9c, 0x4b, 0x49, 0x4d, 0xce, 0x4f, 0x49, 0x4d, 0xb1, 0x52, 0x28, 0xc9, 0x48, 0x55, 0x28,
    0x2c, 0xcd, 0x4c, 0xce, 0x56, 0x48, 0x2a, 0xca, 0x2f, 0xcf, 0x53, 0x48, 0xcb, 0xaf, 0x50, 0xc8,
    0x2a, 0xcd, 0x2d, 0x28, 0x56, 0xc8, 0x2f, 0x4b, 0x2d, 0x02, 0x4b, 0xe7, 0x24, 0x56, 0x55, 0x2a,
    0xa4, 0xe4, 0xa7, 0x03, 0x00, 0xf9, 0x3e, 0x13, 0x1c,
];

/// `TEXT` as a zstd frame (one raw block, as `zstd -19` writes text this short).
#[cfg(feature = "zstd")]
const ZSTD: [u8; 61] = [
    0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x68, 0xa1, 0x01, 0x00, 0x64, 0x65, 0x63, 0x6f, 0x64, 0x65, 0x64,
    0x3a, 0x20, 0x74, 0x68, 0x65, 0x20, 0x71, 0x75, 0x69, 0x63, 0x6b, 0x20, 0x62, 0x72, 0x6f, 0x77,
    0x6e, 0x20, 0x66, 0x6f, 0x78, 0x20, 0x6a, 0x75, 0x6d, 0x70, 0x73, 0x20, 0x6f, 0x76, 0x65, 0x72,
    0x20, 0x74, 0x68, 0x65, 0x20, 0x6c, 0x61, 0x7a, 0x79, 0x20, 0x64, 0x6f, 0x67,
];

/// 100 000 bytes of `a`, gzip-encoded into 133: a body far larger decoded than on the wire.
/// Between the deflate stream's first 17 bytes and its last 2, all 96 bytes are zero.
fn gzip_bomb() -> Vec<u8> {
    let mut bytes = vec![
        0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x03, 0xed, 0xc1, 0x31, 0x01, 0x00,
        0x00, 0x00, 0xc2, 0xa0, 0xac, 0xeb, 0x5f, 0xc2, 0x1a, 0x1e, 0x40, 0x01,
    ];
    bytes.resize(bytes.len() + 96, 0);
    // The end of the deflate stream, then the CRC-32 and the length (100 000) of the data.
    bytes.extend_from_slice(&[0xaf, 0x06, 0x87, 0xfa, 0xe2, 0x1b, 0xa0, 0x86, 0x01, 0x00]);
    bytes
}

/// `data` as a brotli stream of one uncompressed meta-block (RFC 7932, section 9.2), for at
/// most 65 536 bytes: WBITS `0` (16), ISLAST `0`, MNIBBLES `00` (4 nibbles), MLEN - 1 in
/// 16 bits, ISUNCOMPRESSED `1`, padding to the byte, the bytes themselves; then an empty last
/// meta-block (ISLAST `1`, ISLASTEMPTY `1`).
#[cfg(feature = "brotli")]
fn brotli(data: &[u8]) -> Vec<u8> {
    let header = ((data.len() as u32 - 1) << 4) | (1 << 20);
    let mut stream = header.to_le_bytes()[..3].to_vec();
    stream.extend_from_slice(data);
    stream.push(0b11);
    stream
}

fn encoded(coding: &str) -> Option<Vec<u8>> {
    match coding {
        "gzip" => Some(GZIP.to_vec()),
        "bomb" => Some(gzip_bomb()),
        #[cfg(feature = "deflate")]
        "deflate" => Some(DEFLATE.to_vec()),
        #[cfg(feature = "zstd")]
        "zstd" => Some(ZSTD.to_vec()),
        #[cfg(feature = "brotli")]
        "br" => Some(brotli(TEXT.as_bytes())),
        _ => None,
    }
}

/// Whether an `Accept-Encoding` value lists `coding`.
fn offers(accept_encoding: &str, coding: &str) -> bool {
    accept_encoding
        .split(',')
        .any(|token| token.trim() == coding)
}

#[derive(Clone, Default)]
struct Seen {
    accept_encoding: Arc<Mutex<Vec<Option<String>>>>,
}

/// `/{coding}`: the encoded body with `Content-Encoding: {coding}` when `Accept-Encoding`
/// offers it, else `plain`. `/always/{coding}` sends the encoded body whatever was offered.
struct Server {
    base: String,
    seen: Seen,
}

impl Server {
    async fn start() -> Server {
        async fn answer(
            State(seen): State<Seen>,
            Path(coding): Path<String>,
            headers: HeaderMap,
        ) -> axum::response::Response {
            let offered = headers
                .get(header::ACCEPT_ENCODING)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            seen.accept_encoding.lock().unwrap().push(offered.clone());
            let wire = if coding == "bomb" { "gzip" } else { &coding };
            let accepted = offered
                .as_deref()
                .is_some_and(|offered| offers(offered, wire));
            respond(wire, &coding, accepted)
        }
        async fn always(Path(coding): Path<String>) -> axum::response::Response {
            respond(&coding, &coding, true)
        }
        fn respond(wire: &str, coding: &str, accepted: bool) -> axum::response::Response {
            match (accepted, encoded(coding)) {
                (true, Some(body)) => (
                    [(
                        header::CONTENT_ENCODING,
                        HeaderValue::from_str(wire).unwrap(),
                    )],
                    body,
                )
                    .into_response(),
                _ => "plain".into_response(),
            }
        }
        let seen = Seen::default();
        let app = Router::new()
            .route("/{coding}", axum::routing::get(answer))
            .route("/always/{coding}", axum::routing::get(always))
            .with_state(seen.clone());
        let base = format!("http://{}", support::serve(app).await);
        Server { base, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn accept_encoding(&self) -> Vec<Option<String>> {
        self.seen.accept_encoding.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn accept_encoding_offers_gzip_by_default() {
    let server = Server::start().await;

    Client::new().get(server.url("/gzip")).send().await.unwrap();

    let offered = server.accept_encoding()[0].clone().unwrap();
    assert!(offers(&offered, "gzip"), "{offered}");
}

#[tokio::test]
async fn a_gzip_response_decodes() {
    let server = Server::start().await;

    let response = Client::new().get(server.url("/gzip")).send().await.unwrap();

    assert_eq!(response.headers().get(header::CONTENT_ENCODING), None);
    assert_eq!(response.text().await.unwrap(), TEXT);
}

#[tokio::test]
async fn a_middleware_sees_the_decoded_body() {
    let server = Server::start().await;
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&bodies);
    let client = Client::builder()
        .middleware(from_fn(move |request: Request, next: Next| {
            let seen = Arc::clone(&seen);
            async move {
                let mut response = next.run(request).await?;
                let body = response.buffer().await?;
                seen.lock().unwrap().push(body);
                Ok(response)
            }
        }))
        .build()
        .unwrap();

    let text = client
        .get(server.url("/gzip"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert_eq!(bodies.lock().unwrap()[0], TEXT.as_bytes());
    assert_eq!(text, TEXT);
}

#[tokio::test]
async fn the_body_limit_counts_decoded_bytes() {
    let server = Server::start().await;
    let client = Client::builder().body_limit(10_000).build().unwrap();

    let response = client.get(server.url("/bomb")).send().await.unwrap();
    let err = response.bytes().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::BodyTooLarge, "{err:?}");
}

#[tokio::test]
async fn gzip_off_neither_offers_nor_decodes_it() {
    let server = Server::start().await;
    let client = Client::builder().gzip(false).build().unwrap();

    client.get(server.url("/gzip")).send().await.unwrap();
    let response = client.get(server.url("/always/gzip")).send().await.unwrap();

    assert!(
        server.accept_encoding()[0]
            .as_deref()
            .is_none_or(|offered| !offered.contains("gzip"))
    );
    assert_eq!(
        response.headers().get(header::CONTENT_ENCODING).unwrap(),
        "gzip"
    );
    assert_eq!(response.bytes().await.unwrap(), GZIP.as_slice());
}

#[tokio::test]
async fn an_accept_encoding_set_on_the_request_is_sent_as_it_is() {
    let server = Server::start().await;

    let response = Client::new()
        .get(server.url("/gzip"))
        .header(header::ACCEPT_ENCODING, "identity")
        .send()
        .await
        .unwrap();

    assert_eq!(server.accept_encoding()[0].as_deref(), Some("identity"));
    assert_eq!(response.text().await.unwrap(), "plain");
}

#[tokio::test]
async fn request_bodies_are_sent_as_given() {
    let server = support::TestServer::start().await;

    Client::new()
        .post(server.url("/echo"))
        .body(TEXT)
        .send()
        .await
        .unwrap();

    let seen = &server.seen()[0];
    assert_eq!(seen.body, TEXT.as_bytes());
    assert_eq!(seen.headers.get(header::CONTENT_ENCODING), None);
}

#[cfg(feature = "brotli")]
#[tokio::test]
async fn a_brotli_response_decodes() {
    let server = Server::start().await;

    let response = Client::new().get(server.url("/br")).send().await.unwrap();

    let offered = server.accept_encoding()[0].clone().unwrap();
    assert!(offers(&offered, "br"), "{offered}");
    assert_eq!(response.text().await.unwrap(), TEXT);
}

#[cfg(feature = "zstd")]
#[tokio::test]
async fn a_zstd_response_decodes() {
    let server = Server::start().await;

    let response = Client::new().get(server.url("/zstd")).send().await.unwrap();

    let offered = server.accept_encoding()[0].clone().unwrap();
    assert!(offers(&offered, "zstd"), "{offered}");
    assert_eq!(response.text().await.unwrap(), TEXT);
}

#[cfg(feature = "deflate")]
#[tokio::test]
async fn a_deflate_response_decodes() {
    let server = Server::start().await;

    let response = Client::new()
        .get(server.url("/deflate"))
        .send()
        .await
        .unwrap();

    let offered = server.accept_encoding()[0].clone().unwrap();
    assert!(offers(&offered, "deflate"), "{offered}");
    assert_eq!(response.text().await.unwrap(), TEXT);
}

mod support;
