//! Server layer cost, in process: the same leaf service bare, under tower-http 0.6 and 0.7
//! (CORS, timeout, catch-panic) and under stopover (forwarded, CORS, error, timeout), for a request without
//! `Origin`, a simple CORS request and a preflight.
//!
//! Every request goes through `svc.clone().oneshot(req)` on a current-thread runtime, which is
//! what `axum::serve` (hyper-util's `TowerToHyperService`) does per request, so the cost of
//! cloning each stack is counted. Building the request is not: criterion times only the call
//! (`iter_batched`), and the allocation counts are taken over requests built beforehand.
//!
//! `cargo bench -p stopover-benches --bench server_layers` prints the allocation tables first, then criterion's times.

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, criterion_group};
use http::{HeaderValue, Method, Request, Response, Uri, header};
use http_body_util::Full;
use stopover::server::forwarded::PeerAddr;
use tower::{Service, ServiceBuilder, ServiceExt};

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

const ORIGIN: &str = "https://app.example";
const TIMEOUT: Duration = Duration::from_secs(30);
const ALLOCATION_REQUESTS: usize = 2_000;
const PROFILE_REQUESTS: usize = 20_000;
const DIRECT_CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)), 50_000);

type Body = Full<Bytes>;

/// The handler every stack wraps: a small text response, with the `Content-Type` a real
/// handler would set (so the response's `HeaderMap` exists before any layer touches it).
async fn leaf(_req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"hello")));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    Ok(response)
}

/// The request shapes every stack answers.
#[derive(Clone, Copy)]
enum Shape {
    NoOrigin,
    SimpleCors,
    Preflight,
}

impl Shape {
    const ALL: [Shape; 3] = [Shape::NoOrigin, Shape::SimpleCors, Shape::Preflight];

    fn name(self) -> &'static str {
        match self {
            Shape::NoOrigin => "no-origin",
            Shape::SimpleCors => "simple-cors",
            Shape::Preflight => "preflight",
        }
    }

    /// The request as hyper hands it to a service: the URI and every header value are slices
    /// of the one buffer the head was read into, so cloning them bumps a reference count
    /// instead of copying (a `Request::builder()` URI would allocate on its first clone).
    fn request(self) -> Request<Body> {
        let (method, extra): (Method, &[(header::HeaderName, &str)]) = match self {
            Shape::NoOrigin => (Method::GET, &[]),
            Shape::SimpleCors => (Method::GET, &[(header::ORIGIN, ORIGIN)]),
            Shape::Preflight => (
                Method::OPTIONS,
                &[
                    (header::ORIGIN, ORIGIN),
                    (header::ACCESS_CONTROL_REQUEST_METHOD, "PUT"),
                    (header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type"),
                ],
            ),
        };
        let fields = [
            (header::HOST, "api.example"),
            (header::USER_AGENT, "bench/1"),
            (header::ACCEPT, "*/*"),
        ];
        let mut text = String::from("/api/items?page=1");
        for (_, value) in fields.iter().chain(extra) {
            text.push_str(value);
        }
        let mut buffer = BytesMut::from(text.as_bytes());
        let head = buffer.split_to(text.len()).freeze();
        let mut at = "/api/items?page=1".len();
        let uri = Uri::from_maybe_shared(head.slice(..at)).expect("a valid URI");
        let mut request = Request::new(Body::default());
        // Where a server knows the peer from (`PeerAddr`, or axum's `ConnectInfo`): a direct
        // client, not a trusted proxy, with no forwarded headers. Only stopover's forwarded
        // layer reads it; without it, that layer would have nothing to work from.
        request.extensions_mut().insert(PeerAddr(DIRECT_CLIENT));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        for (name, value) in fields.iter().chain(extra) {
            let value = head.slice(at..at + value.len());
            at += value.len();
            let value = HeaderValue::from_maybe_shared(value).expect("a valid header value");
            request.headers_mut().append(name.clone(), value);
        }
        request
    }
}

