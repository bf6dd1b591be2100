//! The generic cell rate algorithm for one key, and the pause a `Retry-After` sets on it.
//!
//! Pure: every method takes the time from its caller, so the unit tests drive it instant by
//! instant and the middleware drives it from tokio's clock.

use std::time::Duration;

use tokio::time::Instant;

use super::policy::RateLimitPolicy;

/// One key's state: its theoretical arrival time and the end of a pause, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cell {
    /// When the next request would arrive if every request so far had kept exactly to the
    /// rate. Never earlier than it was set: a quiet key's TAT stays in the past.
    tat: Instant,
    paused_until: Option<Instant>,
}

impl Cell {
    pub(super) fn new(now: Instant) -> Self {
        Cell {
            tat: now,
            paused_until: None,
        }
    }

    /// Takes a turn for one request arriving at `now`: `Ok(wait)` when it may go after `wait`
    /// (zero: at once) and its turn is taken, `Err(wait)` when it would have to wait longer
    /// than the policy allows (nothing is taken).
    pub(super) fn take(
        &mut self,
        policy: &RateLimitPolicy,
        now: Instant,
    ) -> Result<Duration, Duration> {
        let tolerance = policy.tolerance;
        let tat = self.tat.max(now);
        // GCRA: a request conforms from TAT - tolerance on.
        let conforming = tat.checked_sub(tolerance).unwrap_or(now).max(now);
        let go_at = match self.paused_until {
            Some(until) => conforming.max(until),
            None => conforming,
        };
        let wait = go_at - now;
        if wait > policy.max_wait {
            return Err(wait);
        }
        self.tat = tat.max(go_at) + policy.interval;
        Ok(wait)
    }

    /// Pauses the key until `until`, unless a longer pause is already set.
    pub(super) fn pause(&mut self, until: Instant) {
        self.paused_until = Some(
            self.paused_until
                .map_or(until, |current| current.max(until)),
        );
    }

    /// Whether the state is the same as a fresh key's at `now`: no turn taken ahead and no
    /// pause to come, so forgetting it changes nothing.
    pub(super) fn is_idle(&self, now: Instant) -> bool {
        self.tat <= now && self.paused_until.is_none_or(|until| until <= now)
    }
}
