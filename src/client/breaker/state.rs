//! One circuit's state machine: closed, open, half-open, and the window of recent calls.
//!
//! Pure: every method takes the time from its caller, so the unit tests drive it instant by
//! instant and the middleware drives it from tokio's clock.

use std::time::Duration;

use tokio::time::Instant;

use super::policy::{CircuitBreakerPolicy, Window};

/// The state of a circuit, as [`CircuitBreaker::state`](super::CircuitBreaker::state) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Calls go through and are counted.
    Closed,
    /// Calls are refused until the open duration has passed.
    Open,
    /// A bounded number of probe calls go through; the others are refused.
    HalfOpen,
}

impl CircuitState {
    /// The state's name as logged and in metrics labels: `closed`, `open`, `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

/// How one call went, as the circuit counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The call got an answer that is not a failure.
    Success { slow: bool },
    /// The classifier counted the call as a failure.
    Failure { slow: bool },
    /// The call says nothing about the upstream: it was cancelled, or refused before it left.
    Neutral,
}

/// A change of state, for the middleware to log and count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Transition {
    Opened {
        open_for: Duration,
        failure_rate: f64,
        slow_call_rate: f64,
    },
    HalfOpened,
    Closed,
}

/// Leave to send one call, and what to tell the circuit about it afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ticket {
    generation: u64,
    probe: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { admitted: u32, succeeded: u32 },
}

#[derive(Debug)]
pub(super) struct Circuit {
    state: State,
    /// Bumped at every change of state: a call let through before a change is not counted
    /// after it.
    generation: u64,
    window: Calls,
}

impl Circuit {
    pub(super) fn new(policy: &CircuitBreakerPolicy, now: Instant) -> Self {
        Circuit {
            state: State::Closed,
            generation: 0,
            window: Calls::new(policy.window, now),
        }
    }