/// One origin, the methods and headers a JSON API needs, a max age: the same policy on both
/// sides. `$crate_name` is `tower_http` (0.6) or `tower_http_07` (0.7): the two versions have
/// the same API for the layers compared here.
macro_rules! tower_http_cors {
    ($crate_name:ident) => {
        $crate_name::cors::CorsLayer::new()
            .allow_origin(HeaderValue::from_static(ORIGIN))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([header::CONTENT_TYPE])
            .max_age(Duration::from_secs(600))
    };
}

/// tower-http's CORS, catch-panic and timeout, outermost first.
macro_rules! tower_http_stack {
    ($crate_name:ident) => {
        ServiceBuilder::new()
            .layer(tower_http_cors!($crate_name))
            .layer($crate_name::catch_panic::CatchPanicLayer::new())
            .layer($crate_name::timeout::TimeoutLayer::with_status_code(
                http::StatusCode::GATEWAY_TIMEOUT,
                TIMEOUT,
            ))
    };
}

fn stopover_cors() -> stopover::server::CorsLayer {
    stopover::server::CorsLayer::builder()
        .allow_origin(ORIGIN)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers(["content-type"])
        .max_age(Duration::from_secs(600))
        .build()
        .expect("a valid CORS policy")
}

fn stopover_forwarded() -> stopover::server::ForwardedLayer {
    stopover::server::ForwardedLayer::builder()
        .x_forwarded()
        .build()
        .expect("a valid forwarded policy")
}

fn stopover_timeout() -> stopover::server::TimeoutLayer {
    stopover::server::TimeoutLayer::builder(TIMEOUT)
        .build()
        .expect("a non-zero timeout")
}

macro_rules! stacks {
    ($run:ident) => {{
        let leaf = tower::service_fn(leaf);
        $run!("bare", leaf);
        $run!(
            "tower-http 0.6",
            tower_http_stack!(tower_http).service(leaf)
        );
        $run!(
            "tower-http 0.7",
            tower_http_stack!(tower_http_07).service(leaf)
        );
        // The recommended order: forwarded, CORS, error, timeout.
        $run!(
            "stopover",
            ServiceBuilder::new()
                .layer(stopover_forwarded())
                .layer(stopover_cors())
                .layer(stopover::server::ErrorLayer::new())
                .layer(stopover_timeout())
                .service(leaf)
        );
    }};
}

/// The same stacks as `axum::serve` runs them in `benches/server_loopback.rs`: an axum
/// `Router` with one route, layers added with `Router::layer` (which boxes each layered route
/// and maps every response body into axum's `Body`), routes made once ([`served`]). The stopover stack is in the recommended
/// order here, which `Router::layer` allows.
macro_rules! axum_stacks {
    ($run:ident) => {{
        $run!("axum", served(axum_routes()));
        $run!(
            "axum + tower-http 0.6",
            served(axum_routes().layer(tower_http_stack!(tower_http)))
        );
        $run!(
            "axum + tower-http 0.7",
            served(axum_routes().layer(tower_http_stack!(tower_http_07)))
        );
        // One `Router::layer` call per stack, as for tower-http: each call boxes the route
        // again. The recommended order: forwarded, CORS, error, timeout.
        $run!(
            "axum + stopover",
            served(
                axum_routes().layer(
                    ServiceBuilder::new()
                        .layer(stopover_forwarded())
                        .layer(stopover_cors())
                        .layer(stopover::server::ErrorLayer::new())
                        .layer(stopover_timeout())
                )
            )
        );
    }};
}

/// What a `Router::layer` call costs: stopover's four layers in the recommended order, one
/// `Router::layer` call each (allocation table and profile only).
macro_rules! axum_layer_calls {
    ($run:ident) => {{
        $run!(
            "axum + stopover, 4 layer calls",
            served(
                axum_routes()
                    .layer(stopover_timeout())
                    .layer(stopover::server::ErrorLayer::new())
                    .layer(stopover_cors())
                    .layer(stopover_forwarded())
            )
        );
    }};
}

