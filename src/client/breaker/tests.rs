//! The state machine of one circuit, instant by instant, and the policy's validation.

use std::time::Duration;

use tokio::time::Instant;

use super::policy::{CircuitBreakerPolicy, CircuitBreakerPolicyBuilder, CircuitBreakerPolicyError};
use super::state::{Circuit, CircuitState, Ticket, Transition, Verdict};
use super::*;

const OK: Verdict = Verdict::Success { slow: false };
const FAIL: Verdict = Verdict::Failure { slow: false };
const SLOW: Verdict = Verdict::Success { slow: true };

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// 50 % over the last 4 calls, all 4 needed, open 10 s with no jitter, one probe.
fn policy() -> CircuitBreakerPolicyBuilder {
    CircuitBreakerPolicy::builder()
        .failure_rate(0.5)
        .window(Window::Count(4))
        .minimum_calls(4)
        .open_duration(secs(10))
        .open_jitter(0.0)
}

struct Harness {
    policy: CircuitBreakerPolicy,
    circuit: Circuit,
    start: Instant,
}

impl Harness {
    fn new(policy: CircuitBreakerPolicyBuilder) -> Self {
        let policy = policy.build().unwrap();
        let start = Instant::now();
        Harness {
            circuit: Circuit::new(&policy, start),
            policy,
            start,
        }
    }

    fn at(&self, offset: Duration) -> Instant {
        self.start + offset
    }

    fn admit(&mut self, offset: Duration) -> Result<Ticket, Option<Duration>> {
        let now = self.at(offset);
        self.circuit.admit(&self.policy, now).0
    }

    /// Sends one call at `offset` that ends with `verdict`; the transition it caused.
    fn call(&mut self, offset: Duration, verdict: Verdict) -> Option<Transition> {
        let ticket = self
            .admit(offset)
            .expect("the circuit lets the call through");
        let now = self.at(offset);
        self.circuit.record(&self.policy, ticket, verdict, now)
    }

    fn calls(&mut self, offset: Duration, verdicts: &[Verdict]) {
        for verdict in verdicts {
            self.call(offset, *verdict);
        }
    }

    fn state(&self) -> CircuitState {
        self.circuit.state()
    }
}

#[test]
fn opens_exactly_at_the_failure_rate_threshold() {
    let mut h = Harness::new(policy());
    h.calls(secs(0), &[OK, OK, FAIL]);
    let transition = h.call(secs(0), FAIL);
    assert!(
        matches!(transition, Some(Transition::Opened { failure_rate, .. }) if failure_rate == 0.5),
        "{transition:?}"
    );
    assert_eq!(h.state(), CircuitState::Open);
}

#[test]
fn a_threshold_that_is_not_a_binary_fraction_is_met_exactly() {
    let mut h = Harness::new(
        policy()
            .failure_rate(0.3)
            .window(Window::Count(10))
            .minimum_calls(10),
    );
    h.calls(secs(0), &[OK; 7]);
    h.calls(secs(0), &[FAIL, FAIL]);
    assert_eq!(h.state(), CircuitState::Closed);
    h.call(secs(0), FAIL);
    assert_eq!(h.state(), CircuitState::Open);
}

#[test]
fn stays_closed_just_below_the_threshold() {
    let mut h = Harness::new(policy().failure_rate(0.51));
    h.calls(secs(0), &[OK, OK, FAIL, FAIL]);
    assert_eq!(h.state(), CircuitState::Closed);
}

#[test]
fn stays_closed_below_the_minimum_number_of_calls_even_when_all_fail() {
    let mut h = Harness::new(policy());
    h.calls(secs(0), &[FAIL, FAIL, FAIL]);
    assert_eq!(h.state(), CircuitState::Closed);
    h.call(secs(0), FAIL);
    assert_eq!(h.state(), CircuitState::Open);
}

#[test]
fn a_count_window_smaller_than_the_minimum_lowers_it_to_its_size() {
    let mut h = Harness::new(policy().window(Window::Count(2)).minimum_calls(100));
    h.calls(secs(0), &[FAIL, FAIL]);
    assert_eq!(h.state(), CircuitState::Open);
}

#[test]
fn a_count_window_forgets_its_oldest_call() {
    let mut h = Harness::new(policy().failure_rate(0.75));
    // FAIL FAIL OK OK, then two failures push out the two oldest: OK OK FAIL FAIL, 50 %.
    h.calls(secs(0), &[FAIL, FAIL, OK, OK, FAIL, FAIL]);
    assert_eq!(h.state(), CircuitState::Closed);
    // One more pushes out an OK: OK FAIL FAIL FAIL, 75 % (over all seven calls: 71 %).
    h.calls(secs(0), &[FAIL]);
    assert_eq!(h.state(), CircuitState::Open);
}