    pub(super) fn state(&self) -> CircuitState {
        match self.state {
            State::Closed => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Whether a call may go now: a ticket, or the refusal with the time until the next probe
    /// when it is known; and the change of state the question caused, if any (an open circuit
    /// whose time is up turns half-open).
    pub(super) fn admit(
        &mut self,
        policy: &CircuitBreakerPolicy,
        now: Instant,
    ) -> (Result<Ticket, Option<Duration>>, Option<Transition>) {
        let mut transition = None;
        if let State::Open { until } = self.state {
            if now < until {
                return (Err(Some(until - now)), None);
            }
            self.change(State::HalfOpen {
                admitted: 0,
                succeeded: 0,
            });
            transition = Some(Transition::HalfOpened);
        }
        let admission = match &mut self.state {
            State::Closed => Ok(Ticket {
                generation: self.generation,
                probe: false,
            }),
            State::HalfOpen { admitted, .. } if *admitted < policy.half_open_calls => {
                *admitted += 1;
                Ok(Ticket {
                    generation: self.generation,
                    probe: true,
                })
            }
            // Every probe is in flight: when the next one may go depends on how they end.
            State::HalfOpen { .. } => Err(None),
            State::Open { .. } => unreachable!("an open circuit was turned half-open above"),
        };
        (admission, transition)
    }

    /// Counts how a call let through with `ticket` went; the change of state it caused, if any.
    pub(super) fn record(
        &mut self,
        policy: &CircuitBreakerPolicy,
        ticket: Ticket,
        verdict: Verdict,
        now: Instant,
    ) -> Option<Transition> {
        if ticket.generation != self.generation {
            // Sent under a state that has since changed: it says nothing about this one.
            return None;
        }
        match (&mut self.state, ticket.probe) {
            (State::Closed, false) => {
                let (failed, slow) = match verdict {
                    Verdict::Success { slow } => (false, slow),
                    Verdict::Failure { slow } => (true, slow),
                    Verdict::Neutral => return None,
                };
                self.window.push(failed, slow, now);
                let (calls, failures, slows) = self.window.totals(now);
                if calls < policy.effective_minimum() {
                    return None;
                }
                // Integer counts divided: a threshold such as 0.3 is met exactly at 3 of 10.
                let failure_rate = f64::from(failures) / f64::from(calls);
                let slow_call_rate = f64::from(slows) / f64::from(calls);
                if failure_rate >= policy.failure_rate || slow_call_rate >= policy.slow_call_rate {
                    return Some(self.open(policy, now, failure_rate, slow_call_rate));
                }
                None
            }
            (
                State::HalfOpen {
                    admitted,
                    succeeded,
                },
                true,
            ) => match verdict {
                Verdict::Failure { .. } | Verdict::Success { slow: true } => {
                    let slow = matches!(verdict, Verdict::Success { slow: true });
                    let (failure_rate, slow_call_rate) = if slow { (0.0, 1.0) } else { (1.0, 0.0) };
                    Some(self.open(policy, now, failure_rate, slow_call_rate))
                }
                Verdict::Success { slow: false } => {
                    *succeeded += 1;
                    if *succeeded >= policy.half_open_calls {
                        self.change(State::Closed);
                        self.window.clear();
                        Some(Transition::Closed)
                    } else {
                        None
                    }
                }
                Verdict::Neutral => {
                    // The probe's slot goes back, so that another call can probe.
                    *admitted -= 1;
                    None
                }
            },
            _ => None,
        }
    }

    fn open(
        &mut self,
        policy: &CircuitBreakerPolicy,
        now: Instant,
        failure_rate: f64,
        slow_call_rate: f64,
    ) -> Transition {
        let open_for = policy.open_for();
        self.change(State::Open {
            until: now + open_for,
        });
        Transition::Opened {
            open_for,
            failure_rate,
            slow_call_rate,
        }
    }

    fn change(&mut self, state: State) {
        self.state = state;
        self.generation += 1;
    }

    /// Whether the circuit holds nothing worth keeping: closed (its counts may be dropped when
    /// the breaker holds too many keys).
    pub(super) fn is_closed(&self) -> bool {
        self.state == State::Closed
    }
}

/// The calls in the window: a ring of the last `n`, or ten buckets of time.
#[derive(Debug)]
enum Calls {
    Count {
        size: usize,
        /// (failed, slow) for each call; once full, `next` is the oldest, overwritten by the
        /// next call.
        ring: Vec<(bool, bool)>,
        next: usize,
        failures: u32,
        slows: u32,
    },
    Time {
        epoch: Instant,
        bucket_len: Duration,
        /// Boxed: ten buckets would make every count-window circuit as large.
        buckets: Box<[Bucket; BUCKETS]>,
    },
}

const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which stretch of `bucket_len` since the epoch this bucket counts, from 1 (0 is never
    /// live, so a fresh bucket reads as empty).
    index: u64,
    calls: u32,
    failures: u32,
    slows: u32,
}

impl Calls {
    fn new(window: Window, now: Instant) -> Self {
        match window {
            Window::Count(size) => Calls::Count {
                size: size as usize,
                ring: Vec::new(),
                next: 0,
                failures: 0,
                slows: 0,
            },
            Window::Time(span) => Calls::Time {
                epoch: now,
                bucket_len: span / BUCKETS as u32,
                buckets: Box::new([Bucket::default(); BUCKETS]),
            },
        }
    }

    fn push(&mut self, failed: bool, slow: bool, now: Instant) {
        match self {
            Calls::Count {
                size,
                ring,
                next,
                failures,
                slows,
            } => {
                if ring.len() < *size {
                    ring.push((failed, slow));
                } else if let Some(oldest) = ring.get_mut(*next) {
                    let (old_failed, old_slow) = std::mem::replace(oldest, (failed, slow));
                    *failures -= u32::from(old_failed);
                    *slows -= u32::from(old_slow);
                    *next = (*next + 1) % *size;
                }
                *failures += u32::from(failed);
                *slows += u32::from(slow);
            }
            Calls::Time {
                epoch,
                bucket_len,
                buckets,
            } => {
                let index = bucket_index(*epoch, *bucket_len, now);
                let bucket = &mut buckets[(index % BUCKETS as u64) as usize];
                if bucket.index != index {
                    *bucket = Bucket {
                        index,
                        ..Bucket::default()
                    };
                }
                bucket.calls += 1;
                bucket.failures += u32::from(failed);
                bucket.slows += u32::from(slow);
            }
        }
    }

    /// (calls, failures, slow calls) in the window at `now`.
    fn totals(&self, now: Instant) -> (u32, u32, u32) {
        match self {
            Calls::Count {
                ring,
                failures,
                slows,
                ..
            } => (ring.len() as u32, *failures, *slows),
            Calls::Time {
                epoch,
                bucket_len,
                buckets,
            } => {
                let current = bucket_index(*epoch, *bucket_len, now);
                buckets
                    .iter()
                    .filter(|bucket| {
                        bucket.index != 0 && current.saturating_sub(bucket.index) < BUCKETS as u64
                    })
                    .fold((0, 0, 0), |(calls, failures, slows), bucket| {
                        (
                            calls + bucket.calls,
                            failures + bucket.failures,
                            slows + bucket.slows,
                        )
                    })
            }
        }
    }

    fn clear(&mut self) {
        match self {
            Calls::Count {
                ring,
                next,
                failures,
                slows,
                ..
            } => {
                ring.clear();
                *next = 0;
                *failures = 0;
                *slows = 0;
            }
            Calls::Time { buckets, .. } => **buckets = [Bucket::default(); BUCKETS],
        }
    }
}

fn bucket_index(epoch: Instant, bucket_len: Duration, now: Instant) -> u64 {
    let elapsed = now.saturating_duration_since(epoch);
    u64::try_from(elapsed.as_nanos() / bucket_len.as_nanos().max(1)).unwrap_or(u64::MAX - 1) + 1
}
