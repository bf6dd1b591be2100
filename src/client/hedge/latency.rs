//! The latency record a quantile delay is read from: per key, a fixed-bucket histogram of the
//! latencies of one window, turned into a delay when the window ends.
//!
//! Written here rather than taken from a crate: `hdrhistogram` (what tower's hedge uses) is not
//! in the dependency tree, sizes its counts at run time and offers far more precision than a
//! hedging delay needs, and nothing already in the tree records latencies. What hedging needs
//! is small: 200 `u32` counts per key in buckets of one eighth of a power of two (from 1 µs to
//! 134 s; the delay read is at most 12.5 % above the latencies it stands for), one addition per
//! answer, and a walk over the counts once per window. Like tower's rotating histogram the
//! delay of a window is read from the window before it, so a burst of slow answers moves the
//! delay only once its window has ended; unlike it, the finished window is reduced to its
//! quantile at once instead of being kept whole.
//!
//! The keys are found with a small multiply-rotate hash seeded per record, not SipHash: a
//! lookup is on every request, an origin is a few words long, and the keys are the origins the
//! application itself calls, bounded by `max_keys`, so crafted collisions could at worst make
//! a lookup walk those keys.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

/// Sub-buckets per power of two: 2^3 = 8, so a bucket spans one eighth of its power of two.
const SUB_BITS: u32 = 3;
const SUBS: u64 = 1 << SUB_BITS;
/// Latencies of 2^27 µs (134 s) and more share the last bucket.
const MAX_EXPONENT: u32 = 27;
pub(super) const BUCKETS: usize = ((MAX_EXPONENT - SUB_BITS + 1) as usize) * SUBS as usize;

/// The bucket of a latency of `micros` microseconds.
pub(super) fn bucket(micros: u64) -> usize {
    if micros < SUBS {
        return micros as usize;
    }
    let exponent = 63 - micros.leading_zeros();
    if exponent >= MAX_EXPONENT {
        return BUCKETS - 1;
    }
    let sub = (micros >> (exponent - SUB_BITS)) & (SUBS - 1);
    ((exponent - SUB_BITS + 1) as u64 * SUBS + sub) as usize
}

/// The end of bucket `index` in microseconds (the first latency past it).
pub(super) fn upper_edge(index: usize) -> u64 {
    let index = index as u64;
    if index < SUBS {
        return index + 1;
    }
    let exponent = index / SUBS + u64::from(SUB_BITS) - 1;
    let sub = index % SUBS;
    (SUBS + sub + 1) << (exponent - u64::from(SUB_BITS))
}

/// How the record is read: which quantile, over which window, from how many answers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reading {
    pub(super) quantile: f64,
    pub(super) window: Duration,
    pub(super) min_samples: u32,
}

/// One key's record: the counts of the window under way and the delay read from the last one.
#[derive(Debug)]
pub(super) struct KeyLatency {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    samples: u32,
    counts: [u32; BUCKETS],
    /// The quantile of the window before this one, when it had enough samples.
    delay: Option<Duration>,
}

impl Window {
    /// Ends the window if its time is up: its quantile becomes the delay (or none, when it had
    /// too few samples or ended more than a window ago), and a new window starts.
    fn roll(&mut self, now: Instant, reading: &Reading) {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < reading.window {
            return;
        }
        self.delay =
            if elapsed - reading.window < reading.window && self.samples >= reading.min_samples {
                Some(quantile(&self.counts, self.samples, reading.quantile))
            } else {
                None
            };
        self.counts = [0; BUCKETS];
        self.samples = 0;
        self.started = now;
    }
}

/// The upper edge of the bucket holding the `q` quantile of `total` samples.
pub(super) fn quantile(counts: &[u32; BUCKETS], total: u32, q: f64) -> Duration {
    let rank = ((q * f64::from(total)).ceil() as u32).clamp(1, total.max(1));
    let mut seen = 0u32;
    for (index, count) in counts.iter().enumerate() {
        seen = seen.saturating_add(*count);
        if seen >= rank {
            return Duration::from_micros(upper_edge(index));
        }
    }
    Duration::from_micros(upper_edge(BUCKETS - 1))
}

impl KeyLatency {
    fn new(now: Instant) -> Self {
        KeyLatency {
            window: Mutex::new(Window {
                started: now,
                samples: 0,
                counts: [0; BUCKETS],
                delay: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // A panic elsewhere cannot leave counts that matter inconsistent.
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The delay read from the last window, if it had enough samples.
    pub(super) fn delay(&self, now: Instant, reading: &Reading) -> Option<Duration> {
        let mut window = self.lock();
        window.roll(now, reading);
        window.delay
    }

    /// Counts one latency.
    pub(super) fn record(&self, now: Instant, latency: Duration, reading: &Reading) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let mut window = self.lock();
        window.roll(now, reading);
        window.counts[bucket(micros)] = window.counts[bucket(micros)].saturating_add(1);
        window.samples = window.samples.saturating_add(1);
    }

    /// True when the key recorded or read something within the last two windows.
    fn is_recent(&self, now: Instant, reading: &Reading) -> bool {
        now.saturating_duration_since(self.lock().started) < reading.window.saturating_mul(2)
    }
}

/// Builds the hasher of the key map, with a seed drawn once per record.
#[derive(Debug, Clone)]
struct KeyHash {
    seed: u64,
}

impl KeyHash {
    fn new() -> Self {
        KeyHash {
            seed: RandomState::new().hash_one(0x0068_6564_6765_u64),
        }
    }
}

impl BuildHasher for KeyHash {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher { hash: self.seed }
    }
}

/// A word at a time: rotate, mix the word in, multiply by an odd constant (whose high bits the
/// map's control bytes read).
struct KeyHasher {
    hash: u64,
}

impl KeyHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut buffer = [0u8; 8];
            buffer.copy_from_slice(word);
            self.add(u64::from_le_bytes(buffer));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut buffer = [0u8; 8];
            buffer[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buffer) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// Every key's record, bounded by `max_keys`.
#[derive(Debug)]
pub(super) struct Latencies {
    pub(super) reading: Reading,
    max_keys: usize,
    keys: RwLock<HashMap<String, Arc<KeyLatency>, KeyHash>>,
}

impl Latencies {
    pub(super) fn new(reading: Reading, max_keys: usize) -> Self {
        Latencies {
            reading,
            max_keys,
            keys: RwLock::new(HashMap::with_hasher(KeyHash::new())),
        }
    }

    /// The record of `key`, made on its first use; none when the record is full of keys in
    /// use. A known key costs a shared lock and a lookup, no allocation.
    pub(super) fn of(&self, key: &str, now: Instant) -> Option<Arc<KeyLatency>> {
        if let Some(found) = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return Some(Arc::clone(found));
        }
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = keys.get(key) {
            return Some(Arc::clone(found));
        }
        if keys.len() >= self.max_keys {
            keys.retain(|_, record| record.is_recent(now, &self.reading));
            if keys.len() >= self.max_keys {
                return None;
            }
        }
        let record = Arc::new(KeyLatency::new(now));
        keys.insert(key.to_owned(), Arc::clone(&record));
        Some(record)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
