//! Connection pool, TCP and HTTP version settings against real loopback servers: what the
//! server sees (connections accepted, the peer address, the protocol, HTTP/2 frames) and the
//! options on the client's own sockets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Version;
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use stopover::client::{Client, ErrorKind, Next, Request, from_fn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support;

/// A hyper server on 127.0.0.1 speaking HTTP/1.1 and HTTP/2 over cleartext (h2c with prior
/// knowledge), answering with the request's HTTP version; it records every connection's peer.
#[derive(Clone)]
struct Plain {
    addr: SocketAddr,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    versions: Arc<Mutex<Vec<Version>>>,
    /// Connections that ended (the client closed them, or the server gave up).
    closed: Arc<AtomicUsize>,
}

impl Plain {
    async fn start() -> Plain {
        Plain::start_with(false).await
    }

    async fn start_with(http1_only: bool) -> Plain {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Plain {
            addr: listener.local_addr().unwrap(),
            peers: Arc::default(),
            versions: Arc::default(),
            closed: Arc::default(),
        };
        let state = server.clone();
        tokio::spawn(async move {
            while let Ok((tcp, peer)) = listener.accept().await {
                state.peers.lock().unwrap().push(peer);
                let versions = Arc::clone(&state.versions);
                let closed = Arc::clone(&state.closed);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: http::Request<_>| {
                        versions.lock().unwrap().push(request.version());
                        let answer = format!("{:?}", request.version());
                        async move {
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(answer),
                            )))
                        }
                    });
                    let mut builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    if http1_only {
                        builder = builder.http1_only();
                    }
                    let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        server
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn connections(&self) -> usize {
        self.peers.lock().unwrap().len()
    }

    fn peers(&self) -> Vec<SocketAddr> {
        self.peers.lock().unwrap().clone()
    }

    /// Waits until `count` connections have ended, polling (bounded: a hang fails the test).
    async fn closed(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.closed.load(Ordering::SeqCst) < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{count} connection(s) never closed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn get_twice(client: &Client, url: &str) {
    for _ in 0..2 {
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap();
    }
}

#[tokio::test]
async fn the_pool_reuses_a_connection_by_default() {
    let server = Plain::start().await;
    let client = Client::new();

    get_twice(&client, &server.url()).await;

    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn pool_max_idle_per_host_zero_opens_a_connection_per_request() {
    let server = Plain::start().await;
    let client = Client::builder().pool_max_idle_per_host(0).build().unwrap();

    get_twice(&client, &server.url()).await;

    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn pool_idle_timeout_closes_a_connection_left_idle_longer() {
    let server = Plain::start().await;
    let client = Client::builder()
        .pool_idle_timeout(Duration::from_millis(20))
        .build()
        .unwrap();

    client
        .get(server.url())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // The pool closes the connection once it has been idle longer than the timeout.
    server.closed(1).await;
    client
        .get(server.url())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();

    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn local_address_is_the_address_the_server_sees() {
    let server = Plain::start().await;
    // All of 127.0.0.0/8 is loopback on Linux; elsewhere only 127.0.0.1 may be configured.
    let local = if cfg!(target_os = "linux") {
        Ipv4Addr::new(127, 0, 0, 2)
    } else {
        Ipv4Addr::LOCALHOST
    };
    let client = Client::builder()
        .local_address(IpAddr::V4(local))
        .build()
        .unwrap();

    client.get(server.url()).send().await.unwrap();

    assert_eq!(server.peers()[0].ip(), IpAddr::V4(local));
}

#[tokio::test]
async fn requests_over_cleartext_are_http11_by_default() {
    let server = Plain::start().await;
    let client = Client::new();

    let response = client.get(server.url()).send().await.unwrap();

    assert_eq!(response.version(), Version::HTTP_11);
}

#[tokio::test]
async fn http2_prior_knowledge_speaks_http2_over_cleartext() {
    let server = Plain::start().await;
    let client = Client::builder().http2_prior_knowledge().build().unwrap();

    let response = client.get(server.url()).send().await.unwrap();

    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.text().await.unwrap(), "HTTP/2.0");
}

#[tokio::test]
async fn transport_settings_leave_redirects_to_the_chain() {
    let server = support::TestServer::start().await;
    let hops = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&hops);
    let client = Client::builder()
        .pool_idle_timeout(Duration::from_secs(5))
        .pool_max_idle_per_host(0)
        .tcp_keepalive(Duration::from_secs(30))
        .tcp_nodelay(false)
        .local_address(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .http1_only()
        .middleware(from_fn(move |request: Request, next: Next| {
            seen.lock().unwrap().push(request.hop());
            next.run(request)
        }))
        .build()
        .unwrap();

    let response = client.get(server.url("/hops/2")).send().await.unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(*hops.lock().unwrap(), vec![0, 1, 2]);
    assert_eq!(response.history().len(), 2);
}

#[test]
fn http1_only_and_http2_prior_knowledge_conflict_by_name() {
    let err = Client::builder()
        .http1_only()
        .http2_prior_knowledge()
        .build()
        .unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Builder);
    assert_eq!(
        err.conflicting_settings(),
        Some(["http1_only", "http2_prior_knowledge"])
    );
}

#[tokio::test]
async fn http1_only_speaks_http11_to_a_server_that_has_both() {
    let server = Plain::start().await;
    let client = Client::builder().http1_only().build().unwrap();

    let response = client.get(server.url()).send().await.unwrap();

    assert_eq!(response.version(), Version::HTTP_11);
}

#[tokio::test]
async fn http2_prior_knowledge_fails_against_an_http1_only_server() {
    let server = Plain::start_with(true).await;
    let client = Client::builder().http2_prior_knowledge().build().unwrap();

    let err = client.get(server.url()).send().await.unwrap_err();

    assert!(
        matches!(err.kind(), ErrorKind::Transport | ErrorKind::Connect),
        "{err:?}"
    );
}

/// A relay in front of `target` that counts the HTTP/2 `PING` frames (not acknowledgements)
/// the client sends.
async fn ping_counter(target: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pings = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&pings);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(target).await.unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                const PREFACE: usize = 24;
                let mut pending = Vec::new();
                let mut preface_seen = false;
                let mut chunk = [0u8; 4096];
                loop {
                    let n = match client_read.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if server_write.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    pending.extend_from_slice(&chunk[..n]);
                    if !preface_seen {
                        if pending.len() < PREFACE {
                            continue;
                        }
                        pending.drain(..PREFACE);
                        preface_seen = true;
                    }
                    // Frame header: 24-bit length, type, flags, stream id.
                    while pending.len() >= 9 {
                        let length = usize::from(pending[0]) << 16
                            | usize::from(pending[1]) << 8
                            | usize::from(pending[2]);
                        if pending.len() < 9 + length {
                            break;
                        }
                        let (kind, flags) = (pending[3], pending[4]);
                        if kind == 0x6 && flags & 0x1 == 0 {
                            counter.fetch_add(1, Ordering::SeqCst);
                        }
                        pending.drain(..9 + length);
                    }
                }
            });
        }
    });
    (addr, pings)
}

