//! A global allocator that counts allocations, so that benchmarks can report exact allocation
//! figures that do not depend on the machine's noise. On request ([`track_live`]) it also keeps
//! the bytes currently allocated (allocated minus freed) and their peak, for the memory
//! benchmarks; off, that costs one relaxed load per call, so the other benchmarks' timings are
//! not disturbed.

// Shared by every bench; not each uses every helper.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// The system allocator, counting every allocation and reallocation.
pub struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static TRACK_LIVE: AtomicBool = AtomicBool::new(false);
/// Bytes allocated minus bytes freed since tracking started (memory allocated before and freed
/// after makes it lower than the true figure by a constant: read differences only).
static LIVE: AtomicI64 = AtomicI64::new(0);
static PEAK: AtomicI64 = AtomicI64::new(0);

fn grow(bytes: usize) {
    if TRACK_LIVE.load(Ordering::Relaxed) {
        let now = LIVE.fetch_add(bytes as i64, Ordering::Relaxed) + bytes as i64;
        if now > PEAK.load(Ordering::Relaxed) {
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
    }
}

fn shrink(bytes: usize) {
    if TRACK_LIVE.load(Ordering::Relaxed) {
        LIVE.fetch_sub(bytes as i64, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are plain
// atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        grow(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrink(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        grow(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // Grow first, so that a peak is never missed; shrink by the old size after.
        grow(new_size);
        shrink(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations and allocated bytes so far.
pub fn snapshot() -> (u64, u64) {
    (
        ALLOCATIONS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    )
}

/// Starts keeping live and peak bytes; call first thing in `main`.
pub fn track_live() {
    TRACK_LIVE.store(true, Ordering::Relaxed);
}

/// Bytes live now (allocated minus freed since [`track_live`]).
pub fn live() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

/// Sets the peak to the bytes live now and returns them: the baseline of a peak measurement.
pub fn reset_peak() -> i64 {
    let now = LIVE.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

/// The most bytes live at once since the last [`reset_peak`].
pub fn peak() -> i64 {
    PEAK.load(Ordering::Relaxed)
}

/// Average allocations and bytes per call of `run`, over `iterations` calls after a warm-up.
pub fn per_call<F: FnMut()>(iterations: u64, mut run: F) -> (f64, f64) {
    for _ in 0..iterations.min(100) {
        run();
    }
    let (allocs_before, bytes_before) = snapshot();
    for _ in 0..iterations {
        run();
    }
    let (allocs_after, bytes_after) = snapshot();
    (
        (allocs_after - allocs_before) as f64 / iterations as f64,
        (bytes_after - bytes_before) as f64 / iterations as f64,
    )
}