#[test]
fn a_time_window_forgets_calls_older_than_the_window() {
    let mut h = Harness::new(policy().window(Window::Time(secs(10))).minimum_calls(2));
    h.call(secs(0), FAIL);
    // Eleven seconds later the first failure is out of the window: one call of one needed two.
    h.call(secs(11), FAIL);
    assert_eq!(h.state(), CircuitState::Closed);
    h.call(secs(12), FAIL);
    assert_eq!(h.state(), CircuitState::Open);
}

#[test]
fn a_time_window_counts_calls_across_its_buckets() {
    let mut h = Harness::new(policy().window(Window::Time(secs(10))).minimum_calls(3));
    h.call(secs(1), FAIL);
    h.call(secs(5), OK);
    h.call(secs(9), FAIL);
    assert_eq!(h.state(), CircuitState::Open);
}

#[test]
fn opens_on_the_slow_call_rate_even_when_every_call_succeeds() {
    let mut h = Harness::new(policy().slow_call_rate(0.5));
    h.calls(secs(0), &[OK, OK, SLOW]);
    let transition = h.call(secs(0), SLOW);
    assert!(
        matches!(
            transition,
            Some(Transition::Opened { slow_call_rate, .. }) if slow_call_rate == 0.5
        ),
        "{transition:?}"
    );
}

#[test]
fn an_open_circuit_refuses_with_the_time_left() {
    let mut h = Harness::new(policy());
    h.calls(secs(0), &[FAIL; 4]);
    assert_eq!(h.admit(secs(3)), Err(Some(secs(7))));
    assert_eq!(
        h.admit(Duration::from_millis(9_999)),
        Err(Some(Duration::from_millis(1)))
    );
}

#[test]
fn the_open_duration_passed_turns_the_circuit_half_open_on_the_next_call() {
    let mut h = Harness::new(policy());
    h.calls(secs(0), &[FAIL; 4]);
    let now = h.at(secs(10));
    let (admission, transition) = h.circuit.admit(&h.policy, now);
    assert!(admission.is_ok());
    assert_eq!(transition, Some(Transition::HalfOpened));
    assert_eq!(h.state(), CircuitState::HalfOpen);
}

#[test]
fn a_failed_probe_opens_the_circuit_again_for_a_full_duration() {
    let mut h = Harness::new(policy());
    h.calls(secs(0), &[FAIL; 4]);
    let transition = h.call(secs(10), FAIL);
    assert!(matches!(transition, Some(Transition::Opened { .. })));
    assert_eq!(h.admit(secs(12)), Err(Some(secs(8))));
}

#[test]
fn a_slow_probe_opens_the_circuit_again() {
    let mut h = Harness::new(policy());
    h.calls(secs(0), &[FAIL; 4]);
    h.call(secs(10), SLOW);
    assert_eq!(h.state(), CircuitState::Open);
}

#[test]
fn a_successful_probe_closes_the_circuit_with_a_fresh_window() {
    let mut h = Harness::new(policy());
    h.calls(secs(0), &[FAIL; 4]);
    assert_eq!(h.call(secs(10), OK), Some(Transition::Closed));
    assert_eq!(h.state(), CircuitState::Closed);
    // The failures from before the break are forgotten: three more do not reach the minimum.
    h.calls(secs(10), &[FAIL, FAIL, FAIL]);
    assert_eq!(h.state(), CircuitState::Closed);
}

#[test]
fn concurrent_probes_beyond_the_bound_are_refused_until_one_ends() {
    let mut h = Harness::new(policy().half_open_calls(2));
    h.calls(secs(0), &[FAIL; 4]);
    let first = h.admit(secs(10)).unwrap();
    let second = h.admit(secs(10)).unwrap();
    assert_eq!(h.admit(secs(10)), Err(None), "a third probe is refused");
    let now = h.at(secs(11));
    assert_eq!(h.circuit.record(&h.policy, first, OK, now), None);
    assert_eq!(
        h.state(),
        CircuitState::HalfOpen,
        "one probe of two succeeded"
    );
    assert_eq!(
        h.admit(secs(11)),
        Err(None),
        "a finished probe keeps its slot"
    );
    assert_eq!(
        h.circuit.record(&h.policy, second, OK, now),
        Some(Transition::Closed)
    );
}

