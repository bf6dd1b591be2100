//! The middleware chain: order, request-level lists, re-entry and nesting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::StatusCode;
use stopover::client::{
    Chain, Client, ErrorKind, Middleware, Next, Request, Response, Result, from_fn,
};

use crate::support::TestServer;

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
