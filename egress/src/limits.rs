//! smokescreen's three limits: requests in flight (503), requests per second (429), and CONNECT
//! tunnels open (429 with `Retry-After: 1`).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A token bucket: `rate` tokens a second, at most `burst` saved.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// A full bucket.
    pub fn new(rate: f64, burst: u64) -> Self {
        let burst = burst as f64;
        RateLimiter {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes a token if there is one.
    pub fn allow(&self) -> bool {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        let now = Instant::now();
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.rate).min(self.burst);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            true
        } else {
            *state = (tokens, now);
            false
        }
    }
}

/// The limits of one proxy.
#[derive(Debug)]
pub struct Limits {
    rate: Option<RateLimiter>,
    in_flight: Option<Arc<Semaphore>>,
    tunnels: Option<Arc<TunnelCount>>,
}

/// Why a request was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overload {
    /// Past `--max-request-rate` (429).
    Rate,
    /// Past `--max-concurrent-requests` (503).
    Concurrency,
}

/// Open tunnels and their bound.
#[derive(Debug)]
pub struct TunnelCount {
    max: usize,
    open: AtomicUsize,
}

/// A tunnel's slot, given back when dropped.
#[derive(Debug)]
pub struct TunnelSlot(Option<Arc<TunnelCount>>);

impl Drop for TunnelSlot {
    fn drop(&mut self) {
        if let Some(count) = &self.0 {
            count.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Limits {
    /// The limits; zero means unlimited.
    pub fn new(max_in_flight: usize, rate: f64, burst: u64, max_tunnels: usize) -> Self {
        Limits {
            rate: (rate > 0.0).then(|| RateLimiter::new(rate, burst)),
            in_flight: (max_in_flight > 0).then(|| Arc::new(Semaphore::new(max_in_flight))),
            tunnels: (max_tunnels > 0).then(|| {
                Arc::new(TunnelCount {
                    max: max_tunnels,
                    open: AtomicUsize::new(0),
                })
            }),
        }
    }

    /// Admits a request: a permit to hold while it is handled, or why not. The rate is
    /// checked first, as smokescreen does.
    pub fn admit(&self) -> Result<Option<OwnedSemaphorePermit>, Overload> {
        if let Some(rate) = &self.rate {
            if !rate.allow() {
                return Err(Overload::Rate);
            }
        }
        match &self.in_flight {
            None => Ok(None),
            Some(semaphore) => semaphore
                .clone()
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| Overload::Concurrency),
        }
    }

    /// Takes a tunnel slot, or `None` when every slot is taken.
    pub fn open_tunnel(&self) -> Option<TunnelSlot> {
        let Some(count) = &self.tunnels else {
            return Some(TunnelSlot(None));
        };
        count
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < count.max).then_some(open + 1)
            })
            .ok()
            .map(|_| TunnelSlot(Some(count.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_refuses() {
        let limiter = RateLimiter::new(0.001, 3);
        assert!((0..3).all(|_| limiter.allow()));
        assert!(!limiter.allow());
    }

    #[test]
    fn tunnel_slots_come_back_when_dropped() {
        let limits = Limits::new(0, 0.0, 0, 1);
        let slot = limits.open_tunnel().expect("first slot");
        assert!(limits.open_tunnel().is_none());
        drop(slot);
        assert!(limits.open_tunnel().is_some());
    }

    #[test]
    fn concurrency_permit_is_held_while_handled() {
        let limits = Limits::new(1, 0.0, 0, 0);
        let permit = limits.admit().unwrap();
        assert_eq!(limits.admit().unwrap_err(), Overload::Concurrency);
        drop(permit);
        assert!(limits.admit().is_ok());
    }
}