#[test]
fn a_neutral_probe_gives_its_slot_back() {
    let mut h = Harness::new(policy());
    h.calls(secs(0), &[FAIL; 4]);
    let probe = h.admit(secs(10)).unwrap();
    assert_eq!(h.admit(secs(10)), Err(None));
    let now = h.at(secs(10));
    assert_eq!(
        h.circuit.record(&h.policy, probe, Verdict::Neutral, now),
        None
    );
    assert_eq!(h.state(), CircuitState::HalfOpen);
    assert!(h.admit(secs(10)).is_ok(), "another call may probe");
}

#[test]
fn a_call_let_through_before_the_circuit_opened_is_not_counted_after() {
    let mut h = Harness::new(policy());
    let straggler = h.admit(secs(0)).unwrap();
    h.calls(secs(0), &[FAIL; 4]);
    // The circuit broke and a probe closed it; the straggler's failure belongs to the old
    // window and must not count in the new one.
    h.call(secs(10), OK);
    let now = h.at(secs(10));
    assert_eq!(h.circuit.record(&h.policy, straggler, FAIL, now), None);
    h.calls(secs(10), &[FAIL, OK, OK]);
    assert_eq!(
        h.state(),
        CircuitState::Closed,
        "1 failure of 3 counted calls"
    );
}

#[test]
fn a_success_during_the_open_state_does_not_close_it() {
    let mut h = Harness::new(policy());
    let straggler = h.admit(secs(0)).unwrap();
    h.calls(secs(0), &[FAIL; 4]);
    let now = h.at(secs(1));
    assert_eq!(h.circuit.record(&h.policy, straggler, OK, now), None);
    assert_eq!(h.state(), CircuitState::Open);
}

#[test]
fn jitter_adds_at_most_its_share_of_the_open_duration() {
    let mut full = Harness::new(policy().open_jitter(0.5).random_source(|| u64::MAX));
    full.calls(secs(0), &[FAIL; 4]);
    assert_eq!(full.admit(secs(0)), Err(Some(secs(15))));
    let mut none = Harness::new(policy().open_jitter(0.5).random_source(|| 0));
    none.calls(secs(0), &[FAIL; 4]);
    assert_eq!(none.admit(secs(0)), Err(Some(secs(10))));
}

#[test]
fn invalid_configurations_name_the_bad_input() {
    let err = |builder: CircuitBreakerPolicyBuilder| builder.build().unwrap_err();
    let b = CircuitBreakerPolicy::builder;
    assert_eq!(
        err(b().failure_rate(0.0)),
        CircuitBreakerPolicyError::FailureRate(0.0)
    );
    assert_eq!(
        err(b().failure_rate(1.5)),
        CircuitBreakerPolicyError::FailureRate(1.5)
    );
    assert_eq!(
        err(b().slow_call_rate(f64::NAN)).to_string(),
        "slow_call_rate NaN is outside (0, 1]"
    );
    assert_eq!(
        err(b().window(Window::Count(0))),
        CircuitBreakerPolicyError::EmptyWindow(Window::Count(0))
    );
    assert_eq!(
        err(b().window(Window::Time(Duration::from_millis(99)))),
        CircuitBreakerPolicyError::EmptyWindow(Window::Time(Duration::from_millis(99)))
    );
    assert_eq!(
        err(b().minimum_calls(0)),
        CircuitBreakerPolicyError::ZeroMinimumCalls
    );
    assert_eq!(
        err(b().open_duration(Duration::ZERO)),
        CircuitBreakerPolicyError::ZeroOpenDuration
    );
    assert_eq!(
        err(b().open_jitter(-0.1)),
        CircuitBreakerPolicyError::Jitter(-0.1)
    );
    assert_eq!(
        err(b().half_open_calls(0)),
        CircuitBreakerPolicyError::ZeroHalfOpenCalls
    );
    assert_eq!(
        err(b().slow_call_duration(Duration::ZERO)),
        CircuitBreakerPolicyError::ZeroSlowCallDuration
    );
    assert_eq!(err(b().max_keys(0)), CircuitBreakerPolicyError::ZeroMaxKeys);
}

#[test]
fn the_defaults_do_not_count_a_429_as_a_failure() {
    let policy = CircuitBreakerPolicy::default();
    let classifier = policy.classifier();
    assert!(
        classifier
            .classify_status(http::StatusCode::TOO_MANY_REQUESTS)
            .is_none()
    );
    assert!(
        classifier
            .classify_status(http::StatusCode::SERVICE_UNAVAILABLE)
            .is_some()
    );
}
