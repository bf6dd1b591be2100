//! `ShieldLayer` inside an axum router, over real loopback connections; clients that leave
//! mid-request are raw TCP streams that are dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::Method;
use axum::routing::{get, post};
use axum::{Extension, Router};
use stopover::server::matcher::{PathMatcher, PathRule, PathRules};
use stopover::server::shield::{ClientGone, ShieldConfigError, ShieldLayer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::support::serve;

/// Upper bound for anything a test waits for; reaching it is a failure, not a measurement.
const BOUND: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Counters {
    started: AtomicUsize,
    completed: AtomicUsize,
    dropped: AtomicUsize,
    release: Notify,
}

/// Counts a handler future that is dropped before it completes.
struct DropCounter(Arc<Counters>, bool);

impl Drop for DropCounter {
    fn drop(&mut self) {
        if !self.1 {
            self.0.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Starts, waits for its client to leave, then completes.
async fn wait_for_disconnect(
    Extension(counters): Extension<Arc<Counters>>,
    Extension(gone): Extension<ClientGone>,
) -> &'static str {
    let mut guard = DropCounter(counters.clone(), false);
    counters.started.fetch_add(1, Ordering::SeqCst);
    gone.gone().await;
    // Work after the client left must still run.
    tokio::task::yield_now().await;
    counters.completed.fetch_add(1, Ordering::SeqCst);
    guard.1 = true;
    "done"
}

/// Starts, then waits to be released.
async fn wait_for_release(Extension(counters): Extension<Arc<Counters>>) -> &'static str {
    let mut guard = DropCounter(counters.clone(), false);
    counters.started.fetch_add(1, Ordering::SeqCst);
    counters.release.notified().await;
    counters.completed.fetch_add(1, Ordering::SeqCst);
    guard.1 = true;
    "released"
}

/// Reports whether the request was shielded.
async fn shielded(request: Request) -> &'static str {
    if request.extensions().get::<ClientGone>().is_some() {
        "shielded"
    } else {
        "direct"
    }
}

fn app(counters: Arc<Counters>) -> Router {
    Router::new()
        .route(
            "/disconnect",
            post(wait_for_disconnect).get(wait_for_release),
        )
        .route("/release", post(wait_for_release).get(wait_for_release))
        .route("/shielded", get(shielded).post(shielded).put(shielded))
        .route("/a", post(shielded))
        .route("/b", post(shielded))
        .route("/stream/live", post(shielded))
        .route("/items/1", post(shielded))
        .route("/items/1/x", post(shielded))
        .route(
            "/panic",
            post(|| async {
                panic!("shielded handler failed");
                #[allow(unreachable_code)]
                ""
            }),
        )
        .layer(Extension(counters))
}

/// Sends a complete request on a raw connection and returns the open stream.
async fn open_request(addr: SocketAddr, method: &str, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Polls `condition` until it holds, failing the test after [`BOUND`].
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let waited = tokio::time::timeout(BOUND, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "gave up waiting for: {what}");
}

async fn status(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let response = client
        .request(method, format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap();
    let code = response.status().as_u16();
    (code, response.text().await.unwrap())
}

#[tokio::test]
async fn handlers_of_25_clients_that_disconnect_mid_request_all_complete() {
    const CLIENTS: usize = 25;
    let counters = Arc::new(Counters::default());
    let shield = ShieldLayer::builder().build().unwrap();
    let addr = serve(app(counters.clone()).layer(shield)).await;

    let mut streams = Vec::new();
    for _ in 0..CLIENTS {
        streams.push(open_request(addr, "POST", "/disconnect").await);
    }
    eventually("every handler started", || {
        counters.started.load(Ordering::SeqCst) == CLIENTS
    })
    .await;
    assert_eq!(counters.completed.load(Ordering::SeqCst), 0);
    drop(streams);

    eventually("every handler completed", || {
        counters.completed.load(Ordering::SeqCst) == CLIENTS
    })
    .await;
    assert_eq!(counters.dropped.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unshielded_handler_is_dropped_when_its_client_disconnects() {
    // The premise of the layer: without it, hyper drops the handler.
    let counters = Arc::new(Counters::default());
    let addr = serve(app(counters.clone())).await;
    let stream = open_request(addr, "POST", "/release").await;
    eventually("handler started", || {
        counters.started.load(Ordering::SeqCst) == 1
    })
    .await;
    drop(stream);
    eventually("handler dropped", || {
        counters.dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(counters.completed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn get_is_not_shielded_by_default() {
    let counters = Arc::new(Counters::default());
    let shield = ShieldLayer::builder().build().unwrap();
    let addr = serve(app(counters.clone()).layer(shield)).await;
    let stream = open_request(addr, "GET", "/release").await;
    eventually("handler started", || {
        counters.started.load(Ordering::SeqCst) == 1
    })
    .await;
    drop(stream);
    eventually("handler dropped", || {
        counters.dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(status(addr, "GET", "/shielded").await.1, "direct");
}

#[tokio::test]
async fn default_methods_are_post_put_patch_delete() {
    let shield = ShieldLayer::builder().build().unwrap();
    let addr = serve(app(Arc::default()).layer(shield)).await;
    assert_eq!(status(addr, "POST", "/shielded").await.1, "shielded");
    assert_eq!(status(addr, "PUT", "/shielded").await.1, "shielded");
    assert_eq!(status(addr, "GET", "/shielded").await.1, "direct");
}

#[tokio::test]
async fn configured_methods_replace_the_default() {
    let shield = ShieldLayer::builder()
        .methods([Method::GET])
        .build()
        .unwrap();
    let addr = serve(app(Arc::default()).layer(shield)).await;
    assert_eq!(status(addr, "GET", "/shielded").await.1, "shielded");
    assert_eq!(status(addr, "POST", "/shielded").await.1, "direct");
}

#[tokio::test]
async fn path_rules_limit_shielding() {
    let shield = ShieldLayer::builder()
        .paths(PathRules::new().with(PathMatcher::exact("/a").unwrap()))
        .build()
        .unwrap();
    let addr = serve(app(Arc::default()).layer(shield)).await;
    assert_eq!(status(addr, "POST", "/a").await.1, "shielded");
    assert_eq!(status(addr, "POST", "/b").await.1, "direct");
}

#[tokio::test]
async fn path_regex_does_not_match_as_a_prefix() {
    let shield = ShieldLayer::builder()
        .paths(PathRules::new().with(PathMatcher::regex(r"/items/\d+").unwrap()))
        .build()
        .unwrap();
    let addr = serve(app(Arc::default()).layer(shield)).await;
    assert_eq!(status(addr, "POST", "/items/1").await.1, "shielded");
    assert_eq!(status(addr, "POST", "/items/1/x").await.1, "direct");
}

#[tokio::test]
async fn ignore_rules_exclude_paths_and_method_pairs() {
    let shield = ShieldLayer::builder()
        .ignore(
            PathRules::new()
                .with(PathMatcher::prefix("/stream/").unwrap())
                .with(
                    PathRule::with_methods(
                        PathMatcher::exact("/shielded").unwrap(),
                        [axum::http::Method::PUT],
                    )
                    .unwrap(),
                ),
        )
        .build()
        .unwrap();
    let addr = serve(app(Arc::default()).layer(shield)).await;
    assert_eq!(status(addr, "POST", "/stream/live").await.1, "direct");
    assert_eq!(status(addr, "PUT", "/shielded").await.1, "direct");
    assert_eq!(status(addr, "POST", "/shielded").await.1, "shielded");
}

#[tokio::test]
async fn each_ignore_call_adds_its_rules_to_the_earlier_ones() {
    let shield = ShieldLayer::builder()
        .ignore(PathMatcher::prefix("/stream/").unwrap())
        .ignore(
            PathRule::with_methods(PathMatcher::exact("/shielded").unwrap(), [Method::PUT])
                .unwrap(),
        )
        .build()
        .unwrap();
    let addr = serve(app(Arc::default()).layer(shield)).await;
    assert_eq!(status(addr, "POST", "/stream/live").await.1, "direct");
    assert_eq!(status(addr, "PUT", "/shielded").await.1, "direct");
    assert_eq!(status(addr, "POST", "/shielded").await.1, "shielded");
}

#[tokio::test]
async fn client_gone_does_not_fire_for_an_answered_request() {
    let seen: Arc<Mutex<Option<ClientGone>>> = Arc::default();
    let kept = seen.clone();
    let router = Router::new()
        .route(
            "/",
            post(move |Extension(gone): Extension<ClientGone>| {
                let kept = kept.clone();
                async move {
                    *kept.lock().unwrap() = Some(gone);
                    "ok"
                }
            }),
        )
        .layer(ShieldLayer::builder().build().unwrap());
    let addr = serve(router).await;
    assert_eq!(status(addr, "POST", "/").await.0, 200);
    let gone = seen.lock().unwrap().clone().unwrap();
    assert!(!gone.is_gone());
}

#[tokio::test]
async fn shutdown_handle_waits_for_detached_shielded_work() {
    let counters = Arc::new(Counters::default());
    let shield = ShieldLayer::builder().build().unwrap();
    let handle = shield.handle();
    let addr = serve(app(counters.clone()).layer(shield)).await;

    let stream = open_request(addr, "POST", "/release").await;
    eventually("handler started", || {
        counters.started.load(Ordering::SeqCst) == 1
    })
    .await;
    drop(stream);
    assert_eq!(handle.in_flight(), 1);

    let completed_at_shutdown = {
        let counters = counters.clone();
        let handle = handle.clone();
        tokio::spawn(async move {
            handle.shutdown().await;
            counters.completed.load(Ordering::SeqCst)
        })
    };
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert!(!completed_at_shutdown.is_finished());
    counters.release.notify_one();
    let completed = tokio::time::timeout(BOUND, completed_at_shutdown)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(completed, 1);
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test]
async fn over_the_bound_a_request_gets_503_without_reaching_the_handler() {
    let counters = Arc::new(Counters::default());
    let shield = ShieldLayer::builder().max_in_flight(2).build().unwrap();
    let addr = serve(app(counters.clone()).layer(shield)).await;

    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(status(addr, "POST", "/release")))
        .collect();
    eventually("two handlers started", || {
        counters.started.load(Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(status(addr, "POST", "/release").await.0, 503);
    assert_eq!(counters.started.load(Ordering::SeqCst), 2);
    // Requests that are not shielded are not limited.
    assert_eq!(status(addr, "GET", "/shielded").await.0, 200);

    counters.release.notify_waiters();
    for request in held {
        assert_eq!(request.await.unwrap().0, 200);
    }
    assert_eq!(status(addr, "POST", "/shielded").await.1, "shielded");
}

#[tokio::test]
async fn a_detached_task_keeps_its_slot_until_it_finishes() {
    let counters = Arc::new(Counters::default());
    let shield = ShieldLayer::builder().max_in_flight(1).build().unwrap();
    let addr = serve(app(counters.clone()).layer(shield)).await;

    let stream = open_request(addr, "POST", "/release").await;
    eventually("handler started", || {
        counters.started.load(Ordering::SeqCst) == 1
    })
    .await;
    drop(stream);
    assert_eq!(status(addr, "POST", "/shielded").await.0, 503);

    counters.release.notify_one();
    eventually("handler completed", || {
        counters.completed.load(Ordering::SeqCst) == 1
    })
    .await;
    // The permit is released just after the handler returns.
    let mut code = 503;
    for _ in 0..100 {
        code = status(addr, "POST", "/shielded").await.0;
        if code == 200 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(code, 200);
}

#[tokio::test]
async fn panic_in_shielded_work_becomes_a_500() {
    let shield = ShieldLayer::builder().build().unwrap();
    let handle = shield.handle();
    let addr = serve(app(Arc::default()).layer(shield)).await;
    let (code, body) = status(addr, "POST", "/panic").await;
    assert_eq!(code, 500);
    assert_eq!(body, "");
    assert_eq!(handle.in_flight(), 0);
}

#[test]
fn empty_method_list_is_a_config_error() {
    let err = ShieldLayer::builder()
        .methods(Vec::<Method>::new())
        .build()
        .unwrap_err();
    assert!(matches!(err, ShieldConfigError::NoMethods));
}

#[tokio::test]
async fn shielded_work_is_dropped_once_it_outlives_its_client_by_the_bound() {
    let counters = Arc::new(Counters::default());
    let shield = ShieldLayer::builder()
        .max_outlive(Duration::from_millis(50))
        .build()
        .unwrap();
    let handle = shield.handle();
    let addr = serve(app(counters.clone()).layer(shield)).await;

    let stream = open_request(addr, "POST", "/release").await;
    eventually("handler started", || {
        counters.started.load(Ordering::SeqCst) == 1
    })
    .await;
    drop(stream);
    // Never released: only the bound ends it.
    eventually("handler dropped", || {
        counters.dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    eventually("slot freed", || handle.in_flight() == 0).await;
    assert_eq!(counters.completed.load(Ordering::SeqCst), 0);
}

/// Sends the head of a POST with a 1 MiB body, then one byte every 20 ms for as long as the
/// returned task runs; what the server answered goes to `answered`.
async fn trickle(
    addr: SocketAddr,
    path: &'static str,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<String>>) {
    use tokio::io::AsyncReadExt;
    let answered = Arc::new(Mutex::new(String::new()));
    let seen = answered.clone();
    let stream = TcpStream::connect(addr).await.unwrap();
    let task = tokio::spawn(async move {
        let (mut read, mut write) = stream.into_split();
        let head =
            format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 1048576\r\n\r\n");
        write.write_all(head.as_bytes()).await.unwrap();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0; 4096];
            while let Ok(n) = read.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        for _ in 0..1000 {
            if write.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        reader.abort();
    });
    (task, answered)
}

#[tokio::test]
async fn trickling_clients_behind_a_timeout_do_not_hold_shielded_work_past_the_bound() {
    let read_body = Router::new().route(
        "/upload",
        post(|body: axum::body::Bytes| async move { body.len().to_string() }),
    );
    let shield = ShieldLayer::builder()
        .max_outlive(Duration::from_millis(100))
        .build()
        .unwrap();
    let handle = shield.handle();
    let router = read_body.layer(shield).layer(
        stopover::server::TimeoutLayer::builder(Duration::from_millis(50))
            .build()
            .unwrap(),
    );
    let addr = serve(router).await;

    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(trickle(addr, "/upload").await);
    }
    for (_, answered) in &clients {
        let answered = answered.clone();
        eventually("504 from the timeout", move || {
            answered.lock().unwrap().starts_with("HTTP/1.1 504")
        })
        .await;
    }
    // The clients still trickle; the shielded handlers reading their bodies must end anyway.
    assert!(clients.iter().all(|(task, _)| !task.is_finished()));
    eventually("shielded work ended", || handle.in_flight() == 0).await;
    for (task, _) in clients {
        task.abort();
    }
}

#[tokio::test]
async fn by_default_1024_shielded_requests_may_be_in_flight() {
    use tower::{Layer, Service, ServiceExt};
    let shield = ShieldLayer::builder().build().unwrap();
    let mut service = shield.layer(never_answers());
    let mut pending = Vec::new();
    for _ in 0..1024 {
        let call = service.ready().await.unwrap().call(post_request());
        pending.push(call);
    }
    let refused = service.ready().await.unwrap().call(post_request()).await;
    assert_eq!(refused.unwrap().status(), 503);
    assert_eq!(shield.handle().in_flight(), 1024);
    drop(pending);
}

type Never = std::future::Pending<Result<http::Response<String>, std::convert::Infallible>>;

/// A service whose answer never comes, to hold shielded work in flight.
fn never_answers() -> impl tower::Service<
    http::Request<()>,
    Response = http::Response<String>,
    Error = std::convert::Infallible,
    Future = Never,
> {
    tower::service_fn(|_: http::Request<()>| std::future::pending())
}

fn post_request() -> http::Request<()> {
    http::Request::post("/orders").body(()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn by_default_shielded_work_may_outlive_its_client_by_30_seconds() {
    use tower::{Layer, Service, ServiceExt};
    let shield = ShieldLayer::builder().build().unwrap();
    let handle = shield.handle();
    let mut service = shield.layer(never_answers());
    let call = service.ready().await.unwrap().call(post_request());
    drop(call);
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(handle.in_flight(), 1, "dropped before 30 s");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(handle.in_flight(), 0, "still running after 30 s");
}

#[test]
fn zero_outlive_bound_is_a_config_error() {
    let err = ShieldLayer::builder()
        .max_outlive(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(matches!(err, ShieldConfigError::ZeroMaxOutlive));
}

#[test]
fn an_in_flight_bound_above_what_tokio_counts_is_a_config_error() {
    let err = ShieldLayer::builder()
        .max_in_flight(usize::MAX)
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        ShieldConfigError::MaxInFlightTooLarge {
            max: usize::MAX,
            ..
        }
    ));
}

#[test]
fn zero_bound_is_a_config_error() {
    let err = ShieldLayer::builder().max_in_flight(0).build().unwrap_err();
    assert!(matches!(err, ShieldConfigError::ZeroMaxInFlight));
}

#[test]
fn empty_path_rules_are_a_config_error() {
    let err = ShieldLayer::builder()
        .paths(PathRules::new())
        .build()
        .unwrap_err();
    assert!(matches!(err, ShieldConfigError::NoPaths));
}

#[tokio::test]
async fn panic_in_shielded_work_is_rendered_by_an_outer_error_layer() {
    let shield = ShieldLayer::builder().build().unwrap();
    let router = app(Arc::default())
        .layer(shield)
        .layer(stopover::server::ErrorLayer::new());
    let addr = serve(router).await;
    let (code, body) = status(addr, "POST", "/panic").await;
    assert_eq!(code, 500);
    assert!(body.contains("Internal Server Error"), "body: {body}");
}

#[tokio::test]
async fn shield_inside_a_timeout_keeps_the_work_going_after_the_504() {
    let counters = Arc::new(Counters::default());
    let router = app(counters.clone())
        .layer(ShieldLayer::builder().build().unwrap())
        .layer(
            stopover::server::TimeoutLayer::builder(Duration::from_millis(20))
                .build()
                .unwrap(),
        );
    let addr = serve(router).await;
    // The handler completes only once its response future has been dropped, which here is
    // the timeout's doing: the client is still connected when it gets the 504.
    let (code, _) = status(addr, "POST", "/disconnect").await;
    assert_eq!(code, 504);
    eventually("handler completed", || {
        counters.completed.load(Ordering::SeqCst) == 1
    })
    .await;
}

fn every_method_on(path: &str) -> ShieldLayer {
    ShieldLayer::builder()
        .all_methods()
        .paths(PathRules::new().with(PathMatcher::exact(path).unwrap()))
        .build()
        .unwrap()
}

fn every_method_app() -> Router {
    Router::new()
        .route("/upload", axum::routing::any(shielded))
        .route("/other", axum::routing::any(shielded))
}

#[tokio::test]
async fn all_methods_shields_a_post_on_a_listed_path() {
    let addr = serve(every_method_app().layer(every_method_on("/upload"))).await;
    assert_eq!(status(addr, "POST", "/upload").await.1, "shielded");
}

#[tokio::test]
async fn all_methods_shields_a_get_on_a_listed_path() {
    let addr = serve(every_method_app().layer(every_method_on("/upload"))).await;
    assert_eq!(status(addr, "GET", "/upload").await.1, "shielded");
}

#[tokio::test]
async fn all_methods_shields_a_custom_method_on_a_listed_path() {
    let addr = serve(every_method_app().layer(every_method_on("/upload"))).await;
    assert_eq!(status(addr, "PURGE", "/upload").await.1, "shielded");
}

#[tokio::test]
async fn all_methods_leaves_an_unlisted_path_unshielded() {
    let addr = serve(every_method_app().layer(every_method_on("/upload"))).await;
    assert_eq!(status(addr, "POST", "/other").await.1, "direct");
    assert_eq!(status(addr, "GET", "/other").await.1, "direct");
}

#[tokio::test]
async fn all_methods_runs_a_get_to_completion_after_its_client_left() {
    let counters = Arc::new(Counters::default());
    let app = Router::new()
        .route("/upload", axum::routing::any(wait_for_disconnect))
        .layer(Extension(counters.clone()))
        .layer(every_method_on("/upload"));
    let addr = serve(app).await;
    let stream = open_request(addr, "GET", "/upload").await;
    eventually("handler started", || {
        counters.started.load(Ordering::SeqCst) == 1
    })
    .await;
    drop(stream);
    eventually("handler completed", || {
        counters.completed.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(counters.dropped.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_later_methods_call_replaces_all_methods() {
    let shield = ShieldLayer::builder()
        .all_methods()
        .methods([Method::POST])
        .paths(PathRules::new().with(PathMatcher::exact("/upload").unwrap()))
        .build()
        .unwrap();
    let addr = serve(every_method_app().layer(shield)).await;
    assert_eq!(status(addr, "POST", "/upload").await.1, "shielded");
    assert_eq!(status(addr, "GET", "/upload").await.1, "direct");
}

#[tokio::test]
async fn methods_and_paths_together_still_need_both() {
    let shield = ShieldLayer::builder()
        .paths(PathRules::new().with(PathMatcher::exact("/upload").unwrap()))
        .build()
        .unwrap();
    let addr = serve(every_method_app().layer(shield)).await;
    assert_eq!(status(addr, "POST", "/upload").await.1, "shielded");
    assert_eq!(status(addr, "GET", "/upload").await.1, "direct");
    assert_eq!(status(addr, "POST", "/other").await.1, "direct");
}