/// The HTTP/2 pings the client sends on an idle connection within `window`; polls, so it
/// returns as soon as the first one is seen.
async fn pings_sent(client: Client, window: Duration) -> usize {
    let server = Plain::start().await;
    let (relay, pings) = ping_counter(server.addr).await;
    client
        .get(format!("http://{relay}/"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + window;
    while pings.load(Ordering::SeqCst) == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pings.load(Ordering::SeqCst)
}

#[tokio::test]
async fn http2_keep_alive_interval_sends_pings_on_an_idle_connection() {
    let client = Client::builder()
        .http2_prior_knowledge()
        .http2_keep_alive_interval(Duration::from_millis(50))
        .http2_keep_alive_timeout(Duration::from_secs(5))
        .http2_keep_alive_while_idle(true)
        .build()
        .unwrap();

    assert!(pings_sent(client, Duration::from_secs(10)).await >= 1);
}

#[tokio::test]
async fn no_http2_pings_are_sent_by_default() {
    let client = Client::builder().http2_prior_knowledge().build().unwrap();

    // Eight intervals of the test above: pings would have been seen by then.
    assert_eq!(pings_sent(client, Duration::from_millis(400)).await, 0);
}

/// Reads the options of the client's socket connected from `local`: the test's own process
/// holds it, so it is found among the process's file descriptors.
#[cfg(target_os = "linux")]
mod sockets {
    use std::net::SocketAddr;
    use std::os::fd::BorrowedFd;
    use std::time::Duration;

    use socket2::SockRef;

    pub struct Options {
        pub nodelay: bool,
        pub keepalive: bool,
        pub keepalive_idle: Duration,
    }

    pub fn of(local: SocketAddr) -> Options {
        for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
            let Ok(fd) = entry.unwrap().file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            // SAFETY: the descriptor belongs to this process and stays open while the client
            // keeps its pooled connection; it is only borrowed to read options, never closed.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let socket = SockRef::from(&fd);
            let Ok(addr) = socket.local_addr() else {
                continue;
            };
            if addr.as_socket() == Some(local) {
                return Options {
                    nodelay: socket.tcp_nodelay().unwrap(),
                    keepalive: socket.keepalive().unwrap(),
                    keepalive_idle: socket.tcp_keepalive_time().unwrap(),
                };
            }
        }
        panic!("no socket of this process is bound to {local}");
    }
}

#[cfg(target_os = "linux")]
async fn client_socket(client: Client) -> sockets::Options {
    let server = Plain::start().await;
    client
        .get(server.url())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let options = sockets::of(server.peers()[0]);
    drop(client);
    options
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn tcp_nodelay_is_on_by_default() {
    assert!(client_socket(Client::new()).await.nodelay);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn tcp_nodelay_false_leaves_it_off() {
    let client = Client::builder().tcp_nodelay(false).build().unwrap();

    assert!(!client_socket(client).await.nodelay);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn tcp_keepalive_sets_the_idle_time_before_probes() {
    let client = Client::builder()
        .tcp_keepalive(Duration::from_secs(42))
        .build()
        .unwrap();

    let socket = client_socket(client).await;

    assert!(socket.keepalive);
    assert_eq!(socket.keepalive_idle, Duration::from_secs(42));
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn tcp_keepalive_is_on_by_default_after_15_seconds() {
    let socket = client_socket(Client::new()).await;

    assert!(socket.keepalive);
    assert_eq!(socket.keepalive_idle, Duration::from_secs(15));
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn tcp_keepalive_none_leaves_it_off() {
    let client = Client::builder()
        .tcp_keepalive(None)
        .tcp_keepalive_interval(None)
        .tcp_keepalive_retries(None)
        .build()
        .unwrap();

    assert!(!client_socket(client).await.keepalive);
}

/// Resolves every name to 127.0.0.1.
struct ToLoopback;

impl stopover::reqwest::dns::Resolve for ToLoopback {
    fn resolve(&self, _: stopover::reqwest::dns::Name) -> stopover::reqwest::dns::Resolving {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Box::pin(
            async move { Ok(Box::new(std::iter::once(addr)) as stopover::reqwest::dns::Addrs) },
        )
    }
}

/// A client with every pool, TCP and HTTP setting changed from its default, and the default
/// SSRF policy (which refuses loopback).
fn guarded_with_every_setting() -> stopover::client::ClientBuilder {
    let builder = Client::builder()
        .ssrf_policy(stopover::client::ssrf::Policy::default())
        .pool_idle_timeout(None)
        .pool_max_idle_per_host(1)
        .tcp_keepalive(Duration::from_secs(30))
        .tcp_keepalive_interval(Duration::from_secs(5))
        .tcp_keepalive_retries(2)
        .tcp_nodelay(false)
        .local_address(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .http2_prior_knowledge()
        .http2_keep_alive_interval(Duration::from_secs(1))
        .http2_keep_alive_timeout(Duration::from_secs(1))
        .http2_keep_alive_while_idle(true);
    #[cfg(any(feature = "rustls", feature = "rustls-ring", feature = "native-tls"))]
    let builder = builder.tls_danger_accept_invalid_certs(true).tls_sni(false);
    builder
}

#[tokio::test]
async fn transport_settings_keep_the_ssrf_guard_on_the_url() {
    let server = Plain::start().await;
    let client = guarded_with_every_setting().build().unwrap();

    let err = client.get(server.url()).send().await.unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Refused, "{err:?}");
    assert_eq!(server.connections(), 0);
}

#[tokio::test]
async fn transport_settings_keep_the_guarded_resolver() {
    let server = Plain::start().await;
    let client = guarded_with_every_setting()
        .dns_resolver(Arc::new(ToLoopback))
        .build()
        .unwrap();

    let err = client
        .get(format!("http://internal.test:{}/", server.addr.port()))
        .send()
        .await
        .unwrap_err();

    assert_eq!(err.kind(), ErrorKind::Refused, "{err:?}");
    assert_eq!(server.connections(), 0);
}
