//! stopover-egress and smokescreen side by side: the same load through each over loopback, as
//! ratios in one run. Never part of `cargo test`.
//!
//! ```sh
//! # smokescreen: go build -mod=vendor in a checkout of github.com/stripe/smokescreen (go 1.19)
//! cargo build --release -p stopover-egress
//! SMOKESCREEN_BIN=/path/to/smokescreen STOPOVER_EGRESS_BIN=target/release/stopover-egress \
//!     cargo bench -p stopover-benches --bench egress_side_by_side
//! ```
//!
//! For each proxy and each scenario (plain HTTP over kept-alive client connections, and a new
//! CONNECT tunnel per request, at 1 and 64 concurrent clients) it runs a fixed time and reports
//! requests per second, p50 and p99 latency, and the proxy process's CPU time per request (from
//! `/proc/<pid>/stat`); peak memory is the process's `VmHWM` at the end. Both proxies allow the
//! one loopback upstream with `--allow-address`, log their decision line to /dev/null, and
//! smokescreen's statsd client is off (`--statsd-address ""`). The proxies alternate scenario by
//! scenario so that drift on the machine touches both. Set `EGRESS_BENCH_SECONDS` (default 5).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BODY: &[u8] = b"hello from the upstream\n";

struct Proxy {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proxy {
    fn start(name: &'static str, binary: &str, extra: &[&str], upstream: SocketAddr) -> Proxy {
        let port = free_port();
        let allow = upstream.to_string();
        let port_text = port.to_string();
        let mut args = vec![
            "--listen-ip",
            "127.0.0.1",
            "--listen-port",
            &port_text,
            "--allow-address",
            &allow,
        ];
        args.extend_from_slice(extra);
        let child = Command::new(binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "{name} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Proxy { name, child, addr }
    }

    /// User plus system CPU time of the process so far.
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start after the last ')'.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
            + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        // USER_HZ is 100 on Linux.
        Duration::from_millis(ticks * 10)
    }

    /// Peak resident memory (VmHWM), in KiB.
    fn peak_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(BODY))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    Connect,
}

struct Outcome {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    cpu: Duration,
}

/// One client: kept-alive plain HTTP through the proxy until the deadline.
async fn plain_client(
    proxy: SocketAddr,
    upstream: SocketAddr,
    until: Instant,
) -> (Vec<Duration>, u64) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    'reconnect: while Instant::now() < until {
        let Ok(stream) = TcpStream::connect(proxy).await else {
            errors += 1;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, connection)) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await
        else {
            errors += 1;
            continue;
        };
        tokio::spawn(connection);
        while Instant::now() < until {
            let request = Request::get(format!("http://{upstream}/"))
                .header("host", upstream.to_string())
                .body(Empty::new())
                .unwrap();
            let started = Instant::now();
            let ok = match sender.send_request(request).await {
                Ok(response) => {
                    let ok = response.status() == 200;
                    ok && response.into_body().collect().await.is_ok()
                }
                Err(_) => false,
            };
            if !ok {
                errors += 1;
                continue 'reconnect;
            }
            latencies.push(started.elapsed());
        }
    }
    (latencies, errors)
}

/// One client: a new CONNECT tunnel per request until the deadline.
async fn connect_client(
    proxy: SocketAddr,
    upstream: SocketAddr,
    until: Instant,
) -> (Vec<Duration>, u64) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    let connect = format!("CONNECT {upstream} HTTP/1.1\r\nHost: {upstream}\r\n\r\n");
    let get = b"GET / HTTP/1.1\r\nHost: upstream\r\nConnection: close\r\n\r\n";
    let mut buf = vec![0u8; 4096];
    while Instant::now() < until {
        let started = Instant::now();
        let exchange = async {
            let mut stream = TcpStream::connect(proxy).await.ok()?;
            let _ = stream.set_nodelay(true);
            stream.write_all(connect.as_bytes()).await.ok()?;
            let head = read_head(&mut stream, &mut buf).await?;
            if !(head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200")) {
                return None;
            }
            stream.write_all(get).await.ok()?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.ok()?;
            answer.ends_with(BODY).then_some(())
        };
        match exchange.await {
            Some(()) => latencies.push(started.elapsed()),
            None => errors += 1,
        }
    }
    (latencies, errors)
}