/// The router as `axum::serve` runs it: `into_make_service` calls `Router::with_state(())`
/// once, which turns every handler (and the layers around it) into a route up front. A
/// `Router` called directly, as this benchmark did before, builds each layered route again on
/// every request (cloning every layer); `SERVER_LAYERS_ROUTES_PER_REQUEST=1` measures it that
/// way.
fn served(router: axum::Router) -> axum::Router {
    if std::env::var_os("SERVER_LAYERS_ROUTES_PER_REQUEST").is_some() {
        router
    } else {
        router.with_state(())
    }
}

fn axum_routes() -> axum::Router {
    axum::Router::new().route(
        "/api/items",
        axum::routing::get(|| async {
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "hello",
            )
        }),
    )
}

/// One layer at a time around the leaf, to see where each stack's allocations come from.
macro_rules! single_layers {
    ($run:ident) => {{
        let leaf = tower::service_fn(leaf);
        $run!(
            "tower-http cors",
            ServiceBuilder::new()
                .layer(tower_http_cors!(tower_http))
                .service(leaf)
        );
        $run!(
            "tower-http 0.7 cors",
            ServiceBuilder::new()
                .layer(tower_http_cors!(tower_http_07))
                .service(leaf)
        );
        $run!(
            "tower-http catch-panic",
            ServiceBuilder::new()
                .layer(tower_http::catch_panic::CatchPanicLayer::new())
                .service(leaf)
        );
        $run!(
            "tower-http timeout",
            ServiceBuilder::new()
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    http::StatusCode::GATEWAY_TIMEOUT,
                    TIMEOUT,
                ))
                .service(leaf)
        );
        $run!(
            "stopover forwarded",
            ServiceBuilder::new()
                .layer(stopover_forwarded())
                .service(leaf)
        );
        $run!(
            "stopover cors",
            ServiceBuilder::new().layer(stopover_cors()).service(leaf)
        );
        $run!(
            "stopover error",
            ServiceBuilder::new()
                .layer(stopover::server::ErrorLayer::new())
                .service(leaf)
        );
        $run!(
            "stopover timeout",
            ServiceBuilder::new()
                .layer(stopover_timeout())
                .service(leaf)
        );
    }};
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Allocations per `svc.clone().oneshot(req)`, response dropped, over requests built beforehand.
fn allocations<S, B>(rt: &tokio::runtime::Runtime, service: &S, shape: Shape) -> f64
where
    S: Service<Request<Body>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let mut warm_up: Vec<_> = (0..100).map(|_| shape.request()).collect();
        let mut requests: Vec<_> = (0..ALLOCATION_REQUESTS).map(|_| shape.request()).collect();
        for req in warm_up.drain(..) {
            black_box(service.clone().oneshot(req).await.expect("answered"));
        }
        let (before, _) = counting_alloc::snapshot();
        for req in requests.drain(..) {
            black_box(service.clone().oneshot(req).await.expect("answered"));
        }
        let (after, _) = counting_alloc::snapshot();
        (after - before) as f64 / ALLOCATION_REQUESTS as f64
    })
}

fn print_allocations() {
    let rt = runtime();
    println!("allocations per request (exact, counting allocator; request building excluded)");
    println!("| stack | no Origin | simple CORS | preflight |");
    println!("|---|---|---|---|");
    macro_rules! row {
        ($name:expr, $service:expr) => {{
            let service = $service;
            let counts: Vec<String> = Shape::ALL
                .iter()
                .map(|&shape| format!("{:.1}", allocations(&rt, &service, shape)))
                .collect();
            println!("| {} | {} |", $name, counts.join(" | "));
        }};
    }
    stacks!(row);
    axum_stacks!(row);
    axum_layer_calls!(row);
    single_layers!(row);
    println!();
}

