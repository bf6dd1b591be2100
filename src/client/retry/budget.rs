//! [`Budget`]: retries limited to a share of recent requests, shared by every request through
//! one middleware (Finagle's retry budget).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::client::Result;

use super::error::RetryPolicyError;

/// A retry budget: retries limited to a share of recent requests, plus a small floor.
///
/// Within a sliding `window`, the middleware allows `min_retries + ratio * requests` retries,
/// where `requests` counts the requests (not attempts) that went through it. When most
/// requests fail, retries stop well before every request has used its attempts, so an
/// upstream in trouble sees at most `1 + ratio` times its normal load, plus the floor. The
/// same scheme as Finagle's and tower's retry budgets. Default: a 10 s window, ratio 0.2,
/// 10 retries of floor.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    window: Duration,
    ratio: f64,
    min_retries: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            window: Duration::from_secs(10),
            ratio: 0.2,
            min_retries: 10,
        }
    }
}

impl Budget {
    /// The sliding window over which requests and retries are counted. Default 10 s; must be
    /// between 1 s and 60 s.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Retries allowed per request in the window. Default 0.2 (one retry per five requests);
    /// must be between 0 and 1000.
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// Retries allowed in every window whatever the traffic, so a client that sends few
    /// requests can still retry. Default 10.
    pub fn min_retries(mut self, retries: u32) -> Self {
        self.min_retries = retries;
        self
    }

    pub(super) fn validate(&self) -> Result<(), RetryPolicyError> {
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(60) {
            return Err(RetryPolicyError::BudgetWindow(self.window));
        }
        if !self.ratio.is_finite() || !(0.0..=1000.0).contains(&self.ratio) {
            return Err(RetryPolicyError::BudgetRatio(self.ratio));
        }
        Ok(())
    }
}

const BUDGET_SLOTS: usize = 10;

/// The live counters of a [`Budget`], shared by every request through one middleware.
///
/// The window is cut into slots; each counts the requests and retries that started in it.
/// The lock is a plain mutex held for a few additions, never across an await.
#[derive(Debug)]
pub(crate) struct BudgetState {
    budget: Budget,
    start: Instant,
    slot_len: Duration,
    slots: Mutex<[Slot; BUDGET_SLOTS]>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    index: u64,
    requests: u64,
    retries: u64,
}

impl BudgetState {
    pub(crate) fn new(budget: Budget) -> Self {
        let slot_len = budget.window / BUDGET_SLOTS as u32;
        BudgetState {
            budget,
            start: Instant::now(),
            slot_len,
            slots: Mutex::new([Slot::default(); BUDGET_SLOTS]),
        }
    }

    fn slot_index(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.start);
        // +1 so that index 0 never names a live slot and fresh slots read as empty.
        u64::try_from(elapsed.as_nanos() / self.slot_len.as_nanos().max(1)).unwrap_or(u64::MAX - 1)
            + 1
    }

    fn with_slots<T>(&self, f: impl FnOnce(&mut [Slot; BUDGET_SLOTS], u64) -> T) -> T {
        let now = self.slot_index();
        // A panic elsewhere cannot leave the counters inconsistent, so a poisoned lock is fine.
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let slot = &mut slots[(now % BUDGET_SLOTS as u64) as usize];
        if slot.index != now {
            *slot = Slot {
                index: now,
                ..Slot::default()
            };
        }
        f(&mut slots, now)
    }

    /// Counts a new request (once per request, not per attempt).
    pub(crate) fn deposit(&self) {
        self.with_slots(|slots, now| slots[(now % BUDGET_SLOTS as u64) as usize].requests += 1);
    }

    /// Takes one retry from the budget; `false` if the budget is spent.
    pub(crate) fn withdraw(&self) -> bool {
        let budget = &self.budget;
        self.with_slots(|slots, now| {
            let live = |slot: &&Slot| now - slot.index < BUDGET_SLOTS as u64;
            let requests: u64 = slots.iter().filter(live).map(|slot| slot.requests).sum();
            let retries: u64 = slots.iter().filter(live).map(|slot| slot.retries).sum();
            let allowed = f64::from(budget.min_retries) + budget.ratio * requests as f64;
            if (retries as f64) < allowed {
                slots[(now % BUDGET_SLOTS as u64) as usize].retries += 1;
                true
            } else {
                false
            }
        })
    }
}
