//! `CorsLayer` inside an axum router, over real loopback connections.
//!
//! Tests are named after the items of the conformance checklist in the CORS research notes
//! (section 2, items 1 to 50), plus `urls` scoping and the error-response orderings.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use stopover::server::cors::{CorsConfigError, CorsLayer, CorsLayerBuilder};
use stopover::server::matcher::{PathMatcher, PathRule, PathRules};

use crate::counting;

const APP: &str = "https://app.example";
const EVIL: &str = "https://evil.example";

struct Server {
    base: String,
    calls: Arc<AtomicUsize>,
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    /// The value of a header that must appear at most once.
    fn one(&self, name: &str) -> Option<&str> {
        let values: Vec<_> = self.headers.get_all(name).iter().collect();
        assert!(values.len() <= 1, "{name} sent {} times", values.len());
        values.first().map(|v| v.to_str().unwrap())
    }

    fn vary(&self) -> Vec<String> {
        self.headers
            .get_all(header::VARY)
            .iter()
            .flat_map(|v| v.to_str().unwrap().split(','))
            .map(|v| v.trim().to_ascii_lowercase())
            .collect()
    }

    fn has_any_cors_header(&self) -> bool {
        self.headers
            .keys()
            .any(|name| name.as_str().starts_with("access-control-"))
    }
}