fn bench_layers(c: &mut Criterion) {
    let rt = runtime();
    for shape in Shape::ALL {
        let mut group = c.benchmark_group(format!("server_layers/{}", shape.name()));
        macro_rules! bench {
            ($name:expr, $service:expr) => {{
                let service = $service;
                group.bench_function($name, |b| {
                    b.to_async(&rt).iter_batched(
                        || shape.request(),
                        |req| service.clone().oneshot(req),
                        BatchSize::SmallInput,
                    )
                });
            }};
        }
        stacks!(bench);
        axum_stacks!(bench);
        // CORS against CORS, the one feature both stacks have that does real work per request.
        let leaf = tower::service_fn(leaf);
        bench!(
            "tower-http 0.6 cors",
            ServiceBuilder::new()
                .layer(tower_http_cors!(tower_http))
                .service(leaf)
        );
        bench!(
            "tower-http 0.7 cors",
            ServiceBuilder::new()
                .layer(tower_http_cors!(tower_http_07))
                .service(leaf)
        );
        bench!(
            "stopover cors",
            ServiceBuilder::new().layer(stopover_cors()).service(leaf)
        );
        group.finish();
    }
}

/// `SERVER_LAYERS_PROFILE=<stack>/<shape>`: answers `PROFILE_REQUESTS` requests with one stack
/// and exits, for `valgrind --tool=callgrind` (instruction counts do not depend on the machine's
/// noise); `requests/<shape>` only builds the requests, to subtract. `benches/instructions.sh`
/// runs them all. `SERVER_LAYERS_PROFILE=sizes` prints the size of each stack's response future.
fn profile(target: &str) {
    let rt = runtime();
    if target == "sizes" {
        // The bytes each stack's response future takes: what every layer outside it moves, and
        // what `Router::layer` boxes per request.
        macro_rules! size {
            ($name:expr, $service:expr) => {{
                let service = $service;
                let future = service.clone().oneshot(Shape::NoOrigin.request());
                println!("| {} | {} |", $name, std::mem::size_of_val(&future));
            }};
        }
        println!("| stack | response future, bytes |");
        println!("|---|---|");
        stacks!(size);
        single_layers!(size);
        // What `Router::layer` boxes per request: the stack's future around axum's route future.
        macro_rules! routed {
            ($name:expr, $layers:expr) => {{
                let future = $layers
                    .service(axum_routes())
                    .oneshot(Request::new(axum::body::Body::empty()));
                println!(
                    "| {} around a Router | {} |",
                    $name,
                    std::mem::size_of_val(&future)
                );
            }};
        }
        println!(
            "| axum's Router alone | {} |",
            std::mem::size_of_val(&axum_routes().oneshot(Request::new(axum::body::Body::empty())))
        );
        routed!("tower-http 0.6", tower_http_stack!(tower_http));
        routed!("tower-http 0.7", tower_http_stack!(tower_http_07));
        routed!(
            "stopover",
            ServiceBuilder::new()
                .layer(stopover_forwarded())
                .layer(stopover_cors())
                .layer(stopover::server::ErrorLayer::new())
                .layer(stopover_timeout())
        );
        return;
    }
    for shape in Shape::ALL {
        if target == format!("requests/{}", shape.name()) {
            rt.block_on(async {
                for _ in 0..PROFILE_REQUESTS {
                    black_box(shape.request());
                }
            });
        }
    }
    macro_rules! run {
        ($name:expr, $service:expr) => {{
            let service = $service;
            for shape in Shape::ALL {
                if target == format!("{}/{}", $name, shape.name()) {
                    rt.block_on(async {
                        for _ in 0..PROFILE_REQUESTS {
                            let req = shape.request();
                            black_box(service.clone().oneshot(req).await.expect("answered"));
                        }
                    });
                }
            }
        }};
    }
    stacks!(run);
    axum_stacks!(run);
    axum_layer_calls!(run);
    single_layers!(run);
}

criterion_group!(benches, bench_layers);

fn main() {
    if let Ok(target) = std::env::var("SERVER_LAYERS_PROFILE") {
        profile(&target);
        return;
    }
    print_allocations();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