/// Reads the proxy's answer to CONNECT. Nothing follows it until the client speaks, so a
/// chunked read cannot swallow tunnel bytes.
async fn read_head(stream: &mut TcpStream, buf: &mut [u8]) -> Option<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let n = stream.read(buf).await.ok()?;
        if n == 0 || head.len() > 8192 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(head).ok()
}

async fn run(
    proxy: &Proxy,
    upstream: SocketAddr,
    mode: Mode,
    clients: usize,
    seconds: u64,
) -> Outcome {
    let cpu_before = proxy.cpu();
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            match mode {
                Mode::Plain => plain_client(addr, upstream, until).await,
                Mode::Connect => connect_client(addr, upstream, until).await,
            }
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (mut l, e) = task.await.unwrap();
        latencies.append(&mut l);
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    Outcome {
        requests: latencies.len() as u64,
        errors,
        elapsed,
        latencies,
        cpu: proxy.cpu().saturating_sub(cpu_before),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn main() {
    let (Ok(smokescreen), Ok(egress)) = (
        std::env::var("SMOKESCREEN_BIN"),
        std::env::var("STOPOVER_EGRESS_BIN"),
    ) else {
        eprintln!(
            "egress_side_by_side: set SMOKESCREEN_BIN and STOPOVER_EGRESS_BIN (see the file's \
             doc comment); skipped"
        );
        return;
    };
    let seconds: u64 = std::env::var("EGRESS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let upstream = upstream().await;
        let proxies = Arc::new([
            Proxy::start("smokescreen", &smokescreen, &["--statsd-address", ""], upstream),
            Proxy::start("stopover-egress", &egress, &[], upstream),
        ]);
        println!(
            "| scenario | proxy | req/s | p50 | p99 | CPU µs/req | errors |\n|---|---|---|---|---|---|---|"
        );
        let mut ratios = Vec::new();
        for (mode, label) in [(Mode::Plain, "plain HTTP"), (Mode::Connect, "CONNECT")] {
            for clients in [1usize, 64] {
                let mut results = Vec::new();
                for proxy in proxies.iter() {
                    let outcome = run(proxy, upstream, mode, clients, seconds).await;
                    let rps = outcome.requests as f64 / outcome.elapsed.as_secs_f64();
                    let cpu_per = outcome.cpu.as_micros() as f64 / outcome.requests.max(1) as f64;
                    let p50 = percentile(&outcome.latencies, 0.50);
                    let p99 = percentile(&outcome.latencies, 0.99);
                    println!(
                        "| {label}, {clients} clients | {} | {rps:.0} | {p50:.2?} | {p99:.2?} | {cpu_per:.0} | {} |",
                        proxy.name, outcome.errors
                    );
                    results.push((rps, p99, cpu_per));
                }
                let (s, e) = (results[0], results[1]);
                ratios.push(format!(
                    "| {label}, {clients} clients | {:.2}× | {:.2}× | {:.2}× |",
                    e.0 / s.0,
                    e.1.as_secs_f64() / s.1.as_secs_f64().max(1e-9),
                    e.2 / s.2.max(1e-9)
                ));
            }
        }
        println!(
            "\nstopover-egress ÷ smokescreen:\n\n| scenario | throughput | p99 | CPU per request |\n|---|---|---|---|"
        );
        for line in ratios {
            println!("{line}");
        }
        let (s, e) = (proxies[0].peak_kib(), proxies[1].peak_kib());
        println!(
            "\npeak memory (VmHWM): smokescreen {s} KiB, stopover-egress {e} KiB ({:.2}×)",
            e as f64 / s.max(1) as f64
        );
    });
}