fn app(calls: Arc<AtomicUsize>) -> Router {
    let counted = move || {
        let calls = calls.clone();
        move || {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                "handler"
            }
        }
    };
    Router::new()
        .route("/r", any(counted()))
        .route(
            "/options",
            any(counted()).options(|| async { (StatusCode::OK, "options handler") }),
        )
        .route(
            "/vary",
            get(|| async { ([(header::VARY, "Accept-Encoding")], "varied") }),
        )
        .route(
            "/vary-star",
            get(|| async { ([(header::VARY, "*")], "varied") }),
        )
        .route(
            "/own-cors",
            get(|| async {
                (
                    [
                        (header::ACCESS_CONTROL_ALLOW_ORIGIN, "https://other.example"),
                        (header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"),
                    ],
                    "own",
                )
            }),
        )
        .route(
            "/expose",
            get(|| async {
                (
                    [
                        ("x-request-id", "1"),
                        ("x-trace", "2"),
                        ("set-cookie", "a=b"),
                    ],
                    "exposed",
                )
            }),
        )
        .route("/status/{code}", any(status))
        .route("/panic", get(|| async { panic!("boom") as &'static str }))
        .route(
            "/cookie",
            any(|| async { ([(header::SET_COOKIE, "session=1")], "cookie") }),
        )
}

async fn status(Path(code): Path<u16>) -> Response {
    let status = StatusCode::from_u16(code).unwrap();
    let mut response = (status, format!("status {code}")).into_response();
    if status.is_redirection() {
        response
            .headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/r"));
    }
    response
}

async fn serve(cors: CorsLayer) -> Server {
    let calls = Arc::new(AtomicUsize::new(0));
    let addr = crate::support::serve(app(calls.clone()).layer(cors)).await;
    Server {
        base: format!("http://{addr}"),
        calls,
    }
}

impl Server {
    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn preflight(&self, path: &str, origin: &str, method: &str) -> Reply {
        self.send(
            "OPTIONS",
            path,
            &[
                ("origin", origin),
                ("access-control-request-method", method),
            ],
        )
        .await
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn list() -> CorsLayerBuilder {
    CorsLayer::builder().allow_origin(APP)
}

// A. Classifying requests

#[tokio::test]
async fn item_01_options_with_origin_and_request_method_is_answered_by_the_layer() {
    let server = serve(list().build().unwrap()).await;
    let reply = server.preflight("/options", APP, "GET").await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
    assert_eq!(server.calls(), 0);
    assert_eq!(reply.body, "");
}

#[tokio::test]
async fn item_02_options_without_request_method_reaches_the_handler() {
    let server = serve(list().build().unwrap()).await;
    let reply = server.send("OPTIONS", "/options", &[("origin", APP)]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "options handler");
    // It is an actual request from an allowed origin.
    assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
}

#[tokio::test]
async fn item_02_options_without_origin_reaches_the_handler() {
    let server = serve(list().build().unwrap()).await;
    let reply = server
        .send(
            "OPTIONS",
            "/options",
            &[("access-control-request-method", "PUT")],
        )
        .await;
    assert_eq!(reply.body, "options handler");
    assert!(!reply.has_any_cors_header());
}

#[tokio::test]
async fn item_03_request_without_origin_passes_with_vary_origin() {
    let server = serve(list().build().unwrap()).await;
    let reply = server.send("GET", "/r", &[]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(server.calls(), 1);
    assert!(!reply.has_any_cors_header());
    assert_eq!(reply.vary(), ["origin"]);
}

#[tokio::test]
async fn item_03_request_without_origin_gets_the_static_star() {
    let server = serve(CorsLayer::builder().allow_any_origin().build().unwrap()).await;
    let reply = server.send("GET", "/r", &[]).await;
    assert_eq!(reply.one("access-control-allow-origin"), Some("*"));
    assert!(reply.vary().is_empty());
}

#[tokio::test]
async fn item_04_same_origin_request_is_never_rejected() {
    let server = serve(list().build().unwrap()).await;
    let own = server.base.clone();
    let reply = server.send("POST", "/r", &[("origin", &own)]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "handler");
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn item_05_request_method_that_is_not_a_token_refuses_the_preflight() {
    let server = serve(list().build().unwrap()).await;
    let reply = server.preflight("/r", APP, "BAD METHOD").await;
    assert_eq!(reply.status, 403);
    assert!(!reply.has_any_cors_header());
    assert_eq!(server.calls(), 0);
}

// B. Access-Control-Allow-Origin

#[tokio::test]
async fn item_06_any_origin_sends_star_on_preflight_and_actual_responses() {
    let server = serve(CorsLayer::builder().allow_any_origin().build().unwrap()).await;
    let preflight = server.preflight("/r", EVIL, "GET").await;
    assert_eq!(preflight.one("access-control-allow-origin"), Some("*"));
    let actual = server.send("GET", "/r", &[("origin", EVIL)]).await;
    assert_eq!(actual.one("access-control-allow-origin"), Some("*"));
    assert!(!actual.vary().contains(&"origin".to_owned()));
}

#[tokio::test]
async fn item_07_allowed_origin_is_echoed_in_exactly_one_line() {
    let server = serve(
        list()
            .allow_origin("https://second.example")
            .build()
            .unwrap(),
    )
    .await;
    let reply = server
        .send("GET", "/r", &[("origin", "https://second.example")])
        .await;
    assert_eq!(
        reply.one("access-control-allow-origin"),
        Some("https://second.example")
    );
}

#[tokio::test]
async fn item_08_disallowed_origin_gets_no_allow_origin() {
    let server = serve(list().build().unwrap()).await;
    let actual = server.send("GET", "/r", &[("origin", EVIL)]).await;
    assert_eq!(actual.one("access-control-allow-origin"), None);
    let preflight = server.preflight("/r", EVIL, "GET").await;
    assert_eq!(preflight.one("access-control-allow-origin"), None);
}

#[tokio::test]
async fn item_09_allow_origin_is_never_a_list() {
    // The handler sets its own value; the layer's single value replaces it.
    let server = serve(list().build().unwrap()).await;
    let reply = server.send("GET", "/own-cors", &[("origin", APP)]).await;
    assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
}

#[tokio::test]
async fn item_10_configured_origins_are_normalised_in_case_and_default_port() {
    let server = serve(
        CorsLayer::builder()
            .allow_origin("HTTPS://App.Example:443")
            .build()
            .unwrap(),
    )
    .await;
    let reply = server.send("GET", "/r", &[("origin", APP)]).await;
    assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
    // Browsers never send a default port or upper case, so such a value is not this origin.
    let reply = server
        .send("GET", "/r", &[("origin", "https://app.example:443")])
        .await;
    assert_eq!(reply.one("access-control-allow-origin"), None);
}

#[test]
fn item_10_configured_origin_with_path_or_trailing_slash_is_an_error() {
    for bad in [
        "https://app.example/",
        "https://app.example/api",
        "app.example",
    ] {
        let err = CorsLayer::builder().allow_origin(bad).build().unwrap_err();
        assert!(
            matches!(&err, CorsConfigError::InvalidOrigin { origin, .. } if origin == bad),
            "{bad}: {err}"
        );
    }
}

#[tokio::test]
async fn item_11_null_origin_is_refused_unless_listed() {
    let server = serve(
        list()
            .allow_origin_regex(".*")
            .allow_origin_predicate(|_| true)
            .build()
            .unwrap(),
    )
    .await;
    let reply = server.send("GET", "/r", &[("origin", "null")]).await;
    assert_eq!(reply.one("access-control-allow-origin"), None);
}

#[tokio::test]
async fn item_11_null_origin_is_allowed_when_listed() {
    let server = serve(list().allow_origin("null").build().unwrap()).await;
    let reply = server.send("GET", "/r", &[("origin", "null")]).await;
    assert_eq!(reply.one("access-control-allow-origin"), Some("null"));
}

#[tokio::test]
async fn item_11_dangerous_mirror_does_not_echo_null() {
    let server = serve(
        CorsLayer::builder()
            .allow_any_origin()
            .allow_credentials(true)
            .dangerously_allow_credentials_with_any_origin()
            .build()
            .unwrap(),
    )
    .await;
    let reply = server.send("GET", "/r", &[("origin", "null")]).await;
    assert_eq!(reply.one("access-control-allow-origin"), None);
}

#[tokio::test]
async fn item_12_origin_regex_must_match_the_whole_origin() {
    let server = serve(
        CorsLayer::builder()
            .allow_origin_regex(r"https://app\.example")
            .build()
            .unwrap(),
    )
    .await;
    let reply = server
        .send("GET", "/r", &[("origin", "https://app.example.evil.test")])
        .await;
    assert_eq!(reply.one("access-control-allow-origin"), None);
    let reply = server
        .send("GET", "/r", &[("origin", "https://x.https://app.example")])
        .await;
    assert_eq!(reply.one("access-control-allow-origin"), None);
    let reply = server.send("GET", "/r", &[("origin", APP)]).await;
    assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
}

#[tokio::test]
async fn item_12_origin_predicate_decides() {
    let server = serve(
        CorsLayer::builder()
            .allow_origin_predicate(|origin| origin.ends_with(".corp.example"))
            .build()
            .unwrap(),
    )
    .await;
    let reply = server
        .send("GET", "/r", &[("origin", "https://wiki.corp.example")])
        .await;
    assert_eq!(
        reply.one("access-control-allow-origin"),
        Some("https://wiki.corp.example")
    );
    let reply = server
        .send("GET", "/r", &[("origin", "https://evilcorp.example")])
        .await;
    assert_eq!(reply.one("access-control-allow-origin"), None);
}

#[tokio::test]
async fn item_13_preflight_and_actual_response_both_carry_the_grant() {
    let server = serve(list().allow_credentials(true).build().unwrap()).await;
    for reply in [
        server.preflight("/r", APP, "POST").await,
        server.send("POST", "/r", &[("origin", APP)]).await,
    ] {
        assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
        assert_eq!(reply.one("access-control-allow-credentials"), Some("true"));
    }
}

// C. Preflight status and shape

#[tokio::test]
async fn item_14_allowed_preflight_is_204_without_body() {
    let server = serve(list().build().unwrap()).await;
    let reply = server.preflight("/r", APP, "GET").await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.body, "");
    assert!(reply.one("content-length").is_none_or(|len| len == "0"));
}

#[tokio::test]
async fn item_14_allowed_preflight_status_is_configurable() {
    let server = serve(list().preflight_status(StatusCode::OK).build().unwrap()).await;
    let reply = server.preflight("/r", APP, "GET").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "");
    assert_eq!(reply.one("content-length"), Some("0"));
}

#[tokio::test]
async fn item_15_preflight_carries_the_granting_headers() {
    let server = serve(
        list()
            .allow_methods([Method::PUT])
            .allow_headers(["x-custom"])
            .expose_headers(["x-request-id"])
            .allow_credentials(true)
            .max_age(Duration::from_secs(600))
            .build()
            .unwrap(),
    )
    .await;
    let reply = server
        .send(
            "OPTIONS",
            "/r",
            &[
                ("origin", APP),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "x-custom"),
            ],
        )
        .await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
    assert_eq!(reply.one("access-control-allow-credentials"), Some("true"));
    assert_eq!(reply.one("access-control-allow-methods"), Some("PUT"));
    assert_eq!(reply.one("access-control-allow-headers"), Some("x-custom"));
    assert_eq!(reply.one("access-control-max-age"), Some("600"));
    assert_eq!(reply.one("access-control-expose-headers"), None);
    assert!(reply.vary().contains(&"origin".to_owned()));
}

#[tokio::test]
async fn item_15_preflight_without_request_headers_gets_no_allow_headers() {
    let server = serve(list().allow_headers(["x-custom"]).build().unwrap()).await;
    let reply = server.preflight("/r", APP, "GET").await;
    assert_eq!(reply.one("access-control-allow-headers"), None);
}

#[tokio::test]
async fn item_16_preflight_is_answered_before_inner_authentication() {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = app(calls.clone())
        .layer(axum::middleware::from_fn(
            |_request: axum::extract::Request, _next: axum::middleware::Next| async {
                StatusCode::UNAUTHORIZED
            },
        ))
        .layer(list().build().unwrap());
    let server = Server {
        base: format!("http://{}", crate::support::serve(router).await),
        calls,
    };
    let reply = server.preflight("/r", APP, "GET").await;
    assert_eq!(reply.status, 204);
    let actual = server.send("GET", "/r", &[("origin", APP)]).await;
    assert_eq!(actual.status, 401);
    assert_eq!(actual.one("access-control-allow-origin"), Some(APP));
}

#[tokio::test]
async fn item_17_refused_preflight_is_403_without_cors_headers_but_with_vary() {
    let server = serve(list().build().unwrap()).await;
    let reply = server.preflight("/r", EVIL, "GET").await;
    assert_eq!(reply.status, 403);
    assert!(!reply.has_any_cors_header());
    assert!(reply.vary().contains(&"origin".to_owned()));
    assert_eq!(server.calls(), 0);
}

#[tokio::test]
async fn item_17_refused_preflight_status_is_configurable() {
    let server = serve(
        list()
            .denied_preflight_status(StatusCode::OK)
            .build()
            .unwrap(),
    )
    .await;
    let reply = server.preflight("/r", EVIL, "GET").await;
    assert_eq!(reply.status, 200);
    assert!(!reply.has_any_cors_header());
}

#[tokio::test]
async fn item_17_refusal_reason_is_not_sent_by_default() {
    let server = serve(list().build().unwrap()).await;
    let reply = server.preflight("/r", EVIL, "GET").await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.one("cors-refusal-reason"), None);
}

#[tokio::test]
async fn item_17_explained_refusal_names_the_origin() {
    let server = serve(list().explain_refusals(true).build().unwrap()).await;
    let reply = server.preflight("/r", EVIL, "GET").await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.one("cors-refusal-reason"),
        Some(r#"origin "https://evil.example" is not allowed"#)
    );
    assert!(!reply.has_any_cors_header());
}

#[tokio::test]
async fn item_17_explained_refusal_names_the_method() {
    let server = serve(
        list()
            .allow_methods([Method::PUT])
            .explain_refusals(true)
            .build()
            .unwrap(),
    )
    .await;
    let reply = server.preflight("/r", APP, "DELETE").await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.one("cors-refusal-reason"),
        Some(r#"method "DELETE" is not allowed"#)
    );
}

#[tokio::test]
async fn item_17_explained_refusal_names_the_request_header() {
    let server = serve(
        list()
            .allow_headers(["content-type"])
            .explain_refusals(true)
            .build()
            .unwrap(),
    )
    .await;
    let reply = server
        .send(
            "OPTIONS",
            "/r",
            &[
                ("origin", APP),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type,x-tenant"),
            ],
        )
        .await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.one("cors-refusal-reason"),
        Some(r#"request header "x-tenant" is not allowed"#)
    );
}

#[tokio::test]
async fn item_17_granted_preflight_carries_no_refusal_reason() {
    let server = serve(list().explain_refusals(true).build().unwrap()).await;
    let reply = server.preflight("/r", APP, "GET").await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.one("cors-refusal-reason"), None);
}

#[tokio::test]
async fn item_18_preflight_for_a_method_not_allowed_is_refused() {
    let server = serve(list().allow_methods([Method::PUT]).build().unwrap()).await;
    let reply = server.preflight("/r", APP, "DELETE").await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.one("access-control-allow-methods"), None);
}

// D. Methods

#[tokio::test]
async fn item_19_safelisted_method_needs_no_listing() {
    let server = serve(
        list()
            .allow_methods([Method::PUT])
            .allow_headers(["x-custom"])
            .build()
            .unwrap(),
    )
    .await;
    let reply = server
        .send(
            "OPTIONS",
            "/r",
            &[
                ("origin", APP),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "x-custom"),
            ],
        )
        .await;
    assert_eq!(reply.status, 204);
}

