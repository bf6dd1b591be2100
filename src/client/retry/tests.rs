//! The policy's decisions and delays, the budget, and the parsing of `Retry-After`.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, StatusCode};

use super::*;
use http::HeaderValue;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn headers_with_retry_after(value: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static(value));
    headers
}

#[test]
fn defaults_are_three_attempts_and_the_usual_statuses() {
    let policy = RetryPolicy::builder().build().unwrap();
    assert_eq!(policy.max_attempts(), 3);
    for code in [408, 429, 500, 502, 503, 504] {
        let status = StatusCode::from_u16(code).unwrap();
        assert!(policy.is_retryable_status(status), "{code}");
    }
    for code in [400, 401, 403, 404, 409, 501, 505] {
        let status = StatusCode::from_u16(code).unwrap();
        assert!(!policy.is_retryable_status(status), "{code}");
    }
}

#[test]
fn idempotent_methods_are_replayable_by_default() {
    let policy = RetryPolicy::default();
    for method in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        assert!(policy.is_replayable(&method, &HeaderMap::new()), "{method}");
    }
}

#[test]
fn post_and_patch_are_not_replayable_by_default() {
    let policy = RetryPolicy::default();
    for method in [Method::POST, Method::PATCH, Method::CONNECT] {
        assert!(
            !policy.is_replayable(&method, &HeaderMap::new()),
            "{method}"
        );
    }
}

#[test]
fn idempotency_key_makes_post_replayable() {
    let policy = RetryPolicy::default();
    let mut headers = HeaderMap::new();
    headers.insert("Idempotency-Key", HeaderValue::from_static("8e03978e"));
    assert!(policy.is_replayable(&Method::POST, &headers));
    assert!(policy.is_replayable(&Method::PATCH, &headers));
}

#[test]
fn opting_in_makes_post_replayable() {
    let policy = RetryPolicy::builder()
        .retry_non_idempotent(true)
        .build()
        .unwrap();
    assert!(policy.is_replayable(&Method::POST, &HeaderMap::new()));
}

#[test]
fn retry_after_delta_seconds() {
    assert_eq!(parse_retry_after("0", at(0)), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after(" 120 ", at(0)),
        Some(Duration::from_secs(120))
    );
}

#[test]
fn retry_after_huge_number_saturates_instead_of_failing() {
    assert_eq!(
        parse_retry_after("99999999999999999999999", at(0)),
        Some(Duration::from_secs(u64::MAX))
    );
}

#[test]
fn retry_after_http_date_is_relative_to_the_clock() {
    // Sun, 06 Nov 1994 08:49:37 GMT is 784111777 seconds after the epoch (RFC 9110 example).
    let now = at(784_111_777 - 30);
    for form in [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
    ] {
        assert_eq!(
            parse_retry_after(form, now),
            Some(Duration::from_secs(30)),
            "{form}"
        );
    }
}

#[test]
fn retry_after_date_in_the_past_is_no_wait() {
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at(784_111_777 + 5)),
        Some(Duration::ZERO)
    );
}

#[test]
fn retry_after_garbage_is_ignored() {
    for value in ["", "-5", "1.5", "soon", "Sun, 06 Nov 1994", "0x10"] {
        assert_eq!(parse_retry_after(value, at(0)), None, "{value:?}");
    }
}

