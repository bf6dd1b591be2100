//! What a reqwest user expects of the client, against real loopback servers: the whole-call
//! `timeout` bounding the body, `head_timeout`, `read_timeout`, `https_only`,
//! `RequestBuilder::build` with `Client::execute`, `Error::is_request` / `is_body`, a parsed
//! `Url` as the base URL, and the tower path joining relative URIs to it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use stopover::client::ssrf::{Policy, Rule};
use stopover::client::{Client, ErrorKind, Next, RedirectPolicy, Request, from_fn};
use tower::ServiceExt;

use crate::fault_server::{FaultServer, Reply};
use crate::support::TestServer;

#[tokio::test(start_paused = true)]
async fn timeout_bounds_reading_the_body() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let response = client.get(server.url("/stall")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let err = response.bytes().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(
        err.is_timeout() && err.is_body() && !err.is_request(),
        "{err:?}"
    );
    assert_eq!(err.url().unwrap().path(), "/stall");
}

#[tokio::test(start_paused = true)]
async fn a_request_timeout_bounds_its_body_too() {
    let server = TestServer::start().await;
    let response = Client::new()
        .get(server.url("/stall"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = response.text().await.unwrap_err();
    assert!(err.is_timeout() && err.is_body(), "{err:?}");
    assert!(started.elapsed() <= Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn head_timeout_leaves_the_body_unbounded() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .head_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut response = client.get(server.url("/stall")).send().await.unwrap();
    assert_eq!(
        response.chunk().await.unwrap().as_deref(),
        Some(&b"part"[..])
    );
    tokio::select! {
        read = response.chunk() => panic!("the stalled body ended: {read:?}"),
        () = tokio::time::sleep(Duration::from_secs(60)) => {}
    }
}

#[tokio::test(start_paused = true)]
async fn head_timeout_bounds_the_wait_for_the_head() {
    let server = FaultServer::start(|_, _| Reply::Hang).await;
    let err = Client::new()
        .get(server.url("/hang"))
        .head_timeout(Duration::from_secs(1))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err:?}");
    assert!(err.is_request() && !err.is_body(), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn a_timeout_before_the_head_is_a_request_error() {
    let server = FaultServer::start(|_, _| Reply::Hang).await;
    let client = Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = client.get(server.url("/hang")).send().await.unwrap_err();
    assert!(
        err.is_timeout() && err.is_request() && !err.is_body(),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn read_timeout_fails_a_stalled_body_read() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .read_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let response = client.get(server.url("/stall")).send().await.unwrap();
    let err = response.bytes().await.unwrap_err();
    assert!(err.is_timeout() && err.is_body(), "{err:?}");
}

#[tokio::test]
async fn a_refused_connection_is_a_request_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Client::new()
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap_err();
    assert!(
        err.is_connect() && err.is_request() && !err.is_body(),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_connection_closed_before_the_head_is_a_request_error() {
    let server = FaultServer::start(|_, _| Reply::Close).await;
    let err = Client::new()
        .get(server.url("/close"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Transport, "{err:?}");
    assert!(err.is_request() && !err.is_body(), "{err:?}");
}

#[tokio::test]
async fn https_only_refuses_an_http_url_before_sending() {
    let server = TestServer::start().await;
    let client = Client::builder().https_only(true).build().unwrap();
    let err = client.get(server.url("/plain")).send().await.unwrap_err();
    assert!(err.is_builder(), "{err:?}");
    assert!(err.to_string().contains("https_only"), "{err}");
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn https_only_refuses_a_middleware_that_downgrades_the_url() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .https_only(true)
        .middleware(from_fn(|mut req: Request, next: Next| async move {
            let _ = req.url_mut().set_scheme("http");
            next.run(req).await
        }))
        .build()
        .unwrap();
    let url = format!("https://{}/downgraded", server.addr);
    let err = client.get(url).send().await.unwrap_err();
    assert!(err.is_builder(), "{err:?}");
    assert_eq!(err.url().unwrap().scheme(), "http");
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn built_request_is_sent_by_execute_with_the_default_headers() {
    let server = TestServer::start().await;
    let mut defaults = http::HeaderMap::new();
    defaults.insert("x-default", "d".parse().unwrap());
    let client = Client::builder().default_headers(defaults).build().unwrap();
    let mut request = client
        .post(server.url("/built"))
        .header("x-own", "o")
        .body("payload")
        .build()
        .unwrap();
    assert_eq!(request.url().path(), "/built");
    assert!(request.headers().get("x-default").is_none());
    request
        .headers_mut()
        .insert("x-added", "after build".parse().unwrap());
    let response = client.execute(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = &server.seen()[0];
    assert_eq!(seen.headers["x-default"], "d");
    assert_eq!(seen.headers["x-own"], "o");
    assert_eq!(seen.headers["x-added"], "after build");
    assert_eq!(&seen.body[..], b"payload");
}

#[tokio::test]
async fn a_built_request_keeps_its_call_settings() {
    let server = TestServer::start().await;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let client = Client::builder()
        .middleware(from_fn(move |req: Request, next: Next| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { next.run(req).await }
        }))
        .build()
        .unwrap();
    let to = server.url("/landing");
    let request = client
        .get(server.url(&format!("/redirect?status=302&to={to}")))
        .follow_redirects(false)
        .no_middleware()
        .build()
        .unwrap();
    let response = client.execute(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_hand_made_request_runs_the_clients_chain_and_follows_redirects() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .middleware(from_fn(|mut req: Request, next: Next| async move {
            req.headers_mut().insert("x-chain", "yes".parse().unwrap());
            next.run(req).await
        }))
        .build()
        .unwrap();
    let url = url::Url::parse(&server.url("/hops/1")).unwrap();
    let response = client
        .execute(Request::new(http::Method::GET, url))
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "done");
    assert_eq!(server.paths(), ["/hops/1", "/hops/0"]);
    assert!(
        server
            .seen()
            .iter()
            .all(|seen| seen.headers["x-chain"] == "yes")
    );
}

#[tokio::test]
async fn build_reports_the_input_error_the_builder_kept() {
    let err = Client::new().get("relative/path").build().unwrap_err();
    assert!(err.is_builder(), "{err:?}");
    assert!(err.to_string().contains("no base URL"), "{err}");
}

#[tokio::test]
async fn base_url_accepts_a_parsed_url() {
    let server = TestServer::start().await;
    let base = url::Url::parse(&server.url("/api/")).unwrap();
    let client = Client::builder().base_url(base).build().unwrap();
    client.get("items").send().await.unwrap();
    assert_eq!(server.paths(), ["/api/items"]);
}

#[test]
fn a_base_url_that_is_not_http_is_a_builder_error() {
    let base = url::Url::parse("ftp://files.example/").unwrap();
    let err = Client::builder().base_url(base).build().unwrap_err();
    assert!(err.is_builder(), "{err:?}");
    assert!(err.to_string().contains("ftp"), "{err}");
}

#[tokio::test]
async fn a_relative_uri_through_the_service_is_joined_to_the_base_url() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .base_url(server.url("/api/"))
        .build()
        .unwrap();
    let request = http::Request::get("/data?page=2")
        .body(String::new())
        .unwrap();
    let response = client.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    assert_eq!(server.seen()[0].uri.to_string(), "/data?page=2");
}

#[tokio::test]
async fn a_relative_uri_through_the_service_without_a_base_url_is_a_builder_error() {
    let request = http::Request::get("/data").body(String::new()).unwrap();
    let err = Client::new().oneshot(request).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Builder, "{err:?}");
}

#[tokio::test]
async fn resolve_sends_a_name_to_the_given_address() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .resolve("hooks.example.com", server.addr)
        .build()
        .unwrap();
    let url = format!("http://hooks.example.com:{}/hook", server.addr.port());
    client.get(url).send().await.unwrap();
    let seen = &server.seen()[0];
    assert_eq!(seen.uri.path(), "/hook");
    let host = format!("hooks.example.com:{}", server.addr.port());
    assert_eq!(seen.headers["host"], host.as_str());
}

#[tokio::test]
async fn resolve_uses_the_addrs_port_when_the_url_names_none() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .resolve("hooks.example.com", server.addr)
        .build()
        .unwrap();
    client
        .get("http://hooks.example.com/hook")
        .send()
        .await
        .unwrap();
    assert_eq!(server.paths(), ["/hook"]);
}

#[tokio::test]
async fn resolve_is_judged_by_the_ssrf_policy() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .resolve("hooks.example.com", server.addr)
        .ssrf_policy(Policy::default())
        .build()
        .unwrap();
    let url = format!("http://hooks.example.com:{}/hook", server.addr.port());
    let err = client.get(url).send().await.unwrap_err();
    assert!(err.is_refused(), "{err:?}");
    assert_eq!(err.refusal().unwrap().rule(), Rule::Ipv4Loopback);
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn resolve_to_an_address_the_policy_allows_connects() {
    let server = TestServer::start().await;
    let policy = Policy::builder().allow_addr(server.addr).build().unwrap();
    let client = Client::builder()
        .resolve("hooks.example.com", server.addr)
        .ssrf_policy(policy)
        .build()
        .unwrap();
    let url = format!("http://hooks.example.com:{}/hook", server.addr.port());
    client.get(url).send().await.unwrap();
    assert_eq!(server.paths(), ["/hook"]);
}

#[test]
fn resolve_refuses_an_ip_address_as_the_domain() {
    let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let err = Client::builder()
        .resolve("10.0.0.1", addr)
        .build()
        .unwrap_err();
    assert!(err.is_builder(), "{err:?}");
    assert!(err.to_string().contains("10.0.0.1"), "{err}");
}

#[test]
fn resolve_to_no_addresses_is_a_builder_error() {
    let err = Client::builder()
        .resolve_to_addrs("hooks.example.com", &[])
        .build()
        .unwrap_err();
    assert!(err.is_builder(), "{err:?}");
    assert!(err.to_string().contains("hooks.example.com"), "{err}");
}

#[test]
fn allow_addr_takes_an_ip_addr_for_every_port() {
    let policy = Policy::builder()
        .allow_addr(IpAddr::from([127, 0, 0, 1]))
        .build()
        .unwrap();
    for url in ["http://127.0.0.1:8080/", "http://127.0.0.1:22/"] {
        assert!(policy.check_url(&url.parse().unwrap()).is_ok(), "{url}");
    }
    assert!(
        policy
            .check_url(&"http://127.0.0.2/".parse().unwrap())
            .is_err()
    );
}

#[test]
fn allow_addr_takes_a_socket_addr_for_its_port_only() {
    let addr: SocketAddr = "[::1]:8443".parse().unwrap();
    let policy = Policy::builder().allow_addr(addr).build().unwrap();
    assert!(
        policy
            .check_url(&"https://[::1]:8443/".parse().unwrap())
            .is_ok()
    );
    assert!(
        policy
            .check_url(&"https://[::1]:22/".parse().unwrap())
            .is_err()
    );
}

#[tokio::test]
async fn redirect_policy_none_returns_the_redirect_itself() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .redirect(RedirectPolicy::none())
        .build()
        .unwrap();
    let response = client.get(server.url("/hops/2")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(server.paths(), ["/hops/2"]);
}

#[tokio::test]
async fn redirect_policy_none_yields_to_a_request_that_asks_to_follow() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .redirect(RedirectPolicy::none())
        .build()
        .unwrap();
    let response = client
        .get(server.url("/hops/2"))
        .follow_redirects(true)
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "done");
}

#[tokio::test]
async fn redirect_policy_limited_fails_one_redirect_past_its_limit() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .redirect(RedirectPolicy::limited(2))
        .build()
        .unwrap();
    assert!(client.get(server.url("/hops/2")).send().await.is_ok());
    let err = client.get(server.url("/hops/3")).send().await.unwrap_err();
    assert!(err.is_redirect(), "{err:?}");
    assert_eq!(err.redirect_history().unwrap().len(), 2);
}