#[tokio::test]
async fn every_safelisted_method_is_granted_without_listing() {
    let server = serve(list().allow_methods([Method::PUT]).build().unwrap()).await;
    for method in ["GET", "HEAD", "POST"] {
        let reply = server.preflight("/r", APP, method).await;
        assert_eq!(reply.status, 204, "{method}");
        assert_eq!(
            reply.one("access-control-allow-origin"),
            Some(APP),
            "{method}"
        );
    }
}

#[tokio::test]
async fn item_20_methods_are_case_sensitive() {
    let server = serve(list().allow_methods([Method::PATCH]).build().unwrap()).await;
    let reply = server.preflight("/r", APP, "patch").await;
    assert_eq!(reply.status, 403);
    let reply = server.preflight("/r", APP, "PATCH").await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.one("access-control-allow-methods"), Some("PATCH"));
}

#[tokio::test]
async fn item_21_any_method_is_star_without_credentials() {
    let server = serve(list().allow_any_method().build().unwrap()).await;
    let reply = server.preflight("/r", APP, "PURGE").await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.one("access-control-allow-methods"), Some("*"));
}

#[test]
fn item_21_any_method_with_credentials_is_an_error() {
    let err = list()
        .allow_any_method()
        .allow_credentials(true)
        .build()
        .unwrap_err();
    assert!(matches!(err, CorsConfigError::CredentialsWithAnyMethod));
}

#[tokio::test]
async fn item_21_mirrored_method_works_with_credentials() {
    let server = serve(
        list()
            .mirror_request_method()
            .allow_credentials(true)
            .build()
            .unwrap(),
    )
    .await;
    let reply = server.preflight("/r", APP, "PURGE").await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.one("access-control-allow-methods"), Some("PURGE"));
    assert!(
        reply
            .vary()
            .contains(&"access-control-request-method".to_owned())
    );
}

#[tokio::test]
async fn item_22_allow_methods_is_one_token_list() {
    let server = serve(
        list()
            .allow_methods([Method::GET, Method::PUT, Method::DELETE, Method::PUT])
            .build()
            .unwrap(),
    )
    .await;
    let reply = server.preflight("/r", APP, "PUT").await;
    assert_eq!(
        reply.one("access-control-allow-methods"),
        Some("GET, PUT, DELETE")
    );
}

// E. Request headers

#[tokio::test]
async fn item_23_request_headers_are_parsed_liberally() {
    let server = serve(
        list()
            .allow_headers(["X-Custom", "content-type"])
            .build()
            .unwrap(),
    )
    .await;
    let reply = server
        .send(
            "OPTIONS",
            "/r",
            &[
                ("origin", APP),
                ("access-control-request-method", "GET"),
                (
                    "access-control-request-headers",
                    "X-CUSTOM ,\tContent-Type,,",
                ),
            ],
        )
        .await;
    assert_eq!(reply.status, 204);
    assert_eq!(
        reply.one("access-control-allow-headers"),
        Some("x-custom, content-type")
    );
}

#[tokio::test]
async fn item_24_every_requested_header_must_be_allowed() {
    let server = serve(list().allow_headers(["x-custom"]).build().unwrap()).await;
    let reply = server
        .send(
            "OPTIONS",
            "/r",
            &[
                ("origin", APP),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-custom,content-type"),
            ],
        )
        .await;
    assert_eq!(reply.status, 403);
    assert!(!reply.has_any_cors_header());
}

#[tokio::test]
async fn item_25_any_header_lists_authorization_explicitly() {
    let server = serve(list().allow_any_header().build().unwrap()).await;
    let reply = server
        .send(
            "OPTIONS",
            "/r",
            &[
                ("origin", APP),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "authorization,x-custom"),
            ],
        )
        .await;
    assert_eq!(reply.status, 204);
    assert_eq!(
        reply.one("access-control-allow-headers"),
        Some("*, authorization")
    );
    let reply = server
        .send(
            "OPTIONS",
            "/r",
            &[
                ("origin", APP),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-custom"),
            ],
        )
        .await;
    assert_eq!(reply.one("access-control-allow-headers"), Some("*"));
}

#[test]
fn item_25_any_header_with_credentials_is_an_error() {
    let err = list()
        .allow_any_header()
        .allow_credentials(true)
        .build()
        .unwrap_err();
    assert!(matches!(err, CorsConfigError::CredentialsWithAnyHeader));
}

#[tokio::test]
async fn item_26_mirrored_request_headers_vary_on_them() {
    let server = serve(list().mirror_request_headers().build().unwrap()).await;
    let reply = server
        .send(
            "OPTIONS",
            "/r",
            &[
                ("origin", APP),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "authorization,x-custom"),
            ],
        )
        .await;
    assert_eq!(
        reply.one("access-control-allow-headers"),
        Some("authorization,x-custom")
    );
    assert!(
        reply
            .vary()
            .contains(&"access-control-request-headers".to_owned())
    );
}

#[tokio::test]
async fn item_27_malformed_requested_header_name_refuses_the_preflight() {
    let server = serve(list().mirror_request_headers().build().unwrap()).await;
    let reply = server
        .send(
            "OPTIONS",
            "/r",
            &[
                ("origin", APP),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "header name with space"),
            ],
        )
        .await;
    assert_eq!(reply.status, 403);
}

#[test]
fn item_27_malformed_allowed_header_name_is_an_error() {
    let err = list()
        .allow_headers(["x-ok", "bad name"])
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        CorsConfigError::InvalidHeaderName { name, setting: "allow_headers" } if name == "bad name"
    ));
}

// F. Max-Age

#[tokio::test]
async fn item_28_max_age_is_whole_non_negative_seconds() {
    let server = serve(
        list()
            .max_age(Duration::from_millis(600_900))
            .build()
            .unwrap(),
    )
    .await;
    let reply = server.preflight("/r", APP, "GET").await;
    assert_eq!(reply.one("access-control-max-age"), Some("600"));

    let server = serve(list().max_age(Duration::ZERO).build().unwrap()).await;
    let reply = server.preflight("/r", APP, "GET").await;
    assert_eq!(reply.one("access-control-max-age"), Some("0"));

    let server = serve(list().build().unwrap()).await;
    let reply = server.preflight("/r", APP, "GET").await;
    assert_eq!(reply.one("access-control-max-age"), None);
}

#[tokio::test]
async fn item_29_preflight_with_a_query_string_is_answered_by_the_layer() {
    let server = serve(list().build().unwrap()).await;
    let reply = server.preflight("/r?cache-buster=1", APP, "GET").await;
    assert_eq!(reply.status, 204);
    assert_eq!(server.calls(), 0);
}

// G. Credentials

#[tokio::test]
async fn item_30_credentials_are_exactly_true_on_preflight_and_actual() {
    let server = serve(list().allow_credentials(true).build().unwrap()).await;
    let preflight = server.preflight("/r", APP, "GET").await;
    assert_eq!(
        preflight.one("access-control-allow-credentials"),
        Some("true")
    );
    let actual = server.send("GET", "/r", &[("origin", APP)]).await;
    assert_eq!(actual.one("access-control-allow-credentials"), Some("true"));
}

#[tokio::test]
async fn item_30_no_credentials_header_when_credentials_are_off() {
    let server = serve(list().build().unwrap()).await;
    let actual = server.send("GET", "/own-cors", &[("origin", APP)]).await;
    assert_eq!(actual.one("access-control-allow-credentials"), None);
}

#[test]
fn item_31_credentials_with_any_origin_is_an_error() {
    let err = CorsLayer::builder()
        .allow_any_origin()
        .allow_credentials(true)
        .build()
        .unwrap_err();
    assert!(matches!(err, CorsConfigError::CredentialsWithAnyOrigin));
}