#[test]
fn retry_after_wins_over_backoff_and_is_capped() {
    let policy = RetryPolicy::builder()
        .retry_after_cap(Duration::from_secs(20))
        .wall_clock(|| at(784_111_777 - 300))
        .build()
        .unwrap();
    assert_eq!(
        policy.delay(1, Some(&headers_with_retry_after("7"))),
        Delay::RetryAfter(Duration::from_secs(7))
    );
    assert_eq!(
        policy.delay(1, Some(&headers_with_retry_after("3600"))),
        Delay::RetryAfter(Duration::from_secs(20))
    );
    assert_eq!(
        policy.delay(
            1,
            Some(&headers_with_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"))
        ),
        Delay::RetryAfter(Duration::from_secs(20))
    );
}

#[test]
fn unparsable_retry_after_falls_back_to_backoff() {
    let policy = RetryPolicy::builder()
        .backoff(Duration::from_secs(1), Duration::from_secs(8))
        .random_source(|| u64::MAX)
        .build()
        .unwrap();
    assert_eq!(
        policy.delay(2, Some(&headers_with_retry_after("later"))),
        Delay::Backoff(Duration::from_secs(2))
    );
    assert_eq!(
        policy.delay(2, None),
        Delay::Backoff(Duration::from_secs(2))
    );
}

#[test]
fn backoff_ceiling_doubles_up_to_the_maximum() {
    let policy = RetryPolicy::builder()
        .backoff(Duration::from_millis(100), Duration::from_millis(750))
        .build()
        .unwrap();
    let ceilings: Vec<_> = (1..=6).map(|n| policy.backoff_ceiling(n)).collect();
    assert_eq!(
        ceilings,
        [100, 200, 400, 750, 750, 750].map(Duration::from_millis)
    );
    assert_eq!(policy.backoff_ceiling(u32::MAX), Duration::from_millis(750));
}

#[test]
fn backoff_is_full_jitter_below_the_ceiling() {
    let max = RetryPolicy::builder()
        .backoff(Duration::from_secs(1), Duration::from_secs(30))
        .random_source(|| u64::MAX)
        .build()
        .unwrap();
    assert_eq!(max.backoff(3), Duration::from_secs(4));
    let zero = RetryPolicy::builder().random_source(|| 0).build().unwrap();
    assert_eq!(zero.backoff(3), Duration::ZERO);
    let half = RetryPolicy::builder()
        .backoff(Duration::from_secs(1), Duration::from_secs(30))
        .random_source(|| u64::MAX / 2)
        .build()
        .unwrap();
    assert_eq!(half.backoff(2).as_millis(), 999);
}

#[test]
fn default_random_source_spreads_delays() {
    let policy = RetryPolicy::builder()
        .backoff(Duration::from_secs(1), Duration::from_secs(1))
        .build()
        .unwrap();
    let delays: std::collections::HashSet<_> = (0..32).map(|_| policy.backoff(1)).collect();
    assert!(delays.len() > 16, "{delays:?}");
    assert!(delays.iter().all(|delay| *delay <= Duration::from_secs(1)));
}

#[test]
fn invalid_configurations_name_the_bad_input() {
    let err = |builder: RetryPolicyBuilder| builder.build().unwrap_err();
    assert_eq!(
        err(RetryPolicy::builder().max_attempts(0)),
        RetryPolicyError::ZeroAttempts
    );
    assert_eq!(
        err(RetryPolicy::builder().statuses([StatusCode::OK])),
        RetryPolicyError::NotAnErrorStatus(StatusCode::OK)
    );
    assert_eq!(
        err(RetryPolicy::builder().backoff(Duration::from_secs(2), Duration::from_secs(1))),
        RetryPolicyError::BackoffBaseAboveMax {
            base: Duration::from_secs(2),
            max: Duration::from_secs(1)
        }
    );
    assert_eq!(
        err(RetryPolicy::builder().total_deadline(Duration::ZERO)),
        RetryPolicyError::ZeroDeadline
    );
    assert_eq!(
        err(RetryPolicy::builder().budget(Budget::default().window(Duration::from_secs(61)))),
        RetryPolicyError::BudgetWindow(Duration::from_secs(61))
    );
    assert_eq!(
        err(RetryPolicy::builder().budget(Budget::default().ratio(-1.0))),
        RetryPolicyError::BudgetRatio(-1.0)
    );
    assert!(matches!(
        err(RetryPolicy::builder().budget(Budget::default().ratio(f64::NAN))),
        RetryPolicyError::BudgetRatio(_)
    ));
}

mod properties {
    //! `Retry-After` as a number of seconds and as an HTTP-date, against the wait it means.

    use std::time::{Duration, SystemTime};

    use proptest::prelude::*;

    use super::super::parse_retry_after;
    use crate::proptest_config::config;

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn delta_seconds_are_that_many_seconds(seconds in any::<u32>(), at in 0u64..4_000_000_000) {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(at);
            prop_assert_eq!(
                parse_retry_after(&seconds.to_string(), now),
                Some(Duration::from_secs(u64::from(seconds)))
            );
        }

        #[test]
        fn a_date_ahead_is_the_wait_until_it(ahead in 0u64..10_000_000, at in 0u64..4_000_000_000) {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(at);
            let date = httpdate::fmt_http_date(now + Duration::from_secs(ahead));
            prop_assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(ahead)));
        }

        #[test]
        fn a_date_behind_is_no_wait(behind in 1u64..10_000_000, at in 10_000_000u64..4_000_000_000) {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(at);
            let date = httpdate::fmt_http_date(now - Duration::from_secs(behind));
            prop_assert_eq!(parse_retry_after(&date, now), Some(Duration::ZERO));
        }

        #[test]
        fn any_other_text_is_none_or_a_wait_never_a_panic(value in any::<String>()) {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            let parsed = parse_retry_after(&value, now);
            if value.parse::<u64>().is_err() && httpdate::parse_http_date(&value).is_err() {
                prop_assert_eq!(parsed, None);
            }
        }
    }
}
