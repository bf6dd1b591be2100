//! The GCRA cell, instant by instant, and the policy's validation.

use std::time::Duration;

use tokio::time::Instant;

use super::gcra::Cell;
use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// 10 per second (one every 100 ms) with a burst of 3, no wait.
fn policy() -> RateLimitPolicyBuilder {
    RateLimitPolicy::builder(10, Duration::from_secs(1)).burst(3)
}

#[test]
fn a_burst_goes_at_once_then_the_next_request_is_told_the_wait() {
    let policy = policy().build().unwrap();
    let start = Instant::now();
    let mut cell = Cell::new(start);
    for _ in 0..3 {
        assert_eq!(cell.take(&policy, start), Ok(Duration::ZERO));
    }
    assert_eq!(cell.take(&policy, start), Err(ms(100)));
    assert_eq!(cell.take(&policy, start + ms(40)), Err(ms(60)));
    assert_eq!(cell.take(&policy, start + ms(100)), Ok(Duration::ZERO));
}

#[test]
fn a_refused_request_takes_no_turn() {
    let policy = policy().burst(1).build().unwrap();
    let start = Instant::now();
    let mut cell = Cell::new(start);
    assert_eq!(cell.take(&policy, start), Ok(Duration::ZERO));
    for _ in 0..5 {
        assert_eq!(cell.take(&policy, start), Err(ms(100)));
    }
    assert_eq!(cell.take(&policy, start + ms(100)), Ok(Duration::ZERO));
}

#[test]
fn waiting_requests_take_successive_turns() {
    let policy = policy().burst(1).max_wait(ms(250)).build().unwrap();
    let start = Instant::now();
    let mut cell = Cell::new(start);
    assert_eq!(cell.take(&policy, start), Ok(Duration::ZERO));
    assert_eq!(cell.take(&policy, start), Ok(ms(100)));
    assert_eq!(cell.take(&policy, start), Ok(ms(200)));
    assert_eq!(cell.take(&policy, start), Err(ms(300)), "past the bound");
}

#[test]
fn a_quiet_stretch_refills_the_burst_and_no_more() {
    let policy = policy().build().unwrap();
    let start = Instant::now();
    let mut cell = Cell::new(start);
    let later = start + Duration::from_secs(60);
    for _ in 0..3 {
        assert_eq!(cell.take(&policy, later), Ok(Duration::ZERO));
    }
    assert!(cell.take(&policy, later).is_err());
}

#[test]
fn a_pause_holds_every_request_until_it_ends() {
    let policy = policy().max_wait(Duration::from_secs(5)).build().unwrap();
    let start = Instant::now();
    let mut cell = Cell::new(start);
    cell.pause(start + Duration::from_secs(2));
    assert_eq!(cell.take(&policy, start), Ok(Duration::from_secs(2)));
    assert_eq!(
        cell.take(&policy, start + Duration::from_secs(1)),
        Ok(Duration::from_secs(1))
    );
    assert!(!cell.is_idle(start + Duration::from_secs(1)));
}

#[test]
fn a_shorter_pause_does_not_cut_a_longer_one() {
    let policy = policy().build().unwrap();
    let start = Instant::now();
    let mut cell = Cell::new(start);
    cell.pause(start + Duration::from_secs(5));
    cell.pause(start + Duration::from_secs(1));
    assert_eq!(cell.take(&policy, start), Err(Duration::from_secs(5)));
}

#[test]
fn a_cell_is_idle_once_its_turns_and_pause_are_past() {
    let policy = policy().build().unwrap();
    let start = Instant::now();
    let mut cell = Cell::new(start);
    cell.take(&policy, start).unwrap();
    assert!(!cell.is_idle(start));
    assert!(cell.is_idle(start + ms(100)));
}

#[test]
fn the_burst_defaults_to_the_requests_per_period() {
    let policy = RateLimitPolicy::builder(7, Duration::from_secs(1))
        .build()
        .unwrap();
    assert_eq!(policy.burst(), 7);
    assert_eq!(policy.max_wait(), Duration::ZERO);
}

#[test]
fn invalid_configurations_name_the_bad_input() {
    let err = |builder: RateLimitPolicyBuilder| builder.build().unwrap_err();
    assert_eq!(
        err(RateLimitPolicy::builder(0, Duration::from_secs(1))),
        RateLimitPolicyError::ZeroRequests
    );
    assert_eq!(
        err(RateLimitPolicy::builder(10, Duration::ZERO)),
        RateLimitPolicyError::PeriodTooShort {
            requests: 10,
            period: Duration::ZERO
        }
    );
    assert_eq!(err(policy().burst(0)), RateLimitPolicyError::ZeroBurst);
    assert_eq!(err(policy().max_keys(0)), RateLimitPolicyError::ZeroMaxKeys);
}