#[tokio::test]
async fn item_31_dangerous_any_origin_with_credentials_echoes_with_vary() {
    let server = serve(
        CorsLayer::builder()
            .allow_any_origin()
            .allow_credentials(true)
            .dangerously_allow_credentials_with_any_origin()
            .build()
            .unwrap(),
    )
    .await;
    let reply = server.send("GET", "/r", &[("origin", EVIL)]).await;
    assert_eq!(reply.one("access-control-allow-origin"), Some(EVIL));
    assert_eq!(reply.one("access-control-allow-credentials"), Some("true"));
    assert!(reply.vary().contains(&"origin".to_owned()));
}

#[tokio::test]
async fn item_32_disallowed_origin_gets_no_credentials_header() {
    let server = serve(list().allow_credentials(true).build().unwrap()).await;
    let actual = server.send("GET", "/own-cors", &[("origin", EVIL)]).await;
    assert_eq!(actual.one("access-control-allow-credentials"), None);
    assert_eq!(actual.one("access-control-allow-origin"), None);
    let preflight = server.preflight("/r", EVIL, "GET").await;
    assert_eq!(preflight.one("access-control-allow-credentials"), None);
}

// H. Exposed headers

#[tokio::test]
async fn item_33_exposed_headers_are_listed_on_actual_responses() {
    let server = serve(
        list()
            .expose_headers(["x-request-id", "x-trace"])
            .build()
            .unwrap(),
    )
    .await;
    let reply = server.send("GET", "/expose", &[("origin", APP)]).await;
    assert_eq!(
        reply.one("access-control-expose-headers"),
        Some("x-request-id, x-trace")
    );
}

#[tokio::test]
async fn item_33_expose_any_is_star_without_credentials() {
    let server = serve(list().expose_any_header().build().unwrap()).await;
    let reply = server.send("GET", "/expose", &[("origin", APP)]).await;
    assert_eq!(reply.one("access-control-expose-headers"), Some("*"));
}

#[tokio::test]
async fn item_33_expose_any_with_credentials_lists_the_response_header_names() {
    let server = serve(
        list()
            .expose_any_header()
            .allow_credentials(true)
            .build()
            .unwrap(),
    )
    .await;
    let reply = server.send("GET", "/expose", &[("origin", APP)]).await;
    let exposed = reply.one("access-control-expose-headers").unwrap();
    let mut names: Vec<_> = exposed.split(", ").collect();
    names.sort();
    assert_eq!(names, ["x-request-id", "x-trace"]);
}

#[tokio::test]
async fn item_33_expose_any_with_credentials_omits_headers_added_outside_the_layer() {
    let cors = list()
        .expose_any_header()
        .allow_credentials(true)
        .build()
        .unwrap();
    let router = app(Arc::default())
        .layer(cors)
        .layer(axum::middleware::map_response(
            |mut response: Response| async move {
                let value = HeaderValue::from_static("outer");
                response.headers_mut().insert("x-outer", value);
                response
            },
        ));
    let addr = crate::support::serve(router).await;
    let server = Server {
        base: format!("http://{addr}"),
        calls: Arc::default(),
    };
    let reply = server.send("GET", "/expose", &[("origin", APP)]).await;
    assert_eq!(reply.one("x-outer"), Some("outer"));
    let exposed = reply.one("access-control-expose-headers").unwrap();
    assert!(!exposed.contains("x-outer"), "exposed: {exposed}");
    assert!(exposed.contains("x-request-id"), "exposed: {exposed}");
}

#[test]
fn item_33_exposing_set_cookie_is_an_error() {
    let err = list().expose_headers(["Set-Cookie"]).build().unwrap_err();
    assert!(matches!(err, CorsConfigError::ExposeSetCookie));
}

// I. Vary and caches

#[tokio::test]
async fn item_34_vary_origin_on_every_response_of_an_origin_dependent_policy() {
    let server = serve(list().build().unwrap()).await;
    for reply in [
        server.send("GET", "/r", &[("origin", APP)]).await,
        server.send("GET", "/r", &[("origin", EVIL)]).await,
        server.send("GET", "/r", &[]).await,
        server.preflight("/r", APP, "GET").await,
        server.preflight("/r", EVIL, "GET").await,
    ] {
        assert!(reply.vary().contains(&"origin".to_owned()));
    }
}

#[tokio::test]
async fn item_35_preflight_varies_on_request_method_and_headers() {
    let server = serve(list().build().unwrap()).await;
    let reply = server.preflight("/r", APP, "GET").await;
    assert_eq!(
        reply.vary(),
        [
            "origin",
            "access-control-request-method",
            "access-control-request-headers"
        ]
    );
}

#[tokio::test]
async fn item_36_vary_is_appended_to_the_existing_value() {
    let server = serve(list().build().unwrap()).await;
    let reply = server.send("GET", "/vary", &[("origin", APP)]).await;
    assert_eq!(reply.vary(), ["accept-encoding", "origin"]);
}

#[tokio::test]
async fn item_36_stacked_layers_do_not_duplicate_vary() {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = app(calls)
        .layer(list().build().unwrap())
        .layer(list().build().unwrap());
    let base = format!("http://{}", crate::support::serve(router).await);
    let server = Server {
        base,
        calls: Arc::default(),
    };
    let reply = server.send("GET", "/vary", &[("origin", APP)]).await;
    assert_eq!(reply.vary(), ["accept-encoding", "origin"]);
    assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
}

#[tokio::test]
async fn item_36_vary_star_is_kept_as_is() {
    let server = serve(list().build().unwrap()).await;
    let reply = server.send("GET", "/vary-star", &[("origin", APP)]).await;
    assert_eq!(reply.vary(), ["*"]);
}

#[tokio::test]
async fn item_37_static_star_policy_sends_no_vary_origin() {
    let server = serve(CorsLayer::builder().allow_any_origin().build().unwrap()).await;
    for reply in [
        server.send("GET", "/r", &[("origin", APP)]).await,
        server.send("GET", "/r", &[]).await,
    ] {
        assert_eq!(reply.one("access-control-allow-origin"), Some("*"));
        assert!(reply.vary().is_empty());
    }
}

// J. Actual requests

#[tokio::test]
async fn item_38_cors_headers_on_every_status() {
    let server = serve(list().allow_credentials(true).build().unwrap()).await;
    for code in [201, 400, 401, 404, 500, 503, 504] {
        let reply = server
            .send("GET", &format!("/status/{code}"), &[("origin", APP)])
            .await;
        assert_eq!(reply.status, code);
        assert_eq!(
            reply.one("access-control-allow-origin"),
            Some(APP),
            "{code}"
        );
        assert_eq!(reply.one("access-control-allow-credentials"), Some("true"));
    }
}

#[tokio::test]
async fn item_38_cors_headers_on_router_404() {
    let server = serve(list().build().unwrap()).await;
    let reply = server
        .send("GET", "/no-such-route", &[("origin", APP)])
        .await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
}

#[tokio::test]
async fn item_38_cors_headers_on_a_caught_panic() {
    let calls = Arc::new(AtomicUsize::new(0));
    let router = app(calls)
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .layer(list().build().unwrap());
    let server = Server {
        base: format!("http://{}", crate::support::serve(router).await),
        calls: Arc::default(),
    };
    let reply = server.send("GET", "/panic", &[("origin", APP)]).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
}

#[tokio::test]
async fn item_39_disallowed_origin_still_runs_the_handler() {
    let server = serve(list().build().unwrap()).await;
    let reply = server.send("DELETE", "/r", &[("origin", EVIL)]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "handler");
    assert_eq!(server.calls(), 1);
    assert_eq!(reply.one("access-control-allow-origin"), None);
}

#[tokio::test]
async fn item_40_handler_set_cors_headers_end_with_one_value_from_the_layer() {
    let server = serve(list().build().unwrap()).await;
    let allowed = server.send("GET", "/own-cors", &[("origin", APP)]).await;
    assert_eq!(allowed.one("access-control-allow-origin"), Some(APP));
    let refused = server.send("GET", "/own-cors", &[("origin", EVIL)]).await;
    assert_eq!(refused.one("access-control-allow-origin"), None);
}

