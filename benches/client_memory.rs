//! Memory, measured with the counting allocator's live and peak bytes (exact for a given run;
//! allocations of every thread, the in-process server's included).
//!
//! 1. **Per request in flight**: `N` GETs (256, then 1 000) held in flight at once against a
//!    server that answers none of them until the `N`-th has arrived; at that moment the server
//!    reads the live heap bytes, then answers them all. The connections are opened by a first
//!    round of the same kind, so the figure is what a request in flight costs on a pooled
//!    connection (the client's task and request state plus the server's, the same for every
//!    client): live bytes at the `N`-th arrival minus live bytes just before the requests were
//!    spawned, divided by `N`. The size of the `send()` future is given with it: each
//!    caller's task holds one (what the middlewares box comes on top).
//! 2. **A 16 MiB body sent with retry**: a `PUT` of a buffered 16 MiB body (`Bytes`) to a server
//!    that reads every body to its end without keeping it and answers `503` to the first
//!    attempt and `200` to the second, so the body is sent twice; the peak heap above the
//!    baseline (taken with the body already allocated) as a fraction of 16 MiB. A replay that
//!    copied the body would show about 1.0; backoff is zero for both retrying clients.
//!
//! The clients are those of `support/clients.rs` (no tracing subscriber installed), each
//! freshly built for each measurement and dropped after it.
//!
//! `cargo bench -p stopover-benches --bench client_memory` prints the tables; `-- --test` does
//! one short run of each.

#[path = "support/clients.rs"]
mod clients;
#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[allow(dead_code)] // load.rs reads the CPU time; this bench does not report it
#[path = "support/cpu_time.rs"]
mod cpu_time;
#[path = "support/load.rs"]
mod load;
#[path = "support/server.rs"]
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use clients::Stack;
use http::{Method, StatusCode};
use load::median;
use tokio::sync::Notify;

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

const BODY_BYTES: usize = 16 * 1024 * 1024;

/// Holds requests until `size` of them have arrived, then notes the live bytes and lets them
/// all through.
struct Gate {
    size: AtomicUsize,
    arrived: AtomicUsize,
    live_when_full: AtomicI64,
    open: Notify,
}

fn serve_gate(gate: Arc<Gate>) -> SocketAddr {
    server::serve(move |_req| {
        let gate = gate.clone();
        async move {
            let notified = gate.open.notified();
            tokio::pin!(notified);
            // Registered before counting, so the last arrival's wake-up reaches this one.
            notified.as_mut().enable();
            let arrived = gate.arrived.fetch_add(1, Ordering::SeqCst) + 1;
            if arrived == gate.size.load(Ordering::SeqCst) {
                gate.live_when_full
                    .store(counting_alloc::live(), Ordering::SeqCst);
                gate.arrived.store(0, Ordering::SeqCst);
                gate.open.notify_waiters();
            } else {
                notified.await;
            }
            server::hello()
        }
    })
}

/// Live bytes per request with `in_flight` requests held at the gate.
fn per_request_in_flight(
    rt: &tokio::runtime::Runtime,
    gate: &Gate,
    stack: &Stack,
    url: &str,
    in_flight: usize,
) -> f64 {
    gate.size.store(in_flight, Ordering::SeqCst);
    // Opens `in_flight` connections (each held request needs its own) and fetches the token;
    // the second round and the pauses let every connection go back to the pool (the client's
    // connection tasks run only while its runtime does), so the measured round opens none.
    for _ in 0..2 {
        load::run(rt, stack, url, in_flight, in_flight);
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    }
    let before = counting_alloc::live();
    load::run(rt, stack, url, in_flight, in_flight);
    let at_full = gate.live_when_full.load(Ordering::SeqCst);
    (at_full - before) as f64 / in_flight as f64
}

/// Answers `503` to the even attempts and `200` to the odd ones, after reading the whole body.
fn serve_flaky_upload(attempts: Arc<AtomicU64>) -> SocketAddr {
    server::serve(move |req| {
        let attempts = attempts.clone();
        async move {
            let is_upload = req.method() == Method::PUT;
            let length = server::drain(req).await;
            if !is_upload {
                return server::hello();
            }
            assert_eq!(length, BODY_BYTES as u64, "the whole body arrived");
            if attempts.fetch_add(1, Ordering::SeqCst).is_multiple_of(2) {
                server::empty(StatusCode::SERVICE_UNAVAILABLE)
            } else {
                server::hello()
            }
        }
    })
}

/// Peak bytes above the baseline while `stack` sends the body; `first_attempt` is the
/// server's attempt counter to start from (0: a 503 first, 1: a 200 at once).
fn upload_peak(
    rt: &tokio::runtime::Runtime,
    attempts: &AtomicU64,
    stack: &Stack,
    url: &str,
    body: &Bytes,
    first_attempt: u64,
) -> f64 {
    rt.block_on(async {
        // Opens the connection and fetches the token.
        stack.get(url).await;
        attempts.store(first_attempt, Ordering::SeqCst);
        let base = counting_alloc::reset_peak();
        let (status, _) = stack.send(Method::PUT, url, Some(body.clone())).await;
        let peak = counting_alloc::peak();
        assert_eq!(status, StatusCode::OK, "{} gave up", stack.name());
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            2,
            "the body was sent twice"
        );
        (peak - base) as f64
    })
}

