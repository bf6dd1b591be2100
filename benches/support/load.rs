//! Bounded load over loopback: `requests` GETs, `concurrency` tasks at a time, on the caller's
//! current-thread runtime, with wall time, allocations and on-CPU time (every thread of the
//! process, so the in-process server's work is included: the same for every client).
//! Needs the `counting_alloc` and `cpu_time` modules at the crate's root.

// Shared by every bench; not each uses every helper.
#![allow(dead_code)]

use std::time::Instant;

use crate::clients::{Stack, Urls};

/// One run's figures.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub seconds: f64,
    pub allocations: u64,
    pub cpu_ns: u64,
}

/// Sends `requests` GETs (rounded down to a multiple of `concurrency`) from `concurrency`
/// tasks; every answer must be a `200` with the body `hello`. Never inlined, so that
/// `valgrind --tool=callgrind --toggle-collect='*load::run'` can count what it runs.
#[inline(never)]
pub fn run(
    rt: &tokio::runtime::Runtime,
    stack: &Stack,
    url: &str,
    requests: usize,
    concurrency: usize,
) -> Sample {
    rt.block_on(async {
        let cpu_before = crate::cpu_time::process_cpu_ns();
        let (allocs_before, _) = crate::counting_alloc::snapshot();
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let url = url.to_owned();
            stack.spawn_gets(&mut tasks, 0..requests / concurrency, Urls::Same(url));
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("the client task completes");
        }
        let seconds = started.elapsed().as_secs_f64();
        let (allocs_after, _) = crate::counting_alloc::snapshot();
        let cpu_ns = crate::cpu_time::process_cpu_ns() - cpu_before;
        Sample {
            seconds,
            allocations: allocs_after - allocs_before,
            cpu_ns,
        }
    })
}

/// The median (the upper one of an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A current-thread runtime for the clients.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}