#[tokio::test]
async fn item_41_redirect_carries_the_cors_headers() {
    let server = serve(list().allow_credentials(true).build().unwrap()).await;
    let reply = server.send("GET", "/status/302", &[("origin", APP)]).await;
    assert_eq!(reply.status, 302);
    assert_eq!(reply.one("location"), Some("/r"));
    assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
    assert_eq!(reply.one("access-control-allow-credentials"), Some("true"));
}

// K. Private Network Access

#[tokio::test]
async fn item_42_private_network_preflight_is_granted_when_enabled() {
    let server = serve(list().allow_private_network(true).build().unwrap()).await;
    let reply = server
        .send(
            "OPTIONS",
            "/r",
            &[
                ("origin", APP),
                ("access-control-request-method", "GET"),
                ("access-control-request-private-network", "true"),
            ],
        )
        .await;
    assert_eq!(reply.status, 204);
    assert_eq!(
        reply.one("access-control-allow-private-network"),
        Some("true")
    );
    assert!(
        reply
            .vary()
            .contains(&"access-control-request-private-network".to_owned())
    );
    // Not sent unless asked for.
    let reply = server.preflight("/r", APP, "GET").await;
    assert_eq!(reply.one("access-control-allow-private-network"), None);
}

#[tokio::test]
async fn item_43_private_network_is_opt_in() {
    let server = serve(list().build().unwrap()).await;
    let reply = server
        .send(
            "OPTIONS",
            "/r",
            &[
                ("origin", APP),
                ("access-control-request-method", "GET"),
                ("access-control-request-private-network", "true"),
            ],
        )
        .await;
    assert_eq!(reply.one("access-control-allow-private-network"), None);
}

// L. Configuration validation

#[test]
fn item_44_invalid_configurations_are_errors() {
    type Expected = fn(&CorsConfigError) -> bool;
    let cases: Vec<(CorsLayerBuilder, Expected)> = vec![
        (CorsLayer::builder().allow_origin("*"), |e| {
            matches!(e, CorsConfigError::WildcardInOriginList)
        }),
        (
            CorsLayer::builder().allow_any_origin().allow_origin(APP),
            |e| matches!(e, CorsConfigError::AnyOriginWithOtherOrigins),
        ),
        (
            CorsLayer::builder().allow_origin("https://*.example"),
            |e| matches!(e, CorsConfigError::InvalidOrigin { .. }),
        ),
        (
            CorsLayer::builder().allow_origin_regex("https://(unclosed"),
            |e| matches!(e, CorsConfigError::InvalidOriginRegex { pattern, .. } if pattern == "https://(unclosed"),
        ),
        (
            list().allow_methods([Method::from_bytes(b"*").unwrap()]),
            |e| {
                matches!(
                    e,
                    CorsConfigError::WildcardInList {
                        setting: "allow_methods"
                    }
                )
            },
        ),
        (list().allow_headers(["*"]), |e| {
            matches!(
                e,
                CorsConfigError::WildcardInList {
                    setting: "allow_headers"
                }
            )
        }),
        (list().expose_headers([""]), |e| {
            matches!(
                e,
                CorsConfigError::InvalidHeaderName {
                    setting: "expose_headers",
                    ..
                }
            )
        }),
        (
            list().preflight_status(StatusCode::FOUND),
            |e| matches!(e, CorsConfigError::PreflightStatusNotSuccess(s) if *s == StatusCode::FOUND),
        ),
        (list().denied_preflight_status(StatusCode::CONTINUE), |e| {
            matches!(e, CorsConfigError::InvalidDeniedPreflightStatus(_))
        }),
    ];
    for (builder, expected) in cases {
        let err = builder.build().unwrap_err();
        assert!(expected(&err), "unexpected error: {err}");
    }
}

#[tokio::test]
async fn item_45_default_policy_allows_no_origin() {
    let server = serve(CorsLayer::builder().build().unwrap()).await;
    let reply = server.send("GET", "/r", &[("origin", APP)]).await;
    assert_eq!(reply.one("access-control-allow-origin"), None);
    let reply = server.preflight("/r", APP, "GET").await;
    assert_eq!(reply.status, 403);
}

// M. Misc

#[tokio::test]
async fn item_46_header_names_are_case_insensitive_values_are_not() {
    let server = serve(
        list()
            .allow_headers(["X-Custom"])
            .allow_credentials(true)
            .build()
            .unwrap(),
    )
    .await;
    let reply = server
        .send(
            "OPTIONS",
            "/r",
            &[
                ("Origin", APP),
                ("Access-Control-Request-Method", "GET"),
                ("ACCESS-CONTROL-REQUEST-HEADERS", "x-CUSTOM"),
            ],
        )
        .await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.one("access-control-allow-credentials"), Some("true"));
    // Origins are compared as bytes: an upper-case origin is another origin.
    let reply = server
        .send("GET", "/r", &[("origin", "https://APP.example")])
        .await;
    assert_eq!(reply.one("access-control-allow-origin"), None);
}

#[tokio::test]
async fn item_47_a_refused_preflight_does_not_block_the_actual_request() {
    let server = serve(list().build().unwrap()).await;
    let preflight = server.preflight("/r", EVIL, "DELETE").await;
    assert_eq!(preflight.status, 403);
    let actual = server.send("DELETE", "/r", &[("origin", EVIL)]).await;
    assert_eq!(actual.status, 200);
    assert_eq!(server.calls(), 1);
}

#[tokio::test]
async fn item_48_simple_post_reaches_the_handler_and_gets_allow_origin() {
    let server = serve(list().build().unwrap()).await;
    let reply = server
        .send(
            "POST",
            "/r",
            &[("origin", APP), ("content-type", "text/plain")],
        )
        .await;
    assert_eq!(reply.body, "handler");
    assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
}

#[tokio::test]
async fn item_49_head_and_plain_options_follow_the_actual_request_rules() {
    let server = serve(list().build().unwrap()).await;
    let head = server.send("HEAD", "/r", &[("origin", APP)]).await;
    assert_eq!(head.one("access-control-allow-origin"), Some(APP));
    let options = server.send("OPTIONS", "/options", &[("origin", APP)]).await;
    assert_eq!(options.body, "options handler");
    assert_eq!(options.one("access-control-allow-origin"), Some(APP));
    assert_eq!(options.one("access-control-allow-methods"), None);
}

#[tokio::test]
async fn item_50_preflight_has_no_body_no_content_type_no_cookie() {
    let server = serve(list().build().unwrap()).await;
    let reply = server.preflight("/cookie", APP, "POST").await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.body, "");
    assert_eq!(reply.one("set-cookie"), None);
    assert_eq!(reply.one("content-type"), None);
}

// `urls` scoping

#[tokio::test]
async fn urls_scoping_leaves_other_paths_untouched() {
    let server = serve(
        list()
            .urls(PathRules::new().with(PathMatcher::exact("/r").unwrap()))
            .build()
            .unwrap(),
    )
    .await;
    let reply = server.send("GET", "/vary", &[("origin", APP)]).await;
    assert!(!reply.has_any_cors_header());
    assert_eq!(reply.vary(), ["accept-encoding"]);
    // A preflight outside the scope reaches the router.
    let reply = server.preflight("/options", APP, "GET").await;
    assert_eq!(reply.body, "options handler");
    // Inside the scope the layer acts.
    let reply = server.send("GET", "/r", &[("origin", APP)]).await;
    assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
}

#[tokio::test]
async fn urls_regex_scope_does_not_match_as_a_prefix() {
    let server = serve(
        list()
            .urls(PathRules::new().with(PathMatcher::regex("/r").unwrap()))
            .build()
            .unwrap(),
    )
    .await;
    let reply = server.send("GET", "/r/more", &[("origin", APP)]).await;
    assert!(!reply.has_any_cors_header());
}

#[tokio::test]
async fn urls_rule_methods_apply_to_the_method_a_preflight_asks_for() {
    let rule = PathRule::with_methods(
        PathMatcher::exact("/options").unwrap(),
        [axum::http::Method::PUT],
    )
    .unwrap();
    let server = serve(
        list()
            .allow_methods([Method::PUT])
            .urls(PathRules::new().with(rule))
            .build()
            .unwrap(),
    )
    .await;
    let covered = server.preflight("/options", APP, "PUT").await;
    assert_eq!(covered.status, 204);
    let not_covered = server.preflight("/options", APP, "DELETE").await;
    assert_eq!(not_covered.body, "options handler");
}

