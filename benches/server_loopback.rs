//! Server throughput over loopback: bare axum (also served with connect info, as stopover's
//! stack is), axum with tower-http 0.6 and 0.7 (CORS, catch-panic, timeout) and axum with
//! stopover's stack (forwarded, CORS, error, timeout), each served by `axum::serve` on
//! 127.0.0.1 and driven by `wrk` (2 threads, 32 keep-alive connections).
//!
//! Each run is bounded (5 s, 3 runs per stack, the stacks interleaved so that a noisy moment
//! hurts all of them alike); the figure is the median requests per second and its ratio to bare
//! axum. Without `wrk` on the `PATH` the benchmark says so and exits: `benches/loopback.sh`
//! installs it (Debian's `wrk` package) and runs this benchmark.
//!
//! `cargo bench -p stopover-benches --bench server_loopback -- --test` does one 1 s run per stack, to check that
//! everything works.

#[path = "support/cpu_time.rs"]
mod cpu_time;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http::{HeaderValue, Method, StatusCode, header};
use tower::ServiceBuilder;

const ORIGIN: &str = "https://app.example";
const TIMEOUT: Duration = Duration::from_secs(30);

async fn hello() -> &'static str {
    "hello"
}

fn routes() -> Router {
    Router::new().route("/api/items", get(hello))
}

/// tower-http's CORS, catch-panic and timeout around the routes; `$crate_name` is
/// `tower_http` (0.6) or `tower_http_07` (0.7): the two versions have the same API for these.
macro_rules! tower_http_app {
    ($crate_name:ident) => {
        routes().layer(
            ServiceBuilder::new()
                .layer(
                    $crate_name::cors::CorsLayer::new()
                        .allow_origin(HeaderValue::from_static(ORIGIN))
                        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                        .allow_headers([header::CONTENT_TYPE])
                        .max_age(Duration::from_secs(600)),
                )
                .layer($crate_name::catch_panic::CatchPanicLayer::new())
                .layer($crate_name::timeout::TimeoutLayer::with_status_code(
                    StatusCode::GATEWAY_TIMEOUT,
                    TIMEOUT,
                )),
        )
    };
}

fn stopover_app() -> Router {
    let forwarded = stopover::server::ForwardedLayer::builder()
        .x_forwarded()
        .peer_addr_with(|extensions| {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip())
        })
        .build()
        .expect("a valid forwarded policy");
    let cors = stopover::server::CorsLayer::builder()
        .allow_origin(ORIGIN)
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers(["content-type"])
        .max_age(Duration::from_secs(600))
        .build()
        .expect("a valid CORS policy");
    let timeout = stopover::server::TimeoutLayer::builder(TIMEOUT)
        .build()
        .expect("a non-zero timeout");
    // One `Router::layer` call, as for tower-http (each call boxes the route again), in the
    // recommended order: forwarded, CORS, error, timeout.
    routes().layer(
        ServiceBuilder::new()
            .layer(forwarded)
            .layer(cors)
            .layer(stopover::server::ErrorLayer::new())
            .layer(timeout),
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Stack {
    Bare,
    /// Bare axum served with `into_make_service_with_connect_info`, as stopover's stack is: what
    /// the peer address costs by itself.
    BareConnectInfo,
    TowerHttp,
    TowerHttp07,
    Stopover,
}

impl Stack {
    const ALL: [Stack; 5] = [
        Stack::Bare,
        Stack::BareConnectInfo,
        Stack::TowerHttp,
        Stack::TowerHttp07,
        Stack::Stopover,
    ];

    fn name(self) -> &'static str {
        match self {
            Stack::Bare => "bare axum",
            Stack::BareConnectInfo => "bare axum, with connect info",
            Stack::TowerHttp => "axum + tower-http 0.6",
            Stack::TowerHttp07 => "axum + tower-http 0.7",
            Stack::Stopover => "axum + stopover",
        }
    }
}

