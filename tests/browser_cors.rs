#![cfg(feature = "browser-tests")]
//! `CorsLayer` as a real browser sees it: headless Chromium, driven over WebDriver, runs
//! `fetch()` from a page on one loopback origin against an API on another, and each test
//! asserts what the page could read and what reached the server.
//!
//! Run with `cargo test --features browser-tests --test browser_cors`; it needs `chromium` and
//! `chromedriver` (Debian: `apt-get install chromium chromium-driver`) and fails, saying so,
//! without them.
//!
//! The page is `http://127.0.0.1:<A>/` and the API `http://127.0.0.1:<B>`: different ports
//! make different origins, but the same site, so the page's cookies go to the API and both
//! share one partition of the HTTP cache. A few tests answer by hand instead of with the
//! layer, to show that the browser really fails where the layer's choices say it would.

mod support;
#[path = "support/webdriver.rs"]
mod webdriver;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde_json::{Value, json};
use stopover::server::cors::{CorsConfigError, CorsLayer, CorsLayerBuilder};
use stopover::server::matcher::{PathMatcher, PathRules};
use stopover::server::{ErrorLayer, TimeoutLayer};

use support::serve;
use webdriver::browser;

/// A page origin: serves an empty HTML page at `/` for scripts to run in.
struct Page {
    addr: SocketAddr,
}

impl Page {
    async fn start() -> Page {
        let app = Router::new().route(
            "/",
            get(|| async {
                Html("<!doctype html><html><head><meta charset=\"utf-8\"><title>page</title></head><body></body></html>")
            }),
        );
        Page {
            addr: serve(app).await,
        }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// One request as it reached the API, before any layer answered it.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    origin: Option<String>,
    cookie: Option<String>,
}

/// The API origin: routes behind the layers, with a log of every request it received,
/// preflights included.
struct Api {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Api {
    /// The routes behind the recommended stack: CORS outside the error layer, the error layer
    /// outside the timeout layer.
    async fn start(cors: CorsLayer) -> Api {
        let timeout = TimeoutLayer::builder(Duration::from_secs(30))
            .path_timeout(
                PathMatcher::exact("/hang").unwrap(),
                Duration::from_millis(100),
            )
            .build()
            .unwrap();
        let app = routes().layer(timeout).layer(ErrorLayer::new()).layer(cors);
        Api::start_router(app).await
    }