fn main() {
    counting_alloc::track_live();
    let quick = std::env::args().any(|arg| arg == "--test");
    let runs = if quick { 1 } else { 3 };
    let rt = load::runtime();

    let gate = Arc::new(Gate {
        size: AtomicUsize::new(1),
        arrived: AtomicUsize::new(0),
        live_when_full: AtomicI64::new(0),
        open: Notify::new(),
    });
    let gate_addr = serve_gate(gate.clone());
    let gate_url = format!("http://{gate_addr}/items?page=1");
    type Build = fn(SocketAddr) -> Stack;
    // The last four: stopover with one built-in middleware at a time, where its share goes.
    let in_flight_stacks: [Build; 9] = [
        |_| clients::reqwest(),
        |_| clients::peer_retry(None),
        |_| clients::peer_full(None),
        |_| clients::stopover_none(),
        |addr| clients::stopover_full(addr, None),
        |_| clients::stopover_logging(),
        |_| clients::stopover_retry(None),
        clients::stopover_token,
        clients::stopover_guard,
    ];
    let sizes: &[usize] = if quick { &[32] } else { &[256, 1_000] };
    for &in_flight in sizes {
        let mut bytes = vec![Vec::new(); in_flight_stacks.len()];
        for _ in 0..runs {
            for (index, build) in in_flight_stacks.iter().enumerate() {
                let stack = build(gate_addr);
                bytes[index].push(per_request_in_flight(
                    &rt, &gate, &stack, &gate_url, in_flight,
                ));
                drop(stack);
                // Lets the server close the dropped client's connections before the next one.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        println!(
            "live heap bytes per request in flight, {in_flight} held at once on pooled \
             connections ({runs} runs, median); the server's share is included (the same for \
             every client)"
        );
        println!(
            "| client | bytes/request | runs | over reqwest | ratio to reqwest | `send()` future \
             bytes |"
        );
        println!("|---|---|---|---|---|---|");
        let base = median(&bytes[0]);
        for (index, build) in in_flight_stacks.iter().enumerate() {
            let value = median(&bytes[index]);
            let runs: Vec<String> = bytes[index].iter().map(|v| format!("{v:.0}")).collect();
            let stack = build(gate_addr);
            println!(
                "| {} | {value:.0} | {} | {:+.0} | {:.2} | {} |",
                stack.name(),
                runs.join(", "),
                value - base,
                value / base,
                stack.send_future_bytes(&gate_url)
            );
        }
        println!();
    }

    let attempts = Arc::new(AtomicU64::new(0));
    let upload_addr = serve_flaky_upload(attempts.clone());
    let upload_url = format!("http://{upload_addr}/upload");
    let body = Bytes::from(vec![b'x'; BODY_BYTES]);
    let upload_stacks: [(Build, u64); 5] = [
        (|_| clients::reqwest(), 1),
        (|_| clients::peer_retry(Some(Duration::ZERO)), 0),
        (|_| clients::peer_full(Some(Duration::ZERO)), 0),
        (|_| clients::stopover_retry(Some(Duration::ZERO)), 0),
        (|addr| clients::stopover_full(addr, Some(Duration::ZERO)), 0),
    ];
    let mut peaks = vec![Vec::new(); upload_stacks.len()];
    for _ in 0..runs {
        for (index, (build, first_attempt)) in upload_stacks.iter().enumerate() {
            let stack = build(upload_addr);
            peaks[index].push(upload_peak(
                &rt,
                &attempts,
                &stack,
                &upload_url,
                &body,
                *first_attempt,
            ));
        }
    }
    println!(
        "peak heap above the baseline while a 16 MiB buffered body is sent: a 503 to the first \
         attempt, 200 to the second, zero backoff ({runs} runs, median); the server reads each \
         body without keeping it"
    );
    println!("| client | attempts | peak bytes | runs | peak / 16 MiB |");
    println!("|---|---|---|---|---|");
    for (index, (build, first_attempt)) in upload_stacks.iter().enumerate() {
        let value = median(&peaks[index]);
        let runs: Vec<String> = peaks[index].iter().map(|v| format!("{v:.0}")).collect();
        let name = build(upload_addr).name();
        let label = if *first_attempt == 1 {
            format!("{name}, one attempt (no retry)")
        } else {
            name.to_owned()
        };
        println!(
            "| {label} | {} | {value:.0} | {} | {:.3} |",
            2 - first_attempt,
            runs.join(", "),
            value / BODY_BYTES as f64
        );
    }
    println!();
}
