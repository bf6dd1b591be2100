//! A loopback test server that records what it saw and answers by path.
//!
//! - `/status/{code}`: that status, empty body
//! - `/redirect?status={code}&to={url}`: that status with `Location: {url}` (no `to`: no Location)
//! - `/hops/{n}`: 302 to `/hops/{n-1}` until `/hops/0`, which answers 200 `done`
//! - `/hops-with-body/{n}`: the same, each 302 with a 32 KiB body (longer than one read)
//! - `/loop`: 302 to itself
//! - `/stall`: 200 with the body `part`, then nothing more, never ending
//! - anything else: 200 `ok`
//!
//! Also the one way every test binary serves an app of its own on loopback: [`serve`],
//! [`serve_with_connect_info`] and [`serve_service`].

#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, Version, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

/// One request as the server received it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub version: Version,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A running server on 127.0.0.1; it stops when the test's runtime ends.
#[derive(Clone)]
pub struct TestServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(answer).with_state(Arc::clone(&seen));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        let listener = axum::serve::ListenerExt::tap_io(listener, move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        TestServer {
            addr,
            seen,
            connections,
        }
    }

    /// How many connections the server accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn paths(&self) -> Vec<String> {
        self.seen()
            .iter()
            .map(|seen| seen.uri.path().to_owned())
            .collect()
    }

    pub fn count(&self, path: &str) -> usize {
        self.seen()
            .iter()
            .filter(|seen| seen.uri.path() == path)
            .count()
    }
}

async fn answer(
    State(seen): State<Arc<Mutex<Vec<Seen>>>>,
    method: Method,
    version: Version,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    seen.lock().unwrap().push(Seen {
        method,
        version,
        uri: uri.clone(),
        headers,
        body,
    });
    let path = uri.path();
    if let Some(code) = path.strip_prefix("/status/") {
        let status = StatusCode::from_u16(code.parse().unwrap()).unwrap();
        return status.into_response();
    }
    if path == "/redirect" {
        let query: Vec<(String, String)> =
            serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap();
        let get = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let status = StatusCode::from_u16(get("status").unwrap().parse().unwrap()).unwrap();
        return match get("to") {
            Some(to) => (status, [(header::LOCATION, to)]).into_response(),
            None => status.into_response(),
        };
    }
    if let Some(n) = path.strip_prefix("/hops/") {
        let n: u32 = n.parse().unwrap();
        if n == 0 {
            return "done".into_response();
        }
        return (
            StatusCode::FOUND,
            [(header::LOCATION, format!("/hops/{}", n - 1))],
        )
            .into_response();
    }
    if path == "/stall" {
        let first =
            futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from("part")) });
        let body = axum::body::Body::from_stream(first.chain(futures_util::stream::pending()));
        return body.into_response();
    }
    if let Some(n) = path.strip_prefix("/hops-with-body/") {
        let n: u32 = n.parse().unwrap();
        if n == 0 {
            return "done".into_response();
        }
        let next = format!("/hops-with-body/{}", n - 1);
        let body = "moved ".repeat(32 * 1024 / 6);
        return (StatusCode::FOUND, [(header::LOCATION, next)], body).into_response();
    }
    if path == "/loop" {
        return (StatusCode::FOUND, [(header::LOCATION, "/loop")]).into_response();
    }
    "ok".into_response()
}

/// Serves `app` on a free 127.0.0.1 port until the test's runtime ends.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// [`serve`], with axum's `ConnectInfo<SocketAddr>` (the peer address) on every request.
pub async fn serve_with_connect_info(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let make_service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, make_service).await.unwrap() });
    addr
}

/// Serves any tower service (a layer around a router, a `ServiceBuilder` stack) the way a bare
/// hyper server would: the outermost layer sees the response exactly as the inner ones made it.
/// Only the body is boxed into axum's, which `axum::serve` wants.
pub async fn serve_service<S, B>(service: S) -> SocketAddr
where
    S: tower::Service<axum::extract::Request, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let service = tower::ServiceExt::map_response(service, |response: http::Response<B>| {
        response.map(axum::body::Body::new)
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, tower::make::Shared::new(service))
            .await
            .unwrap()
    });
    addr
}