// CORS headers on error responses made by the error and timeout layers inside it, in both
// orders of those two layers, and with the error layer outside CORS.

mod with_error_and_timeout_layers {
    use super::*;
    use stopover::server::{ErrorLayer, TimeoutLayer};

    fn routes() -> Router {
        Router::new()
            .route("/hang", get(std::future::pending::<&'static str>))
            .route("/panic", get(|| async { panic!("boom") as &'static str }))
            .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
    }

    fn timeout() -> TimeoutLayer {
        TimeoutLayer::builder(Duration::from_millis(20))
            .build()
            .unwrap()
    }

    async fn check(router: Router, path: &str, code: u16) {
        let server = Server {
            base: format!("http://{}", crate::support::serve(router).await),
            calls: Arc::default(),
        };
        let reply = server.send("GET", path, &[("origin", APP)]).await;
        assert_eq!(reply.status, code);
        assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
        assert_eq!(reply.one("access-control-allow-credentials"), Some("true"));
        assert!(reply.vary().contains(&"origin".to_owned()));
        assert!(reply.body.contains("detail"), "body: {}", reply.body);
    }

    fn cors() -> CorsLayer {
        list().allow_credentials(true).build().unwrap()
    }

    #[tokio::test]
    async fn cors_headers_on_504_with_cors_then_error_then_timeout() {
        let router = routes()
            .layer(timeout())
            .layer(ErrorLayer::new())
            .layer(cors());
        check(router, "/hang", 504).await;
    }

    #[tokio::test]
    async fn cors_headers_on_504_with_cors_then_timeout_then_error() {
        let router = routes()
            .layer(ErrorLayer::new())
            .layer(timeout())
            .layer(cors());
        check(router, "/hang", 504).await;
    }

    #[tokio::test]
    async fn cors_headers_on_500_from_a_panic_with_cors_then_error_then_timeout() {
        let router = routes()
            .layer(timeout())
            .layer(ErrorLayer::new())
            .layer(cors());
        check(router, "/panic", 500).await;
    }

    #[tokio::test]
    async fn cors_headers_on_500_from_a_panic_with_cors_then_timeout_then_error() {
        let router = routes()
            .layer(ErrorLayer::new())
            .layer(timeout())
            .layer(cors());
        check(router, "/panic", 500).await;
    }

    #[tokio::test]
    async fn cors_headers_on_504_with_error_outside_cors() {
        let router = routes()
            .layer(timeout())
            .layer(cors())
            .layer(ErrorLayer::new());
        check(router, "/hang", 504).await;
    }

    #[tokio::test]
    async fn cors_headers_on_500_with_error_outside_cors() {
        let router = routes()
            .layer(timeout())
            .layer(cors())
            .layer(ErrorLayer::new());
        check(router, "/fail", 500).await;
    }
}

/// Allocations for 100 actual requests through `service`, after a warm-up.
async fn allocations_for_100<S>(mut service: S, origin: Option<&'static str>) -> usize
where
    S: tower::Service<
            axum::http::Request<()>,
            Response = axum::http::Response<http_body_util::Empty<bytes::Bytes>>,
            Error = std::convert::Infallible,
        >,
{
    use tower::ServiceExt;
    let request = || {
        let mut request = axum::http::Request::new(());
        *request.uri_mut() = axum::http::Uri::from_static("/api/items");
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert(header::ORIGIN, HeaderValue::from_static(origin));
        }
        request
    };
    for _ in 0..3 {
        service
            .ready()
            .await
            .unwrap()
            .call(request())
            .await
            .unwrap();
    }
    let mut requests = Vec::with_capacity(100);
    requests.extend((0..100).map(|_| request()));
    let before = counting::allocations();
    for request in requests.drain(..) {
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        drop(response);
    }
    counting::allocations() - before
}

#[tokio::test(flavor = "current_thread")]
async fn actual_requests_allocate_nothing_beyond_the_inner_service() {
    use tower::Layer;
    // The leaf reserves room for a few headers, as any real response with headers has.
    let leaf = tower::service_fn(|_request: axum::http::Request<()>| async {
        let mut response = axum::http::Response::new(http_body_util::Empty::new());
        response.headers_mut().reserve(8);
        Ok::<_, std::convert::Infallible>(response)
    });
    let cors = CorsLayer::builder()
        .allow_origins([APP, "https://second.example"])
        .allow_origin_regex(r"https://[a-z]+\.preview\.example")
        .allow_credentials(true)
        .expose_headers(["x-request-id"])
        .urls(PathRules::new().with(PathMatcher::prefix("/api/").unwrap()))
        .build()
        .unwrap();
    let baseline = allocations_for_100(leaf, Some(APP)).await;
    for origin in [
        Some(APP),
        Some(EVIL),
        Some("https://a.preview.example"),
        None,
    ] {
        let with_cors = allocations_for_100(cors.layer(leaf), origin).await;
        assert_eq!(with_cors, baseline, "origin {origin:?}");
    }
}

/// The recommended order in one `ServiceBuilder`, outside any `Router::layer`: CORS wraps the
/// error and timeout layers, answers preflights itself (which needs the error layer's body to
/// have an empty `Default`), and puts its headers on the errors they make.
async fn serve_recommended_stack() -> Server {
    use stopover::server::error::ErrorLayer;
    use stopover::server::timeout::TimeoutLayer;
    use tower::ServiceBuilder;

    let calls = Arc::new(AtomicUsize::new(0));
    let router = app(calls.clone()).route(
        "/sleep",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }),
    );
    let stack = ServiceBuilder::new()
        .layer(list().build().unwrap())
        .layer(ErrorLayer::new())
        .layer(
            TimeoutLayer::builder(Duration::from_millis(50))
                .build()
                .unwrap(),
        )
        .service(router);
    let addr = crate::support::serve_service(stack).await;
    Server {
        base: format!("http://{addr}"),
        calls,
    }
}

#[tokio::test]
async fn cors_outside_error_layer_in_a_service_builder_answers_preflights() {
    let server = serve_recommended_stack().await;
    let reply = server.preflight("/r", APP, "GET").await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert!(reply.body.is_empty());
    assert_eq!(server.calls(), 0);
}

#[tokio::test]
async fn cors_outside_error_layer_in_a_service_builder_grants_error_and_timeout_responses() {
    let server = serve_recommended_stack().await;
    let missing = server.send("GET", "/missing", &[("origin", APP)]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body, r#"{"detail":"Not Found"}"#);
    assert_eq!(missing.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    let late = server.send("GET", "/sleep", &[("origin", APP)]).await;
    assert_eq!(late.status, 504);
    assert_eq!(late.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], APP);
}

mod parts_predicate {
    use super::*;

    /// Tenant `<name>.api.test` lets in `https://<name>.example` only.
    fn by_host() -> CorsLayer {
        CorsLayer::builder()
            .allow_origin_predicate_with_parts(|origin, parts| {
                let host = parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok());
                let tenant = host.and_then(|h| h.strip_suffix(".api.test"));
                tenant.is_some_and(|t| origin == format!("https://{t}.example"))
            })
            .build()
            .unwrap()
    }

    /// Lets `APP` in on `/r` only.
    fn by_path() -> CorsLayer {
        CorsLayer::builder()
            .allow_origin_predicate_with_parts(|origin, parts| {
                origin == APP && parts.uri.path() == "/r"
            })
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn parts_predicate_allows_the_origin_of_the_tenant_named_by_host() {
        let server = serve(by_host()).await;
        let reply = server
            .send(
                "GET",
                "/r",
                &[
                    ("host", "acme.api.test"),
                    ("origin", "https://acme.example"),
                ],
            )
            .await;
        assert_eq!(
            reply.one("access-control-allow-origin"),
            Some("https://acme.example")
        );
    }

    #[tokio::test]
    async fn parts_predicate_refuses_the_origin_of_another_tenant() {
        let server = serve(by_host()).await;
        let reply = server
            .send(
                "GET",
                "/r",
                &[
                    ("host", "globex.api.test"),
                    ("origin", "https://acme.example"),
                ],
            )
            .await;
        assert_eq!(reply.one("access-control-allow-origin"), None);
        assert!(reply.vary().contains(&"origin".to_owned()));
    }

    #[tokio::test]
    async fn parts_predicate_decides_by_path() {
        let server = serve(by_path()).await;
        let on_r = server.send("GET", "/r", &[("origin", APP)]).await;
        let elsewhere = server.send("GET", "/vary", &[("origin", APP)]).await;
        assert_eq!(on_r.one("access-control-allow-origin"), Some(APP));
        assert_eq!(elsewhere.one("access-control-allow-origin"), None);
    }

    #[tokio::test]
    async fn parts_predicate_sees_the_path_of_a_preflight() {
        let server = serve(by_path()).await;
        assert_eq!(server.preflight("/r", APP, "GET").await.status, 204);
        assert_eq!(server.preflight("/options", APP, "GET").await.status, 403);
    }

    #[tokio::test]
    async fn parts_predicate_is_never_asked_about_null() {
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let server = serve(
            CorsLayer::builder()
                .allow_origin_predicate_with_parts(move |_, _| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    true
                })
                .build()
                .unwrap(),
        )
        .await;
        let reply = server.send("GET", "/r", &[("origin", "null")]).await;
        assert_eq!(reply.one("access-control-allow-origin"), None);
        assert_eq!(asked.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn parts_predicate_with_any_origin_is_an_error() {
        let error = CorsLayer::builder()
            .allow_any_origin()
            .allow_origin_predicate_with_parts(|_, _| true)
            .build()
            .unwrap_err();
        assert!(matches!(error, CorsConfigError::AnyOriginWithOtherOrigins));
    }
}

mod async_predicate {
    use super::*;
    use std::sync::Mutex;
    use tokio::sync::oneshot;

    /// An async predicate that answers `origin == APP` once the test opens the gate.
    fn gated() -> (CorsLayer, oneshot::Sender<()>) {
        let (open, gate) = oneshot::channel::<()>();
        let gate = Arc::new(Mutex::new(Some(gate)));
        let cors = CorsLayer::builder()
            .allow_origin_async_predicate(move |origin, _| {
                let gate = gate.lock().unwrap().take();
                let allowed = origin == APP;
                async move {
                    if let Some(gate) = gate {
                        let _ = gate.await;
                    }
                    allowed
                }
            })
            .build()
            .unwrap();
        (cors, open)
    }

    /// An async predicate that asks a store (here a lock-guarded list).
    fn store(origins: &[&str]) -> (CorsLayer, Arc<AtomicUsize>) {
        let store: Arc<tokio::sync::RwLock<Vec<String>>> = Arc::new(tokio::sync::RwLock::new(
            origins.iter().map(|o| (*o).to_owned()).collect(),
        ));
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let cors = list()
            .allow_origin_async_predicate(move |origin, _| {
                counter.fetch_add(1, Ordering::SeqCst);
                let store = store.clone();
                let origin = origin.to_owned();
                async move {
                    tokio::task::yield_now().await;
                    store.read().await.contains(&origin)
                }
            })
            .allow_methods([Method::PUT])
            .build()
            .unwrap();
        (cors, asked)
    }

    async fn eventually(condition: impl Fn() -> bool) {
        tokio::time::timeout(Duration::from_secs(20), async {
            while !condition() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("gave up waiting");
    }

    #[tokio::test]
    async fn async_predicate_allows_the_actual_response_once_it_answers() {
        let (cors, _) = store(&["https://tenant.example"]);
        let server = serve(cors).await;
        let reply = server
            .send("GET", "/r", &[("origin", "https://tenant.example")])
            .await;
        assert_eq!(
            reply.one("access-control-allow-origin"),
            Some("https://tenant.example")
        );
        assert!(reply.vary().contains(&"origin".to_owned()));
    }

    #[tokio::test]
    async fn async_predicate_refusal_leaves_the_actual_response_without_a_grant() {
        let (cors, _) = store(&["https://tenant.example"]);
        let server = serve(cors).await;
        let reply = server.send("GET", "/r", &[("origin", EVIL)]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body, "handler");
        assert_eq!(reply.one("access-control-allow-origin"), None);
    }

    #[tokio::test]
    async fn actual_response_waits_for_the_async_predicate_while_the_handler_runs() {
        let (cors, open) = gated();
        let server = Arc::new(serve(cors).await);
        let sender = server.clone();
        let reply = tokio::spawn(async move { sender.send("GET", "/r", &[("origin", APP)]).await });
        // The handler is not held back by the pending answer...
        eventually(|| server.calls() == 1).await;
        // ...but its response is.
        assert!(!reply.is_finished());
        open.send(()).unwrap();
        let reply = reply.await.unwrap();
        assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
    }

    #[tokio::test]
    async fn preflight_waits_for_the_async_predicate() {
        let (cors, open) = gated();
        let server = Arc::new(serve(cors).await);
        let sender = server.clone();
        let reply = tokio::spawn(async move { sender.preflight("/r", APP, "GET").await });
        tokio::task::yield_now().await;
        open.send(()).unwrap();
        let reply = reply.await.unwrap();
        assert_eq!(reply.status, 204);
        assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
        assert_eq!(server.calls(), 0);
    }

    #[tokio::test]
    async fn async_predicate_refusal_refuses_the_preflight() {
        let (cors, _) = store(&["https://tenant.example"]);
        let server = serve(cors).await;
        let reply = server.preflight("/r", EVIL, "PUT").await;
        assert_eq!(reply.status, 403);
        assert!(!reply.has_any_cors_header());
        // Refused later, still varied like any answer of an origin-dependent policy.
        assert!(reply.vary().contains(&"origin".to_owned()));
        assert!(
            reply
                .vary()
                .contains(&"access-control-request-method".to_owned())
        );
    }

    #[tokio::test]
    async fn async_grant_still_checks_the_requested_method() {
        let (cors, _) = store(&["https://tenant.example"]);
        let server = serve(cors).await;
        let put = server
            .preflight("/r", "https://tenant.example", "PUT")
            .await;
        let delete = server
            .preflight("/r", "https://tenant.example", "DELETE")
            .await;
        assert_eq!(put.status, 204);
        assert_eq!(put.one("access-control-allow-methods"), Some("PUT"));
        assert_eq!(delete.status, 403);
    }

    #[tokio::test]
    async fn async_predicate_is_not_asked_when_a_listed_origin_matches() {
        let (cors, asked) = store(&[]);
        let server = serve(cors).await;
        let reply = server.send("GET", "/r", &[("origin", APP)]).await;
        assert_eq!(reply.one("access-control-allow-origin"), Some(APP));
        assert_eq!(asked.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn any_of_several_async_predicates_may_allow() {
        let server = serve(
            CorsLayer::builder()
                .allow_origin_async_predicate(|_, _| async { false })
                .allow_origin_async_predicate(|origin, _| {
                    let allowed = origin == APP;
                    async move { allowed }
                })
                .build()
                .unwrap(),
        )
        .await;
        let allowed = server.send("GET", "/r", &[("origin", APP)]).await;
        let refused = server.send("GET", "/r", &[("origin", EVIL)]).await;
        assert_eq!(allowed.one("access-control-allow-origin"), Some(APP));
        assert_eq!(refused.one("access-control-allow-origin"), None);
    }

    #[tokio::test]
    async fn async_predicate_sees_the_request_parts() {
        let server = serve(
            CorsLayer::builder()
                .allow_origin_async_predicate(|_, parts| {
                    let allowed = parts.uri.path() == "/r";
                    async move { allowed }
                })
                .build()
                .unwrap(),
        )
        .await;
        let on_r = server.send("GET", "/r", &[("origin", APP)]).await;
        let elsewhere = server.send("GET", "/vary", &[("origin", APP)]).await;
        assert_eq!(on_r.one("access-control-allow-origin"), Some(APP));
        assert_eq!(elsewhere.one("access-control-allow-origin"), None);
    }

    #[tokio::test]
    async fn a_timeout_layer_outside_bounds_an_async_predicate_that_never_answers() {
        use stopover::server::TimeoutLayer;
        let cors = CorsLayer::builder()
            .allow_origin_async_predicate(|_, _| std::future::pending::<bool>())
            .build()
            .unwrap();
        let timeout = TimeoutLayer::builder(Duration::from_millis(50))
            .build()
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let router = app(calls.clone()).layer(cors).layer(timeout);
        let server = Server {
            base: format!("http://{}", crate::support::serve(router).await),
            calls,
        };
        assert_eq!(server.preflight("/r", APP, "GET").await.status, 504);
        assert_eq!(
            server.send("GET", "/r", &[("origin", APP)]).await.status,
            504
        );
    }
}

mod by_path {
    use super::*;

    fn rules(rule: impl Into<PathRule>) -> PathRules {
        PathRules::new().with(rule)
    }

    /// `/r` lets `APP` in; `/status/…` lets `EVIL` in.
    fn two_policies() -> CorsLayer {
        CorsLayer::by_path()
            .policy(
                CorsLayer::builder()
                    .urls(rules(PathMatcher::exact("/r").unwrap()))
                    .allow_origin(APP),
            )
            .policy(
                CorsLayer::builder()
                    .urls(rules(PathMatcher::prefix("/status/").unwrap()))
                    .allow_origin(EVIL),
            )
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn each_path_gets_the_origin_of_its_policy() {
        let server = serve(two_policies()).await;
        let r = server.send("GET", "/r", &[("origin", APP)]).await;
        let status = server.send("GET", "/status/200", &[("origin", EVIL)]).await;
        assert_eq!(r.one("access-control-allow-origin"), Some(APP));
        assert_eq!(status.one("access-control-allow-origin"), Some(EVIL));
    }

    #[tokio::test]
    async fn one_policy_s_origin_is_refused_on_the_other_s_path() {
        let server = serve(two_policies()).await;
        let r = server.send("GET", "/r", &[("origin", EVIL)]).await;
        let preflight = server.preflight("/status/200", APP, "GET").await;
        assert_eq!(r.one("access-control-allow-origin"), None);
        assert_eq!(preflight.status, 403);
    }

    #[tokio::test]
    async fn the_first_matching_policy_wins() {
        let server = serve(
            CorsLayer::by_path()
                .policy(
                    CorsLayer::builder()
                        .urls(rules(PathMatcher::prefix("/status/4").unwrap()))
                        .allow_origin(APP),
                )
                .policy(
                    CorsLayer::builder()
                        .urls(rules(PathMatcher::prefix("/status/").unwrap()))
                        .allow_origin(EVIL),
                )
                .build()
                .unwrap(),
        )
        .await;
        let first = server.send("GET", "/status/404", &[("origin", EVIL)]).await;
        let second = server.send("GET", "/status/200", &[("origin", EVIL)]).await;
        assert_eq!(first.one("access-control-allow-origin"), None);
        assert_eq!(second.one("access-control-allow-origin"), Some(EVIL));
    }

    #[tokio::test]
    async fn a_path_no_policy_covers_passes_through_untouched() {
        let server = serve(two_policies()).await;
        let reply = server.send("GET", "/vary", &[("origin", APP)]).await;
        assert!(!reply.has_any_cors_header());
        assert_eq!(reply.vary(), ["accept-encoding"]);
        let preflight = server.preflight("/options", APP, "GET").await;
        assert_eq!(preflight.body, "options handler");
    }

    #[tokio::test]
    async fn a_last_policy_without_urls_is_the_fallback() {
        let server = serve(
            CorsLayer::by_path()
                .policy(
                    CorsLayer::builder()
                        .urls(rules(PathMatcher::exact("/r").unwrap()))
                        .allow_origin(APP),
                )
                .policy(CorsLayer::builder().allow_any_origin())
                .build()
                .unwrap(),
        )
        .await;
        let r = server.send("GET", "/r", &[("origin", EVIL)]).await;
        let other = server.send("GET", "/vary", &[("origin", EVIL)]).await;
        assert_eq!(r.one("access-control-allow-origin"), None);
        assert_eq!(other.one("access-control-allow-origin"), Some("*"));
    }

    #[tokio::test]
    async fn a_preflight_chooses_the_policy_by_the_method_it_asks_for() {
        let server = serve(
            CorsLayer::by_path()
                .policy(
                    CorsLayer::builder()
                        .urls(rules(
                            PathRule::with_methods(
                                PathMatcher::exact("/r").unwrap(),
                                [axum::http::Method::PUT],
                            )
                            .unwrap(),
                        ))
                        .allow_origin(APP)
                        .allow_methods([Method::PUT]),
                )
                .policy(
                    CorsLayer::builder()
                        .urls(rules(PathMatcher::exact("/r").unwrap()))
                        .allow_origin(EVIL),
                )
                .build()
                .unwrap(),
        )
        .await;
        let put = server.preflight("/r", APP, "PUT").await;
        let get_from_app = server.preflight("/r", APP, "GET").await;
        let get_from_evil = server.preflight("/r", EVIL, "GET").await;
        assert_eq!(put.status, 204);
        assert_eq!(get_from_app.status, 403);
        assert_eq!(get_from_evil.status, 204);
    }

    #[tokio::test]
    async fn each_policy_adds_only_its_own_vary() {
        let server = serve(
            CorsLayer::by_path()
                .policy(
                    CorsLayer::builder()
                        .urls(rules(PathMatcher::exact("/vary").unwrap()))
                        .allow_any_origin(),
                )
                .policy(
                    CorsLayer::builder()
                        .urls(rules(PathMatcher::exact("/r").unwrap()))
                        .allow_origin(APP),
                )
                .build()
                .unwrap(),
        )
        .await;
        let public = server.send("GET", "/vary", &[("origin", EVIL)]).await;
        let listed = server.send("GET", "/r", &[("origin", EVIL)]).await;
        assert_eq!(public.one("access-control-allow-origin"), Some("*"));
        assert_eq!(public.vary(), ["accept-encoding"]);
        assert_eq!(listed.vary(), ["origin"]);
    }

    #[test]
    fn by_path_without_a_policy_is_an_error() {
        let error = CorsLayer::by_path().build().unwrap_err();
        assert!(matches!(error, CorsConfigError::NoPolicies));
    }

    #[test]
    fn a_policy_after_one_covering_every_path_is_an_error() {
        let error = CorsLayer::by_path()
            .policy(CorsLayer::builder().allow_origin(APP))
            .policy(
                CorsLayer::builder()
                    .urls(rules(PathMatcher::exact("/r").unwrap()))
                    .allow_origin(EVIL),
            )
            .build()
            .unwrap_err();
        assert!(matches!(
            error,
            CorsConfigError::UnreachablePolicy {
                index: 1,
                covered_by: 0
            }
        ));
    }

    #[test]
    fn an_invalid_policy_is_an_error_naming_its_position() {
        let error = CorsLayer::by_path()
            .policy(
                CorsLayer::builder()
                    .urls(rules(PathMatcher::exact("/r").unwrap()))
                    .allow_origin(APP),
            )
            .policy(
                CorsLayer::builder()
                    .allow_any_origin()
                    .allow_credentials(true),
            )
            .build()
            .unwrap_err();
        let CorsConfigError::Policy { index, source } = &error else {
            panic!("unexpected error: {error}");
        };
        assert_eq!(*index, 1);
        assert!(matches!(
            **source,
            CorsConfigError::CredentialsWithAnyOrigin
        ));
        assert!(error.to_string().starts_with("CORS policy #1: "));
    }
}

mod async_predicate_oneshot {
    use super::*;
    use std::convert::Infallible;
    use tokio::sync::oneshot;
    use tower::{Layer, ServiceExt};

    #[tokio::test]
    async fn response_of_a_handler_slower_than_the_predicate_still_gets_the_grant() {
        let (release, released) = oneshot::channel::<()>();
        let released = Arc::new(std::sync::Mutex::new(Some(released)));
        let inner = tower::service_fn(move |_: http::Request<()>| {
            let released = released.lock().unwrap().take();
            async move {
                if let Some(released) = released {
                    let _ = released.await;
                }
                Ok::<_, Infallible>(http::Response::new(String::from("slow")))
            }
        });
        let cors = CorsLayer::builder()
            .allow_origin_async_predicate(|origin, _| std::future::ready(origin == APP))
            .build()
            .unwrap();
        let request = http::Request::get("/r")
            .header("origin", APP)
            .body(())
            .unwrap();
        let response = tokio::spawn(cors.layer(inner).oneshot(request));
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        let response = response.await.unwrap().unwrap();
        assert_eq!(
            response
                .headers()
                .get("access-control-allow-origin")
                .unwrap(),
            APP
        );
        assert_eq!(response.into_body(), "slow");
    }
}