/// Serves `stack` on 127.0.0.1 from a runtime of its own (2 worker threads, like the client's
/// `wrk -t2`), until the returned sender is dropped.
fn serve(
    stack: Stack,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let addr = listener.local_addr().expect("the bound address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        runtime.block_on(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            let served = match stack {
                Stack::Bare => {
                    axum::serve(listener, routes())
                        .with_graceful_shutdown(shutdown)
                        .await
                }
                Stack::BareConnectInfo => {
                    axum::serve(
                        listener,
                        routes().into_make_service_with_connect_info::<SocketAddr>(),
                    )
                    .with_graceful_shutdown(shutdown)
                    .await
                }
                Stack::TowerHttp => {
                    axum::serve(listener, tower_http_app!(tower_http))
                        .with_graceful_shutdown(shutdown)
                        .await
                }
                Stack::TowerHttp07 => {
                    axum::serve(listener, tower_http_app!(tower_http_07))
                        .with_graceful_shutdown(shutdown)
                        .await
                }
                // The forwarded layer needs the peer address: the connect-info service is part
                // of stopover's cost.
                Stack::Stopover => {
                    axum::serve(
                        listener,
                        stopover_app().into_make_service_with_connect_info::<SocketAddr>(),
                    )
                    .with_graceful_shutdown(shutdown)
                    .await
                }
            };
            served.expect("the server runs");
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
    });
    (addr, stop, thread)
}

/// What one `wrk` run reports, plus the server's CPU time per request.
struct Run {
    rps: f64,
    p99: String,
    cpu_us_per_request: f64,
}

/// Runs `wrk` against `addr` for `seconds`.
fn wrk(addr: SocketAddr, seconds: u64, origin: bool) -> Run {
    let cpu_before = cpu_time::process_cpu_ns();
    let mut command = Command::new("wrk");
    command.args(["-t2", "-c32", &format!("-d{seconds}s"), "--latency"]);
    if origin {
        command.args(["-H", &format!("Origin: {ORIGIN}")]);
    }
    let output = command
        .arg(format!("http://{addr}/api/items"))
        .output()
        .expect("wrk runs");
    let cpu_ns = cpu_time::process_cpu_ns() - cpu_before;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("Non-2xx"),
        "every response must be a 200:\n{text}"
    );
    let rps = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"));
    let p99 = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("99%"))
        .map(|value| value.trim().to_owned())
        .unwrap_or_default();
    // "  335012 requests in 5.00s, 30.67MB read"
    let requests: f64 = text
        .lines()
        .find_map(|line| line.trim().split_once(" requests in "))
        .and_then(|(count, _)| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{text}"));
    Run {
        rps,
        p99,
        cpu_us_per_request: cpu_ns as f64 / 1_000.0 / requests,
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--test");
    if Command::new("wrk").arg("--version").output().is_err() {
        println!(
            "server_loopback: wrk is not installed; `benches/loopback.sh` installs it and runs \
             this benchmark"
        );
        return;
    }
    let (runs, seconds) = if quick { (1, 1) } else { (3, 5) };
    for (origin, label) in [(false, "GET without Origin"), (true, "simple CORS GET")] {
        let mut rps = vec![Vec::new(); Stack::ALL.len()];
        let mut p99 = vec![Vec::new(); Stack::ALL.len()];
        let mut cpu = vec![Vec::new(); Stack::ALL.len()];
        for _ in 0..runs {
            for (index, stack) in Stack::ALL.into_iter().enumerate() {
                let (addr, stop, thread) = serve(stack);
                // A short warm-up: connections, allocator and caches.
                wrk(addr, 1, origin);
                let run = wrk(addr, seconds, origin);
                rps[index].push(run.rps);
                p99[index].push(run.p99);
                cpu[index].push(run.cpu_us_per_request);
                drop(stop);
                thread.join().expect("the server thread ends");
            }
        }
        let base = median(&mut rps[0].clone());
        let base_cpu = median(&mut cpu[0].clone());
        println!("server over loopback, {label}: wrk -t2 -c32, {runs} x {seconds} s");
        println!(
            "| stack | req/s (median) | runs | p99 per run | ratio to bare axum | \
             server CPU µs/req | over bare axum |"
        );
        println!("|---|---|---|---|---|---|---|");
        for (index, stack) in Stack::ALL.into_iter().enumerate() {
            let runs: Vec<String> = rps[index].iter().map(|v| format!("{v:.0}")).collect();
            let value = median(&mut rps[index]);
            let cpu = median(&mut cpu[index]);
            println!(
                "| {} | {value:.0} | {} | {} | {:.3} | {cpu:.2} | {:+.2} |",
                stack.name(),
                runs.join(", "),
                p99[index].join(", "),
                value / base,
                cpu - base_cpu
            );
        }
        println!();
    }
}
