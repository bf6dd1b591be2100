//! How the client's cost grows with the requests in flight: 1, 8, 32 and 256 concurrent GETs over
//! loopback, for plain reqwest, the like-for-like peer (reqwest-middleware with reqwest-tracing,
//! reqwest-retry and a bearer-token middleware), stopover without middleware and stopover's full
//! stack (retry, logging, token, SSRF guard). The clients are those of `support/clients.rs`
//! (no tracing subscriber installed); the server is the `hello` server of `support/server.rs`.
//!
//! The clients run on a current-thread runtime on the main thread, `concurrency` tasks each
//! sending its share of a bounded number of GETs; the clients take turns, run after run, and
//! each figure is the median of the runs. Allocations and CPU time are per request and include
//! the server's (the same for every client): read the differences.
//!
//! `cargo bench -p stopover-benches --bench client_scaling` prints the tables; `-- --test` does
//! one short run of each. `CLIENT_SCALING_PROFILE=<client>/<in flight>[/warm]` runs one client
//! only, for `valgrind --tool=callgrind` (`benches/instructions.sh`): the warm-up, then
//! `PROFILE_REQUESTS` GETs (with `/warm`, the warm-up alone, to subtract). The clients of that
//! mode include stopover with one built-in middleware at a time, to show which one grows.

#[path = "support/clients.rs"]
mod clients;
#[path = "support/counting_alloc.rs"]
mod counting_alloc;
#[path = "support/cpu_time.rs"]
mod cpu_time;
#[path = "support/load.rs"]
mod load;
#[path = "support/server.rs"]
mod server;

use load::{Sample, median};

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

const IN_FLIGHT: [usize; 4] = [1, 8, 32, 256];
const PROFILE_REQUESTS: usize = 5_120;

struct Row {
    rps: f64,
    cpu_us: f64,
    allocs: f64,
    runs: Vec<f64>,
}

fn summarise(samples: &[Sample], requests: usize) -> Row {
    let per = |f: &dyn Fn(&Sample) -> f64| -> Vec<f64> { samples.iter().map(f).collect() };
    let runs = per(&|s| requests as f64 / s.seconds);
    Row {
        rps: median(&runs),
        cpu_us: median(&per(&|s| s.cpu_ns as f64 / 1_000.0 / requests as f64)),
        allocs: median(&per(&|s| s.allocations as f64 / requests as f64)),
        runs,
    }
}

/// Every client of the profile mode: the four of the tables, then stopover with one built-in
/// middleware at a time.
fn profile_stacks(addr: std::net::SocketAddr) -> Vec<clients::Stack> {
    vec![
        clients::reqwest(),
        clients::peer_full(None),
        clients::stopover_none(),
        clients::stopover_full(addr, None),
        clients::stopover_logging(),
        clients::stopover_retry(None),
        clients::stopover_token(addr),
        clients::stopover_guard(addr),
    ]
}

fn profile(target: &str) {
    let addr = server::serve_hello();
    let url = format!("http://{addr}/items?page=1");
    let rt = load::runtime();
    if target == "--list" {
        for stack in profile_stacks(addr) {
            println!("{}", stack.name());
        }
        return;
    }
    let (target, warm_only) = match target.strip_suffix("/warm") {
        Some(target) => (target, true),
        None => (target, false),
    };
    let Some((name, in_flight)) = target.rsplit_once('/') else {
        return;
    };
    let in_flight: usize = in_flight.parse().expect("a number of requests in flight");
    for stack in profile_stacks(addr)
        .iter()
        .filter(|stack| stack.name() == name)
    {
        load::run(&rt, stack, &url, in_flight * 8, in_flight);
        if !warm_only {
            load::run(&rt, stack, &url, PROFILE_REQUESTS, in_flight);
        }
    }
}

fn main() {
    if let Ok(target) = std::env::var("CLIENT_SCALING_PROFILE") {
        profile(&target);
        return;
    }
    let quick = std::env::args().any(|arg| arg == "--test");
    let runs = if quick { 1 } else { 5 };
    let addr = server::serve_hello();
    let url = format!("http://{addr}/items?page=1");
    let rt = load::runtime();
    let stacks = [
        clients::reqwest(),
        clients::peer_full(None),
        clients::stopover_none(),
        clients::stopover_full(addr, None),
    ];
    // rows[in flight][stack]
    let mut rows: Vec<Vec<Row>> = Vec::new();
    for concurrency in IN_FLIGHT {
        let requests = match (quick, concurrency) {
            (true, 1) => 100,
            (true, _) => 512,
            (false, 1) => 4_000,
            (false, _) => 25_600,
        };
        // Warm-up: connections opened (as many as requests in flight), token fetched.
        for stack in &stacks {
            load::run(&rt, stack, &url, concurrency * 8, concurrency);
        }
        let mut samples = vec![Vec::new(); stacks.len()];
        for _ in 0..runs {
            for (index, stack) in stacks.iter().enumerate() {
                samples[index].push(load::run(&rt, stack, &url, requests, concurrency));
            }
        }
        let summary: Vec<Row> = samples.iter().map(|s| summarise(s, requests)).collect();
        println!(
            "client over loopback, {concurrency} in flight: {requests} GETs per run, {runs} runs \
             (median); allocations and CPU time include the server's"
        );
        println!(
            "| client | req/s | runs (req/s) | ratio to reqwest | CPU µs/req | CPU ratio to reqwest \
             | allocs/req | over reqwest |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        let base = &summary[0];
        for (stack, row) in stacks.iter().zip(&summary) {
            let runs: Vec<String> = row.runs.iter().map(|v| format!("{v:.0}")).collect();
            println!(
                "| {} | {:.0} | {} | {:.3} | {:.2} | {:.3} | {:.1} | {:+.1} |",
                stack.name(),
                row.rps,
                runs.join(", "),
                row.rps / base.rps,
                row.cpu_us,
                row.cpu_us / base.cpu_us,
                row.allocs,
                row.allocs - base.allocs
            );
        }
        println!();
        rows.push(summary);
    }
    let header = IN_FLIGHT.map(|n| n.to_string()).join(" | ");
    let rule = IN_FLIGHT.map(|_| "---").join("|");
    type Figure = fn(&Row, &Row) -> String;
    let figures: [(&str, Figure); 3] = [
        ("req/s, ratio to reqwest", |row, base| {
            format!("{:.3}", row.rps / base.rps)
        }),
        ("CPU µs per request, ratio to reqwest", |row, base| {
            format!("{:.2} ({:.3})", row.cpu_us, row.cpu_us / base.cpu_us)
        }),
        ("allocations per request, over reqwest", |row, base| {
            format!("{:.1} ({:+.1})", row.allocs, row.allocs - base.allocs)
        }),
    ];
    for (title, figure) in figures {
        println!("{title}, by requests in flight");
        println!("| client | {header} |");
        println!("|---|{rule}|");
        for (index, stack) in stacks.iter().enumerate() {
            let cells: Vec<String> = rows
                .iter()
                .map(|by_stack| figure(&by_stack[index], &by_stack[0]))
                .collect();
            println!("| {} | {} |", stack.name(), cells.join(" | "));
        }
        println!();
    }
}
