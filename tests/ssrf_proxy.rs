//! The SSRF guard ignores proxies from the environment.
//!
//! This is its own test binary because it sets process-wide environment variables: nothing else
//! runs in this process while they change.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use stopover::client::Client;
use stopover::client::ssrf::Policy;
use support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A "proxy" on loopback that counts connections and answers each with a 502.
async fn counting_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            // Read the request head, then answer.
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream
                .write_all(
                    b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
        }
    });
    (url, count)
}

#[tokio::test]
async fn proxies_from_the_environment_are_ignored_by_the_guard() {
    let server = TestServer::start().await;
    let (proxy, proxied) = counting_proxy().await;
    for name in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        // SAFETY: this binary holds this one test, and no other thread of it reads the
        // environment while it is written (clients read it when they are built, below).
        unsafe { std::env::set_var(name, &proxy) };
    }
    for name in ["NO_PROXY", "no_proxy"] {
        // SAFETY: as above.
        unsafe { std::env::remove_var(name) };
    }

    // Without the guard the environment is honoured: the request goes to the proxy.
    let unguarded = Client::builder().build().unwrap();
    let response = unguarded
        .get(server.url("/via-proxy"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    assert_eq!(proxied.load(Ordering::SeqCst), 1);

    // With the guard it is ignored: the request goes straight to the allowed server.
    let policy = Policy::builder().allow_addr(server.addr).build().unwrap();
    let guarded = Client::builder().ssrf_policy(policy).build().unwrap();
    let response = guarded.get(server.url("/direct")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(proxied.load(Ordering::SeqCst), 1);
    assert_eq!(server.paths(), ["/direct"]);
}
