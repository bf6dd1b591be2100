//! The client and its middleware chain, against real loopback servers.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, StatusCode};
use stopover::client::{
    Body, Chain, Client, ErrorKind, Middleware, Next, Request, Response, Result, from_fn,
};
use support::TestServer;

type Log = Arc<Mutex<Vec<String>>>;

/// A middleware that writes `before{name}` and `after{name}` around the rest of the chain.
fn recorder(name: &'static str, log: &Log) -> impl Middleware + use<> {
    let log = Arc::clone(log);
    from_fn(move |req: Request, next: Next| {
        let log = Arc::clone(&log);
        async move {
            log.lock().unwrap().push(format!("before{name}"));
            let response = next.run(req).await;
            log.lock().unwrap().push(format!("after{name}"));
            response
        }
    })
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// Counts how many times it runs; a struct middleware.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Middleware for Counter {
    async fn handle(&self, req: Request, next: Next) -> Result<Response> {
        self.0.fetch_add(1, Ordering::SeqCst);
        next.run(req).await
    }
}

#[tokio::test]
async fn first_listed_middleware_is_outermost() {
    let server = TestServer::start().await;
    let log = Log::default();
    let client = Client::builder()
        .middleware(recorder("1", &log))
        .middleware(recorder("2", &log))
        .build()
        .unwrap();
    client.get(server.url("/")).send().await.unwrap();
    assert_eq!(entries(&log), ["before1", "before2", "after2", "after1"]);
}

#[tokio::test]
async fn middleware_that_never_calls_next_answers_without_the_network() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .middleware(from_fn(|req: Request, _next: Next| async move {
            let answer = http::Response::builder()
                .status(StatusCode::IM_A_TEAPOT)
                .body("short-circuited")
                .unwrap();
            Ok(Response::from_http(answer, req.url().clone()))
        }))
        .build()
        .unwrap();
    let response = client.get(server.url("/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    assert_eq!(response.text().await.unwrap(), "short-circuited");
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn middleware_can_call_next_twice_to_retry() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .middleware(from_fn(|req: Request, next: Next| async move {
            let first = next.run(req.try_clone()?).await?;
            if first.status().is_server_error() {
                first.discard().await;
                let mut retry = req;
                retry.url_mut().set_path("/second");
                return next.run(retry).await;
            }
            Ok(first)
        }))
        .build()
        .unwrap();
    let response = client.get(server.url("/status/503")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.paths(), ["/status/503", "/second"]);
}

#[tokio::test]
async fn retried_post_sends_its_buffered_body_every_time() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .middleware(from_fn(|req: Request, next: Next| async move {
            next.run(req.try_clone()?).await?.discard().await;
            next.run(req).await
        }))
        .build()
        .unwrap();
    client
        .post(server.url("/"))
        .body("payload")
        .send()
        .await
        .unwrap();
    let bodies: Vec<Bytes> = server.seen().into_iter().map(|seen| seen.body).collect();
    assert_eq!(bodies, ["payload", "payload"]);
}

#[tokio::test]
async fn request_list_replaces_client_list() {
    let server = TestServer::start().await;
    let log = Log::default();
    let client = Client::builder()
        .middleware(recorder("client", &log))
        .build()
        .unwrap();
    client
        .get(server.url("/"))
        .middlewares(Chain::new().with(recorder("request", &log)))
        .send()
        .await
        .unwrap();
    assert_eq!(entries(&log), ["beforerequest", "afterrequest"]);
}