    /// A hand-written server, for the tests that show what the browser does without the layer.
    async fn start_router(app: Router) -> Api {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let app = app.layer(middleware::from_fn(move |request: Request, next: Next| {
            let header = |name| {
                request
                    .headers()
                    .get(name)
                    .map(|v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
            };
            log.lock().unwrap().push(Seen {
                method: request.method().clone(),
                path: request.uri().path().to_owned(),
                origin: header(header::ORIGIN),
                cookie: header(header::COOKIE),
            });
            next.run(request)
        }));
        Api {
            addr: serve(app).await,
            seen,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The same API under the name `localhost`: another `Host` (and another origin) for the
    /// same socket.
    fn url_via_localhost(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.addr.port())
    }

    fn seen(&self, method: Method, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|seen| seen.method == method && seen.path == path)
            .cloned()
            .collect()
    }

    fn count(&self, method: Method, path: &str) -> usize {
        self.seen(method, path).len()
    }
}

fn routes() -> Router {
    let hits = Arc::new(AtomicUsize::new(0));
    Router::new()
        .route(
            "/data",
            get(|| async { ([("x-request-id", "42"), ("x-internal", "secret")], "data") }),
        )
        .route(
            "/item",
            get(|| async { "item" })
                .put(|| async { "stored" })
                .delete(|| async { "deleted" }),
        )
        .route(
            "/cookie",
            get(|headers: HeaderMap| async move {
                headers
                    .get(header::COOKIE)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default()
            }),
        )
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route("/hang", get(std::future::pending::<&'static str>))
        .route(
            "/cached",
            get(move || {
                let hit = hits.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    (
                        [(header::CACHE_CONTROL, "max-age=60")],
                        format!("hit {hit}"),
                    )
                }
            }),
        )
}

fn allowing(page: &Page) -> CorsLayerBuilder {
    CorsLayer::builder().allow_origin(page.origin())
}

/// `PUT /item` with a custom header: not a simple request, so the browser preflights it.
fn put_with(header_name: &str) -> Value {
    json!({ "method": "PUT", "headers": { header_name: "1" } })
}

// Simple requests: no preflight, the browser checks the response.

#[tokio::test]
async fn simple_get_from_a_listed_origin_is_readable() {
    let page = Page::start().await;
    let api = Api::start(allowing(&page).build().unwrap()).await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    let response = tab.fetch(&api.url("/item"), json!({})).await.readable();

    assert_eq!(response.status, 200);
    assert_eq!(response.response_type, "cors");
    assert_eq!(response.body, "item");
    assert_eq!(
        api.seen(Method::GET, "/item")[0].origin,
        Some(page.origin())
    );
}

#[tokio::test]
async fn simple_get_from_an_unlisted_origin_runs_the_handler_but_is_unreadable() {
    let page = Page::start().await;
    let api = Api::start(
        CorsLayer::builder()
            .allow_origin("http://127.0.0.1:1")
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    tab.fetch(&api.url("/item"), json!({}))
        .await
        .assert_blocked();

    // CORS hides the response; it does not stop the request.
    assert_eq!(api.count(Method::GET, "/item"), 1);
}

// Credentials.

#[tokio::test]
async fn credentialed_get_from_a_listed_origin_is_readable_and_sends_the_cookie() {
    let page = Page::start().await;
    let api = Api::start(allowing(&page).allow_credentials(true).build().unwrap()).await;
    let tab = browser().await;
    tab.open(&page.url()).await;
    // A cookie of the page's host; ports do not separate cookies, so it is the API's too.
    tab.run("document.cookie = 'session=s3cret; path=/'").await;

    let response = tab
        .fetch(&api.url("/cookie"), json!({ "credentials": "include" }))
        .await
        .readable();

    assert_eq!(response.status, 200);
    assert_eq!(response.body, "session=s3cret");
}

#[tokio::test]
async fn credentialed_get_without_allow_credentials_is_unreadable() {
    let page = Page::start().await;
    let api = Api::start(allowing(&page).build().unwrap()).await;
    let tab = browser().await;
    tab.open(&page.url()).await;
    tab.run("document.cookie = 'session=s3cret; path=/'").await;

    tab.fetch(&api.url("/cookie"), json!({ "credentials": "include" }))
        .await
        .assert_blocked();

    let seen = api.seen(Method::GET, "/cookie");
    assert_eq!(seen[0].cookie.as_deref(), Some("session=s3cret"));
}

#[test]
fn credentials_with_any_origin_are_refused_when_the_layer_is_built() {
    let built = CorsLayer::builder()
        .allow_any_origin()
        .allow_credentials(true)
        .build();

    assert!(
        matches!(built, Err(CorsConfigError::CredentialsWithAnyOrigin)),
        "{built:?}"
    );
}

/// What the builder refuses, by hand: `*` with credentials, which the browser rejects.
#[tokio::test]
async fn credentialed_get_answered_with_a_wildcard_origin_is_unreadable() {
    let page = Page::start().await;
    let api = Api::start_router(Router::new().route(
        "/item",
        get(|| async {
            (
                [
                    (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                    (header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"),
                ],
                "item",
            )
        }),
    ))
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    let readable_without_credentials = tab.fetch(&api.url("/item"), json!({})).await.readable();
    let with_credentials = tab
        .fetch(&api.url("/item"), json!({ "credentials": "include" }))
        .await;

    assert_eq!(readable_without_credentials.body, "item");
    with_credentials.assert_blocked();
}

/// The explicit opt-in echoes any origin with credentials, but never `null`.
#[tokio::test]
async fn credentialed_get_with_any_origin_echoed_is_readable_by_an_unlisted_page() {
    let page = Page::start().await;
    let api = Api::start(
        CorsLayer::builder()
            .allow_any_origin()
            .allow_credentials(true)
            .dangerously_allow_credentials_with_any_origin()
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    let response = tab
        .fetch(&api.url("/item"), json!({ "credentials": "include" }))
        .await
        .readable();

    assert_eq!(response.body, "item");
}

#[tokio::test]
async fn credentialed_get_with_any_origin_echoed_is_unreadable_from_a_null_origin() {
    let page = Page::start().await;
    let api = Api::start(
        CorsLayer::builder()
            .allow_any_origin()
            .allow_credentials(true)
            .dangerously_allow_credentials_with_any_origin()
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    tab.fetch_from_sandboxed_iframe(&api.url("/item"), json!({ "credentials": "include" }))
        .await
        .assert_blocked();

    assert_eq!(
        api.seen(Method::GET, "/item")[0].origin.as_deref(),
        Some("null")
    );
}

// Preflighted requests.

#[tokio::test]
async fn preflighted_put_with_a_listed_method_and_header_is_readable() {
    let page = Page::start().await;
    let api = Api::start(
        allowing(&page)
            .allow_methods([Method::PUT])
            .allow_headers(["x-stopover"])
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    let response = tab
        .fetch(&api.url("/item"), put_with("X-Stopover"))
        .await
        .readable();

    assert_eq!(response.status, 200);
    assert_eq!(response.body, "stored");
    assert_eq!(api.count(Method::OPTIONS, "/item"), 1);
    assert_eq!(api.count(Method::PUT, "/item"), 1);
}

#[tokio::test]
async fn preflighted_put_with_an_unlisted_header_is_refused_before_the_handler() {
    let page = Page::start().await;
    let api = Api::start(
        allowing(&page)
            .allow_methods([Method::PUT])
            .allow_headers(["x-stopover"])
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    tab.fetch(&api.url("/item"), put_with("X-Other"))
        .await
        .assert_blocked();

    assert_eq!(api.count(Method::OPTIONS, "/item"), 1);
    assert_eq!(api.count(Method::PUT, "/item"), 0);
}

#[tokio::test]
async fn preflighted_delete_with_an_unlisted_method_is_refused_before_the_handler() {
    let page = Page::start().await;
    let api = Api::start(
        allowing(&page)
            .allow_methods([Method::PUT])
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    tab.fetch(&api.url("/item"), json!({ "method": "DELETE" }))
        .await
        .assert_blocked();

    assert_eq!(api.count(Method::OPTIONS, "/item"), 1);
    assert_eq!(api.count(Method::DELETE, "/item"), 0);
}

#[tokio::test]
async fn credentialed_preflighted_put_from_a_listed_origin_is_readable() {
    let page = Page::start().await;
    let api = Api::start(
        allowing(&page)
            .allow_methods([Method::PUT])
            .allow_headers(["x-stopover"])
            .allow_credentials(true)
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    let response = tab
        .fetch(
            &api.url("/item"),
            json!({ "method": "PUT", "headers": { "X-Stopover": "1" }, "credentials": "include" }),
        )
        .await
        .readable();

    assert_eq!(response.body, "stored");
    assert_eq!(api.count(Method::OPTIONS, "/item"), 1);
}

/// A preflight asking for `Authorization` and a custom header is granted by
/// `allow_any_header`. The Fetch standard does not let `*` cover `Authorization`, so the layer
/// answers `*, authorization`; Chromium 156 still accepts a bare `*` there (checked: this test
/// passes with it too), so the explicit name is asserted at the header level in
/// `tests/server_cors.rs`, and this test checks that the grant works in the browser.
#[tokio::test]
async fn preflighted_get_with_authorization_is_readable_with_allow_any_header() {
    let page = Page::start().await;
    let api = Api::start(allowing(&page).allow_any_header().build().unwrap()).await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    let response = tab
        .fetch(
            &api.url("/item"),
            json!({ "headers": { "Authorization": "Bearer t0ken", "X-Stopover": "1" } }),
        )
        .await
        .readable();

    assert_eq!(response.body, "item");
    assert_eq!(api.count(Method::OPTIONS, "/item"), 1);
}

#[tokio::test]
async fn preflighted_put_from_an_unlisted_origin_is_refused_before_the_handler() {
    let page = Page::start().await;
    let api = Api::start(
        CorsLayer::builder()
            .allow_origin("http://127.0.0.1:1")
            .allow_methods([Method::PUT])
            .allow_headers(["x-stopover"])
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    tab.fetch(&api.url("/item"), put_with("X-Stopover"))
        .await
        .assert_blocked();

    assert_eq!(api.count(Method::OPTIONS, "/item"), 1);
    assert_eq!(api.count(Method::PUT, "/item"), 0);
}

/// With credentials `*` is a literal name, so mirroring is the way to allow any header,
/// `Authorization` included.
#[tokio::test]
async fn credentialed_preflight_with_mirrored_headers_allows_authorization() {
    let page = Page::start().await;
    let api = Api::start(
        allowing(&page)
            .mirror_request_headers()
            .allow_credentials(true)
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    let response = tab
        .fetch(
            &api.url("/item"),
            json!({
                "headers": { "Authorization": "Bearer t0ken", "X-Stopover": "1" },
                "credentials": "include",
            }),
        )
        .await
        .readable();

    assert_eq!(response.body, "item");
    assert_eq!(api.count(Method::OPTIONS, "/item"), 1);
}

// Exposed headers.

#[tokio::test]
async fn exposed_header_is_readable_by_the_page() {
    let page = Page::start().await;
    let api = Api::start(
        allowing(&page)
            .expose_headers(["x-request-id"])
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    let response = tab.fetch(&api.url("/data"), json!({})).await.readable();

    assert_eq!(
        response.headers.get("x-request-id").map(String::as_str),
        Some("42")
    );
}

#[tokio::test]
async fn unexposed_header_is_hidden_from_the_page() {
    let page = Page::start().await;
    let api = Api::start(
        allowing(&page)
            .expose_headers(["x-request-id"])
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    let response = tab.fetch(&api.url("/data"), json!({})).await.readable();

    assert_eq!(response.body, "data");
    assert_eq!(response.headers.get("x-internal"), None);
}

/// With credentials `Access-Control-Expose-Headers: *` would expose a header named `*`, so
/// `expose_any_header` lists the response's own header names instead.
#[tokio::test]
async fn any_header_exposed_with_credentials_is_readable_by_the_page() {
    let page = Page::start().await;
    let api = Api::start(
        allowing(&page)
            .expose_any_header()
            .allow_credentials(true)
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    let response = tab
        .fetch(&api.url("/data"), json!({ "credentials": "include" }))
        .await
        .readable();

    assert_eq!(
        response.headers.get("x-request-id").map(String::as_str),
        Some("42")
    );
    assert_eq!(
        response.headers.get("x-internal").map(String::as_str),
        Some("secret")
    );
}

// Error responses made inside the CORS layer.

#[tokio::test]
async fn error_layer_500_is_readable_by_the_page() {
    let page = Page::start().await;
    let api = Api::start(allowing(&page).build().unwrap()).await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    let response = tab.fetch(&api.url("/fail"), json!({})).await.readable();

    assert_eq!(response.status, 500);
    assert_eq!(
        response.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let body: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(body, json!({ "detail": "Internal Server Error" }));
}

#[tokio::test]
async fn timeout_layer_504_is_readable_by_the_page() {
    let page = Page::start().await;
    let api = Api::start(allowing(&page).build().unwrap()).await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    let response = tab.fetch(&api.url("/hang"), json!({})).await.readable();

    assert_eq!(response.status, 504);
    let body: Value = serde_json::from_str(&response.body).unwrap();
    assert_eq!(body, json!({ "detail": "Request timed out" }));
}

// The opaque `null` origin of a sandboxed iframe.

#[tokio::test]
async fn null_origin_of_a_sandboxed_iframe_is_refused_when_not_listed() {
    let page = Page::start().await;
    let api = Api::start(allowing(&page).build().unwrap()).await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    tab.fetch_from_sandboxed_iframe(&api.url("/item"), json!({}))
        .await
        .assert_blocked();

    let seen = api.seen(Method::GET, "/item");
    assert_eq!(seen[0].origin.as_deref(), Some("null"));
}

#[tokio::test]
async fn null_origin_of_a_sandboxed_iframe_is_readable_when_listed() {
    let page = Page::start().await;
    let api = Api::start(CorsLayer::builder().allow_origin("null").build().unwrap()).await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    let response = tab
        .fetch_from_sandboxed_iframe(&api.url("/item"), json!({}))
        .await
        .readable();

    assert_eq!(response.body, "item");
}

// Caches: the browser's HTTP cache and its preflight cache.

#[tokio::test]
async fn cached_response_is_not_reused_for_another_origin_thanks_to_vary_origin() {
    let (page_a, page_b) = (Page::start().await, Page::start().await);
    let api = Api::start(
        CorsLayer::builder()
            .allow_origins([page_a.origin(), page_b.origin()])
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;

    tab.open(&page_a.url()).await;
    let first = tab.fetch(&api.url("/cached"), json!({})).await.readable();
    let again = tab.fetch(&api.url("/cached"), json!({})).await.readable();
    tab.open(&page_b.url()).await;
    let other = tab.fetch(&api.url("/cached"), json!({})).await.readable();

    assert_eq!(first.body, "hit 1");
    assert_eq!(
        again.body, "hit 1",
        "the second fetch from A is served from the cache"
    );
    assert_eq!(other.body, "hit 2", "B's fetch went to the server");
    assert_eq!(api.count(Method::GET, "/cached"), 2);
}

/// The same exchange with a hand-written server that echoes the origin but sends no `Vary`.
#[tokio::test]
async fn without_vary_origin_the_browser_reuses_a_cached_response_for_another_origin() {
    let (page_a, page_b) = (Page::start().await, Page::start().await);
    let allowed = [page_a.origin(), page_b.origin()];
    let api = Api::start_router(Router::new().route(
        "/cached",
        get(move |headers: HeaderMap| async move {
            let mut response = "hit".into_response();
            let origin = headers.get(header::ORIGIN).cloned();
            if let Some(origin) =
                origin.filter(|o| allowed.iter().any(|a| a.as_bytes() == o.as_bytes()))
            {
                response
                    .headers_mut()
                    .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            }
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=60"),
            );
            response
        }),
    ))
    .await;
    let tab = browser().await;

    tab.open(&page_a.url()).await;
    tab.fetch(&api.url("/cached"), json!({})).await.readable();
    tab.open(&page_b.url()).await;
    let other = tab.fetch(&api.url("/cached"), json!({})).await;

    other.assert_blocked();
    assert_eq!(api.count(Method::GET, "/cached"), 1);
}

#[tokio::test]
async fn preflight_is_cached_for_max_age() {
    let page = Page::start().await;
    let api = Api::start(
        allowing(&page)
            .allow_methods([Method::PUT])
            .allow_headers(["x-stopover"])
            .max_age(Duration::from_secs(600))
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    for _ in 0..2 {
        tab.fetch(&api.url("/item"), put_with("X-Stopover"))
            .await
            .readable();
    }

    assert_eq!(api.count(Method::PUT, "/item"), 2);
    assert_eq!(api.count(Method::OPTIONS, "/item"), 1);
}

/// Without a max age Chromium keeps a preflight for 5 seconds; `0` turns that off, so this
/// shows the count above comes from the header.
#[tokio::test]
async fn preflight_with_max_age_zero_is_sent_before_every_request() {
    let page = Page::start().await;
    let api = Api::start(
        allowing(&page)
            .allow_methods([Method::PUT])
            .allow_headers(["x-stopover"])
            .max_age(Duration::ZERO)
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    for _ in 0..2 {
        tab.fetch(&api.url("/item"), put_with("X-Stopover"))
            .await
            .readable();
    }

    assert_eq!(api.count(Method::PUT, "/item"), 2);
    assert_eq!(api.count(Method::OPTIONS, "/item"), 2);
}

// Origin predicates over the request, async predicates, and policies chosen by path.

#[tokio::test]
async fn parts_predicate_deciding_by_host_is_readable_under_one_host_only() {
    let page = Page::start().await;
    let page_origin = page.origin();
    let api = Api::start(
        CorsLayer::builder()
            .allow_origin_predicate_with_parts(move |origin, parts| {
                let host = parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok());
                origin == page_origin && host.is_some_and(|h| h.starts_with("127.0.0.1:"))
            })
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    let response = tab.fetch(&api.url("/item"), json!({})).await.readable();
    assert_eq!(response.body, "item");
    tab.fetch(&api.url_via_localhost("/item"), json!({}))
        .await
        .assert_blocked();

    // Both requests ran: the predicate only hid the second response.
    assert_eq!(api.count(Method::GET, "/item"), 2);
}

#[tokio::test]
async fn parts_predicate_deciding_by_path_grants_the_preflight_of_one_path_only() {
    let page = Page::start().await;
    let page_origin = page.origin();
    let api = Api::start(
        CorsLayer::builder()
            .allow_origin_predicate_with_parts(move |origin, parts| {
                origin == page_origin && parts.uri.path() == "/item"
            })
            .allow_methods([Method::PUT])
            .allow_headers(["x-stopover"])
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    let response = tab
        .fetch(&api.url("/item"), put_with("X-Stopover"))
        .await
        .readable();
    assert_eq!(response.body, "stored");
    tab.fetch(&api.url("/data"), put_with("X-Stopover"))
        .await
        .assert_blocked();
    assert_eq!(api.count(Method::OPTIONS, "/data"), 1);
    assert_eq!(api.count(Method::PUT, "/data"), 0);
}

/// An async predicate that asks a store of allowed origins, after a pause.
fn asking_store(allowed: Vec<String>) -> CorsLayerBuilder {
    let store = Arc::new(tokio::sync::RwLock::new(allowed));
    CorsLayer::builder()
        .allow_origin_async_predicate(move |origin, _| {
            let store = store.clone();
            let origin = origin.to_owned();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                store.read().await.contains(&origin)
            }
        })
        .allow_methods([Method::PUT])
        .allow_headers(["x-stopover"])
}

#[tokio::test]
async fn async_predicate_grants_a_preflighted_put_and_its_response() {
    let page = Page::start().await;
    let api = Api::start(asking_store(vec![page.origin()]).build().unwrap()).await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    let response = tab
        .fetch(&api.url("/item"), put_with("X-Stopover"))
        .await
        .readable();

    assert_eq!(response.status, 200);
    assert_eq!(response.body, "stored");
    assert_eq!(api.count(Method::OPTIONS, "/item"), 1);
    assert_eq!(api.count(Method::PUT, "/item"), 1);
}

#[tokio::test]
async fn async_predicate_refusal_blocks_the_preflighted_put_before_the_handler() {
    let page = Page::start().await;
    let api = Api::start(
        asking_store(vec!["http://127.0.0.1:1".to_owned()])
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    tab.fetch(&api.url("/item"), put_with("X-Stopover"))
        .await
        .assert_blocked();

    assert_eq!(api.count(Method::OPTIONS, "/item"), 1);
    assert_eq!(api.count(Method::PUT, "/item"), 0);
}

#[tokio::test]
async fn two_policies_by_path_each_grant_only_their_own_origin() {
    let page = Page::start().await;
    let rules = |path: &str| PathRules::new().with(PathMatcher::exact(path).unwrap());
    let api = Api::start(
        CorsLayer::by_path()
            .policy(
                allowing(&page)
                    .urls(rules("/item"))
                    .allow_methods([Method::PUT])
                    .allow_headers(["x-stopover"]),
            )
            .policy(
                CorsLayer::builder()
                    .urls(rules("/data"))
                    .allow_origin("http://127.0.0.1:1"),
            )
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    let put = tab
        .fetch(&api.url("/item"), put_with("X-Stopover"))
        .await
        .readable();
    assert_eq!(put.body, "stored");
    tab.fetch(&api.url("/data"), json!({}))
        .await
        .assert_blocked();
    // The second policy hid the response; the handler still ran.
    assert_eq!(api.count(Method::GET, "/data"), 1);
}

#[tokio::test]
async fn a_path_no_policy_covers_gets_no_grant_and_its_preflight_reaches_the_router() {
    let page = Page::start().await;
    let api = Api::start(
        CorsLayer::by_path()
            .policy(
                allowing(&page).urls(PathRules::new().with(PathMatcher::exact("/data").unwrap())),
            )
            .build()
            .unwrap(),
    )
    .await;
    let tab = browser().await;
    tab.open(&page.url()).await;

    tab.fetch(&api.url("/data"), json!({})).await.readable();
    tab.fetch(&api.url("/item"), put_with("X-Stopover"))
        .await
        .assert_blocked();

    // Uncovered, the preflight went past the layer to the router (which has no OPTIONS
    // route), and the browser never sent the PUT.
    assert_eq!(api.count(Method::OPTIONS, "/item"), 1);
    assert_eq!(api.count(Method::PUT, "/item"), 0);
}
