//! [`Budget`]: extra attempts (retries, hedges) limited to a share of recent requests, shared by
//! every request through one middleware (Finagle's retry budget).
//!
//! Core vocabulary: the retry and the hedging middlewares both spend one, and neither names the
//! other.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A retry budget: retries limited to a share of recent requests, plus a small floor.
///
/// Within a sliding `window`, the middleware allows `min_retries + ratio * requests` retries,
/// where `requests` counts the requests (not attempts) that went through it. When most
/// requests fail, retries stop well before every request has used its attempts, so an
/// upstream in trouble sees at most `1 + ratio` times its normal load, plus the floor. The
/// same scheme as Finagle's and tower's retry budgets. Default: a 10 s window, ratio 0.2,
/// 10 retries of floor.
///
/// The hedging middleware spends the same kind of budget on its copies: there a "retry" is a
/// copy of a request sent while the first is still out.
///
/// ```
/// use std::time::Duration;
/// use stopover::client::Budget;
///
/// // One extra attempt per ten requests over the last 30 s, and 5 whatever the traffic.
/// let budget = Budget::default()
///     .window(Duration::from_secs(30))
///     .ratio(0.1)
///     .min_retries(5);
/// # let _ = budget;
/// ```
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

    /// Checks the budget; each middleware turns the answer into its own policy error.
    pub(crate) fn validate(&self) -> Result<(), InvalidBudget> {
        if self.window < Duration::from_secs(1) || self.window > Duration::from_secs(60) {
            return Err(InvalidBudget::Window(self.window));
        }
        if !self.ratio.is_finite() || !(0.0..=1000.0).contains(&self.ratio) {
            return Err(InvalidBudget::Ratio(self.ratio));
        }
        Ok(())
    }
}

/// What is wrong with a [`Budget`]: its window outside 1 s to 60 s, or its ratio outside 0 to
/// 1000 (or not a number).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum InvalidBudget {
    Window(Duration),
    Ratio(f64),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Budget, BudgetState};

    #[tokio::test(start_paused = true)]
    async fn budget_floor_allows_a_few_retries_without_traffic() {
        let budget = BudgetState::new(Budget::default().min_retries(2).ratio(0.0));
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn budget_allows_a_share_of_requests() {
        let budget = BudgetState::new(Budget::default().min_retries(0).ratio(0.25));
        for _ in 0..8 {
            budget.deposit();
        }
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
        for _ in 0..4 {
            budget.deposit();
        }
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn budget_refills_when_the_window_slides_past() {
        let budget = BudgetState::new(
            Budget::default()
                .window(Duration::from_secs(10))
                .min_retries(1)
                .ratio(0.0),
        );
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!budget.withdraw(), "the retry is still inside the window");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(budget.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn old_requests_stop_paying_for_retries() {
        let budget = BudgetState::new(Budget::default().min_retries(0).ratio(1.0));
        budget.deposit();
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!budget.withdraw());
    }
}