#[tokio::test]
async fn empty_request_list_runs_no_middleware() {
    let server = TestServer::start().await;
    let log = Log::default();
    let client = Client::builder()
        .middleware(recorder("client", &log))
        .build()
        .unwrap();
    client
        .get(server.url("/"))
        .middlewares(Chain::new())
        .send()
        .await
        .unwrap();
    client
        .get(server.url("/"))
        .no_middleware()
        .send()
        .await
        .unwrap();
    assert!(entries(&log).is_empty());
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn extend_middleware_runs_client_list_then_the_extra_one() {
    let server = TestServer::start().await;
    let log = Log::default();
    let client = Client::builder()
        .middleware(recorder("client", &log))
        .build()
        .unwrap();
    client
        .get(server.url("/"))
        .extend_middleware(recorder("extra", &log))
        .send()
        .await
        .unwrap();
    assert_eq!(
        entries(&log),
        ["beforeclient", "beforeextra", "afterextra", "afterclient"]
    );
    log.lock().unwrap().clear();
    client.get(server.url("/")).send().await.unwrap();
    assert_eq!(entries(&log), ["beforeclient", "afterclient"]);
}

#[tokio::test]
async fn struct_middleware_counts_every_request() {
    let server = TestServer::start().await;
    let counter = Arc::new(Counter::default());
    let client = Client::builder()
        .middleware_arc(Arc::clone(&counter))
        .build()
        .unwrap();
    for _ in 0..3 {
        client.get(server.url("/")).send().await.unwrap();
    }
    assert_eq!(counter.0.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn middleware_reads_typed_request_extensions() {
    #[derive(Clone)]
    struct Tenant(&'static str);

    let server = TestServer::start().await;
    let client = Client::builder()
        .middleware(from_fn(|mut req: Request, next: Next| async move {
            if let Some(Tenant(name)) = req.extensions().get::<Tenant>().cloned() {
                req.headers_mut()
                    .insert("x-tenant", http::HeaderValue::from_static(name));
            }
            next.run(req).await
        }))
        .build()
        .unwrap();
    client
        .get(server.url("/"))
        .extension(Tenant("acme"))
        .send()
        .await
        .unwrap();
    assert_eq!(server.seen()[0].headers["x-tenant"], "acme");
}

#[tokio::test]
async fn three_hop_redirect_runs_the_chain_once_per_hop() {
    let server = TestServer::start().await;
    let hops: Arc<Mutex<Vec<(u32, String, String)>>> = Arc::default();
    let seen = Arc::clone(&hops);
    let client = Client::builder()
        .middleware(from_fn(move |req: Request, next: Next| {
            seen.lock().unwrap().push((
                req.hop(),
                req.url().path().to_owned(),
                req.original_url().path().to_owned(),
            ));
            next.run(req)
        }))
        .build()
        .unwrap();
    let response = client.get(server.url("/hops/2")).send().await.unwrap();
    assert_eq!(
        response.text_status().await,
        (StatusCode::OK, "done".into())
    );
    let hops = hops.lock().unwrap().clone();
    let expected = [
        (0, "/hops/2", "/hops/2"),
        (1, "/hops/1", "/hops/2"),
        (2, "/hops/0", "/hops/2"),
    ]
    .map(|(hop, path, original)| (hop, path.to_owned(), original.to_owned()));
    assert_eq!(hops, expected);
}

#[tokio::test]
async fn final_response_reports_url_and_history() {
    let server = TestServer::start().await;
    let client = Client::new();
    let response = client.get(server.url("/hops/2")).send().await.unwrap();
    assert_eq!(response.url().path(), "/hops/0");
    let history: Vec<(StatusCode, String)> = response
        .history()
        .iter()
        .map(|redirect| (redirect.status(), redirect.url().path().to_owned()))
        .collect();
    assert_eq!(
        history,
        [
            (StatusCode::FOUND, "/hops/2".to_owned()),
            (StatusCode::FOUND, "/hops/1".to_owned())
        ]
    );
}

#[tokio::test]
async fn redirect_method_and_body_rules() {
    let server = TestServer::start().await;
    let client = Client::new();
    let cases = [
        (301, Method::POST, Method::GET, ""),
        (301, Method::PUT, Method::PUT, "data"),
        (302, Method::POST, Method::GET, ""),
        (302, Method::DELETE, Method::DELETE, "data"),
        (303, Method::POST, Method::GET, ""),
        (303, Method::PUT, Method::GET, ""),
        (303, Method::HEAD, Method::HEAD, ""),
        (307, Method::POST, Method::POST, "data"),
        (307, Method::PATCH, Method::PATCH, "data"),
        (308, Method::POST, Method::POST, "data"),
    ];
    for (status, method, expected_method, expected_body) in cases {
        let target = server.url(&format!("/target-{status}-{method}"));
        let url = server.url(&format!(
            "/redirect?{}",
            serde_urlencoded::to_string([("status", status.to_string()), ("to", target)]).unwrap()
        ));
        let mut builder = client.request(method.clone(), url);
        if method != Method::HEAD {
            builder = builder.header("content-type", "text/plain").body("data");
        }
        let response = builder.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{status} {method}");
        let hop = server.seen().pop().unwrap();
        assert_eq!(hop.uri.path(), format!("/target-{status}-{method}"));
        assert_eq!(hop.method, expected_method, "{status} {method}");
        assert_eq!(hop.body, expected_body, "{status} {method}");
        let kept_content_type = hop.headers.contains_key("content-type");
        assert_eq!(
            kept_content_type,
            !expected_body.is_empty(),
            "{status} {method}: content-type follows the body"
        );
    }
}

fn stream_body(
    parts: &'static [&'static str],
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::iter(
        parts
            .iter()
            .map(|part| Ok(Bytes::from_static(part.as_bytes()))),
    )
}

#[tokio::test]
async fn redirect_307_with_one_shot_stream_is_a_typed_error() {
    let server = TestServer::start().await;
    let client = Client::new();
    let url = server.url(&format!(
        "/redirect?status=307&to={}",
        server.url("/target")
    ));
    let err = client
        .post(url)
        .body(Body::wrap_stream(stream_body(&["a", "b"])))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BodyNotReplayable);
    assert_eq!(err.url().unwrap().path(), "/target");
    assert_eq!(server.count("/target"), 0, "never sent with an empty body");
}

#[tokio::test]
async fn redirect_307_replays_stream_within_its_cap() {
    let server = TestServer::start().await;
    let client = Client::new();
    let url = server.url(&format!(
        "/redirect?status=307&to={}",
        server.url("/target")
    ));
    let response = client
        .post(url)
        .body(Body::wrap_stream_replayable(stream_body(&["a", "b"]), 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bodies: Vec<Bytes> = server.seen().into_iter().map(|seen| seen.body).collect();
    assert_eq!(bodies, ["ab", "ab"]);
}

#[tokio::test]
async fn relative_location_is_resolved_against_the_hop_url() {
    let server = TestServer::start().await;
    let response = Client::new()
        .get(server.url("/redirect?status=302&to=next/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.url().path(), "/next/page");
    assert_eq!(server.paths(), ["/redirect", "/next/page"]);
}

#[tokio::test]
async fn redirect_without_location_is_returned_as_it_is() {
    let server = TestServer::start().await;
    let response = Client::new()
        .get(server.url("/redirect?status=302"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert!(response.history().is_empty());
}

#[tokio::test]
async fn redirect_to_an_unusable_location_is_returned_as_it_is() {
    let server = TestServer::start().await;
    let url = server.url(&format!(
        "/redirect?{}",
        serde_urlencoded::to_string([("status", "301"), ("to", "ftp://files.example.test/x")])
            .unwrap()
    ));
    let response = Client::new().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn follow_redirects_false_returns_the_3xx() {
    let server = TestServer::start().await;
    let response = Client::new()
        .get(server.url("/hops/1"))
        .follow_redirects(false)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn cross_origin_hop_drops_every_credential_header() {
    let first = TestServer::start().await;
    let second = TestServer::start().await;
    let client = Client::new();
    let url = first.url(&format!(
        "/redirect?status=307&to={}",
        second.url("/landing")
    ));
    client
        .get(url)
        .header("authorization", "Bearer one")
        .header("authorization", "Bearer two")
        .header("cookie", "session=1")
        .header("proxy-authorization", "Basic cHJveHk6c2VjcmV0")
        .header("x-kept", "yes")
        .send()
        .await
        .unwrap();
    let sent = &first.seen()[0].headers;
    assert_eq!(sent.get_all("authorization").iter().count(), 2);
    let landed = &second.seen()[0].headers;
    assert!(!landed.contains_key("authorization"));
    assert!(!landed.contains_key("cookie"));
    assert!(!landed.contains_key("proxy-authorization"));
    assert_eq!(landed["x-kept"], "yes");
}

#[tokio::test]
async fn same_origin_hop_keeps_credentials() {
    let server = TestServer::start().await;
    Client::new()
        .get(server.url("/hops/1"))
        .header("authorization", "Bearer kept")
        .send()
        .await
        .unwrap();
    assert_eq!(server.seen()[1].headers["authorization"], "Bearer kept");
}

#[tokio::test]
async fn header_a_middleware_sets_on_one_hop_is_not_sent_on_the_next() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .middleware(from_fn(|mut req: Request, next: Next| async move {
            if req.hop() == 0 {
                req.headers_mut()
                    .insert("x-first-hop-only", http::HeaderValue::from_static("1"));
            }
            next.run(req).await
        }))
        .build()
        .unwrap();
    client.get(server.url("/hops/1")).send().await.unwrap();
    let seen = server.seen();
    assert!(seen[0].headers.contains_key("x-first-hop-only"));
    assert!(!seen[1].headers.contains_key("x-first-hop-only"));
}

#[tokio::test]
async fn too_many_redirects_is_an_error_with_the_history() {
    let server = TestServer::start().await;
    let client = Client::builder().max_redirects(3).build().unwrap();
    let err = client.get(server.url("/loop")).send().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooManyRedirects);
    assert!(err.is_redirect());
    assert_eq!(err.redirect_history().unwrap().len(), 3);
    assert_eq!(server.seen().len(), 4);
}

#[tokio::test]
async fn default_redirect_limit_is_ten() {
    let server = TestServer::start().await;
    let ok = Client::new()
        .get(server.url("/hops/10"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.history().len(), 10);
    let err = Client::new()
        .get(server.url("/hops/11"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_redirect());
}

#[tokio::test]
async fn middleware_logs_through_the_same_client_without_middleware() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .base_url(&server.url("/"))
        .middleware(from_fn(|req: Request, next: Next| async move {
            let record = req.url().path().to_owned();
            next.client()
                .post("/log")
                .no_middleware()
                .body(record)
                .send()
                .await?;
            next.run(req).await
        }))
        .build()
        .unwrap();
    client.get("/a").send().await.unwrap();
    client.get("/b").send().await.unwrap();
    assert_eq!(server.paths(), ["/log", "/a", "/log", "/b"]);
    let logged: Vec<Bytes> = server
        .seen()
        .into_iter()
        .filter(|seen| seen.uri.path() == "/log")
        .map(|seen| seen.body)
        .collect();
    assert_eq!(logged, ["/a", "/b"]);
}

#[tokio::test]
async fn middleware_skipping_its_own_path_logs_through_the_client_list() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .base_url(&server.url("/"))
        .middleware(from_fn(|req: Request, next: Next| async move {
            if req.url().path() != "/log" {
                next.client().post("/log").send().await?;
            }
            next.run(req).await
        }))
        .build()
        .unwrap();
    client.get("/a").send().await.unwrap();
    assert_eq!(server.paths(), ["/log", "/a"]);
}

#[tokio::test]
async fn middleware_sends_its_own_request_through_a_chosen_list() {
    let server = TestServer::start().await;
    let log = Log::default();
    let side = Chain::new().with(recorder("side", &log));
    let client = Client::builder()
        .base_url(&server.url("/"))
        .middleware(from_fn(move |req: Request, next: Next| {
            let side = side.clone();
            async move {
                if req.url().path() == "/main" {
                    next.client().get("/side").middlewares(side).send().await?;
                }
                next.run(req).await
            }
        }))
        .build()
        .unwrap();
    client.get("/main").send().await.unwrap();
    assert_eq!(entries(&log), ["beforeside", "afterside"]);
    assert_eq!(server.paths(), ["/side", "/main"]);
}

#[tokio::test]
async fn chain_that_reenters_itself_fails_with_a_recursion_error() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .base_url(&server.url("/"))
        .max_nesting(4)
        .middleware(from_fn(|req: Request, next: Next| async move {
            next.client().get("/again").send().await?;
            next.run(req).await
        }))
        .build()
        .unwrap();
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        client.get("/start").send(),
    )
    .await
    .expect("the recursion ends by itself")
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Recursion);
    assert!(err.is_recursion());
    assert_eq!(err.recursion_depth(), Some(5));
    assert!(server.seen().is_empty(), "no request went out");
}

#[tokio::test]
async fn concurrent_requests_in_one_task_are_not_counted_as_nesting() {
    let server = TestServer::start().await;
    let client = Client::builder().max_nesting(1).build().unwrap();
    let requests = (0..20).map(|_| client.get(server.url("/")).send());
    let responses = futures_util::future::join_all(requests).await;
    assert!(responses.iter().all(|response| response.is_ok()));
}

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

#[tokio::test(start_paused = true)]
async fn whole_call_timeout_covers_time_spent_in_middlewares() {
    let client = Client::builder()
        .timeout(std::time::Duration::from_secs(1))
        .middleware(from_fn(|req: Request, next: Next| async move {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            next.run(req).await
        }))
        .build()
        .unwrap();
    let err = client
        .get("http://127.0.0.1:9/slow")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(err.url().unwrap().path(), "/slow");
}

trait TextStatus {
    async fn text_status(self) -> (StatusCode, String);
}

impl TextStatus for Response {
    async fn text_status(self) -> (StatusCode, String) {
        let status = self.status();
        (status, self.text().await.unwrap())
    }
}

/// Everything a log line could show of an error: its `Debug`, and the `Display` of every error
/// in its `source()` chain.
fn everything_shown(err: &stopover::client::Error) -> String {
    let mut shown = format!("{err:?}");
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(cause) = source {
        shown.push_str(&format!(" / {cause}"));
        source = cause.source();
    }
    shown
}

#[tokio::test]
async fn transport_error_never_shows_url_credentials_in_its_source_chain() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::builder()
        .middleware(from_fn(|mut req: Request, next: Next| async move {
            // Credentials in the URL reach reqwest, which puts the URL into its own error.
            req.url_mut().set_username("user").unwrap();
            req.url_mut().set_password(Some("hunter2")).unwrap();
            next.run(req).await
        }))
        .build()
        .unwrap();
    let err = client
        .get(format!("http://{addr}/gone"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    let shown = everything_shown(&err);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("/gone"), "the URL is still named: {shown}");
}

#[tokio::test]
async fn unsupported_scheme_error_hides_url_credentials() {
    let err = Client::new()
        .get("ftp://user:hunter2@files.example.test/x")
        .send()
        .await
        .unwrap_err();
    assert!(err.is_builder());
    assert!(!everything_shown(&err).contains("hunter2"), "{err}");
    assert!(err.to_string().contains("files.example.test"), "{err}");
}

#[tokio::test]
async fn location_without_fragment_inherits_the_fragment_of_the_redirected_url() {
    let server = TestServer::start().await;
    let response = Client::new()
        .get(server.url("/hops/2#section"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.url().path(), "/hops/0");
    assert_eq!(response.url().fragment(), Some("section"));
    let locations: Vec<Option<&str>> = response
        .history()
        .iter()
        .map(|redirect| redirect.location().fragment())
        .collect();
    assert_eq!(locations, [Some("section"), Some("section")]);
}

#[tokio::test]
async fn location_with_its_own_fragment_keeps_it() {
    let server = TestServer::start().await;
    let response = Client::new()
        .get(server.url("/redirect?status=302&to=/next%23own#mine"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.url().path(), "/next");
    assert_eq!(response.url().fragment(), Some("own"));
}

#[tokio::test]
async fn location_with_raw_utf8_is_followed_percent_encoded() {
    let server = TestServer::start().await;
    // The server sends `Location: /café` with the two UTF-8 bytes of `é` as they are.
    let response = Client::new()
        .get(server.url("/redirect?status=302&to=/caf%C3%A9"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(server.paths(), ["/redirect", "/caf%C3%A9"]);
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
async fn url_credentials_are_sent_as_basic_auth_and_taken_out_of_the_url() {
    let server = TestServer::start().await;
    let url = format!("http://us%65r:p%40ss@{}/private", server.addr);
    let response = Client::new().get(url).send().await.unwrap();
    // base64("user:p@ss")
    assert_eq!(
        server.seen()[0].headers["authorization"],
        "Basic dXNlcjpwQHNz"
    );
    assert_eq!(response.url().username(), "");
    assert_eq!(response.url().password(), None);
}

#[tokio::test]
async fn url_credentials_are_dropped_on_a_cross_origin_hop() {
    let first = TestServer::start().await;
    let second = TestServer::start().await;
    let url = format!(
        "http://user:secret@{}/redirect?status=302&to={}",
        first.addr,
        second.url("/landing")
    );
    Client::new().get(url).send().await.unwrap();
    assert!(first.seen()[0].headers.contains_key("authorization"));
    assert!(!second.seen()[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn basic_auth_sets_the_rfc_7617_header() {
    let server = TestServer::start().await;
    let client = Client::new();
    client
        .get(server.url("/"))
        .basic_auth("Aladdin", Some("open sesame"))
        .send()
        .await
        .unwrap();
    client
        .get(server.url("/"))
        .basic_auth("Aladdin", None::<&str>)
        .send()
        .await
        .unwrap();
    let seen = server.seen();
    assert_eq!(
        seen[0].headers["authorization"],
        "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
    );
    assert_eq!(seen[1].headers["authorization"], "Basic QWxhZGRpbjo=");
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
async fn cross_origin_hop_drops_credentials_from_the_default_headers() {
    let first = TestServer::start().await;
    let second = TestServer::start().await;
    let mut defaults = http::HeaderMap::new();
    defaults.insert("authorization", "Bearer default".parse().unwrap());
    defaults.insert("cookie", "session=default".parse().unwrap());
    defaults.insert("x-kept", "yes".parse().unwrap());
    let client = Client::builder().default_headers(defaults).build().unwrap();
    let url = first.url(&format!(
        "/redirect?status=302&to={}",
        second.url("/landing")
    ));
    client.get(url).send().await.unwrap();
    assert_eq!(first.seen()[0].headers["authorization"], "Bearer default");
    let landed = &second.seen()[0].headers;
    assert!(!landed.contains_key("authorization"));
    assert!(!landed.contains_key("cookie"));
    assert_eq!(landed["x-kept"], "yes");
}

#[tokio::test]
async fn credentials_are_not_restored_when_a_later_hop_returns_to_the_origin() {
    let home = TestServer::start().await;
    let away = TestServer::start().await;
    let back_home = away.url(&format!(
        "/redirect?{}",
        serde_urlencoded::to_string([("status", "302"), ("to", &home.url("/back"))]).unwrap()
    ));
    let url = home.url(&format!(
        "/redirect?{}",
        serde_urlencoded::to_string([("status", "302"), ("to", &back_home)]).unwrap()
    ));
    Client::new()
        .get(url)
        .header("authorization", "Bearer home")
        .send()
        .await
        .unwrap();
    let seen = home.seen();
    assert_eq!(home.paths(), ["/redirect", "/back"]);
    assert!(seen[0].headers.contains_key("authorization"));
    assert!(!seen[1].headers.contains_key("authorization"));
}

#[tokio::test]
async fn max_redirects_zero_makes_the_first_redirect_an_error() {
    let server = TestServer::start().await;
    let client = Client::builder().max_redirects(0).build().unwrap();
    let err = client.get(server.url("/hops/1")).send().await.unwrap_err();
    assert!(err.is_redirect());
    assert!(err.redirect_history().unwrap().is_empty());
    assert_eq!(server.paths(), ["/hops/1"]);
}

#[tokio::test]
async fn max_nesting_zero_is_refused_at_build() {
    let err = Client::builder().max_nesting(0).build().unwrap_err();
    assert!(err.is_builder());
    assert!(err.to_string().contains("max_nesting"), "{err}");
}

#[tokio::test]
async fn max_nesting_one_allows_the_request_but_no_nested_one() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .base_url(&server.url("/"))
        .max_nesting(1)
        .middleware(from_fn(|req: Request, next: Next| async move {
            if req.url().path() == "/outer" {
                let inner = next.client().get("/inner").no_middleware().send().await;
                assert!(inner.unwrap_err().is_recursion());
            }
            next.run(req).await
        }))
        .build()
        .unwrap();
    client.get("/outer").send().await.unwrap();
    assert_eq!(server.paths(), ["/outer"]);
}

#[tokio::test]
async fn original_url_stays_the_callers_after_a_middleware_changes_the_url() {
    let server = TestServer::start().await;
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let record = Arc::clone(&seen);
    let client = Client::builder()
        .middleware(from_fn(|mut req: Request, next: Next| async move {
            if req.hop() == 0 {
                req.url_mut().set_path("/hops/1");
            }
            next.run(req).await
        }))
        .middleware(from_fn(move |req: Request, next: Next| {
            record.lock().unwrap().push((
                req.url().path().to_owned(),
                req.original_url().path().to_owned(),
            ));
            next.run(req)
        }))
        .build()
        .unwrap();
    client.get(server.url("/asked")).send().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let expected = [("/hops/1", "/asked"), ("/hops/0", "/asked")]
        .map(|(url, original)| (url.to_owned(), original.to_owned()));
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn chain_that_reenters_itself_from_spawned_tasks_fails_with_a_recursion_error() {
    let server = TestServer::start().await;
    let client = Client::builder()
        .base_url(&server.url("/"))
        .max_nesting(4)
        .middleware(from_fn(|req: Request, next: Next| async move {
            let client = next.client().clone();
            let nested = tokio::spawn(async move { client.get("/again").send().await });
            nested
                .await
                .map_err(stopover::client::Error::middleware)??;
            next.run(req).await
        }))
        .build()
        .unwrap();
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        client.get("/start").send(),
    )
    .await
    .expect("the recursion ends by itself")
    .unwrap_err();
    assert!(err.is_recursion(), "{err:?}");
    assert_eq!(err.recursion_depth(), Some(5));
    assert!(server.seen().is_empty(), "no request went out");
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
async fn redirect_302_of_a_put_with_a_one_shot_stream_is_a_typed_error() {
    let server = TestServer::start().await;
    let url = server.url(&format!(
        "/redirect?status=302&to={}",
        server.url("/target")
    ));
    let err = Client::new()
        .put(url)
        .body(Body::wrap_stream(stream_body(&["a", "b"])))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_body_not_replayable(), "{err:?}");
    assert_eq!(server.count("/target"), 0, "never sent with an empty body");
}

#[tokio::test]
async fn cross_origin_hop_drops_a_host_header_the_caller_set() {
    let first = TestServer::start().await;
    let second = TestServer::start().await;
    let url = first.url(&format!(
        "/redirect?status=302&to={}",
        second.url("/landing")
    ));
    Client::new()
        .get(url)
        .header("host", "vhost.test")
        .send()
        .await
        .unwrap();
    assert_eq!(first.seen()[0].headers["host"], "vhost.test");
    let landed = second.seen()[0].headers["host"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(landed, second.addr.to_string());
}

#[tokio::test]
async fn url_credentials_are_refused_by_an_ssrf_policy_that_forbids_user_info() {
    use stopover::client::ssrf::Policy;
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let strict = Policy::builder().allow_addr(&addr).build().unwrap();
    let client = Client::builder().ssrf_policy(strict).build().unwrap();
    let err = client
        .get(format!("http://user:hunter2@{addr}/private"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_refused(), "{err:?}");
    assert_eq!(err.refusal().unwrap().rule().as_str(), "userinfo");
    assert!(!everything_shown(&err).contains("hunter2"));
    assert!(server.seen().is_empty());

    let lenient = Policy::builder()
        .allow_addr(&addr)
        .allow_userinfo(true)
        .build()
        .unwrap();
    let client = Client::builder().ssrf_policy(lenient).build().unwrap();
    client
        .get(format!("http://user:hunter2@{addr}/private"))
        .send()
        .await
        .unwrap();
    // base64("user:hunter2")
    assert_eq!(
        server.seen()[0].headers["authorization"],
        "Basic dXNlcjpodW50ZXIy"
    );
}

#[tokio::test]
async fn redirect_bodies_are_drained_so_every_hop_reuses_the_connection() {
    let server = TestServer::start().await;
    let response = Client::new()
        .get(server.url("/hops-with-body/3"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "done");
    assert_eq!(server.seen().len(), 4);
    assert_eq!(server.connections(), 1);
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
