//! The latency record: its buckets, its quantile, its windows and its bound on keys.

use std::time::Duration;

use tokio::time::Instant;

use super::latency::{BUCKETS, Latencies, Reading, bucket, quantile, upper_edge};
use super::{HedgePolicy, HedgePolicyError};
use crate::client::Budget;

fn reading() -> Reading {
    Reading {
        quantile: 0.9,
        window: Duration::from_secs(10),
        min_samples: 10,
    }
}

#[test]
fn every_latency_falls_below_the_upper_edge_of_its_bucket_and_within_an_eighth() {
    for micros in (0..5_000u64).chain([65_535, 1 << 20, (1 << 27) - 1]) {
        let index = bucket(micros);
        assert!(index < BUCKETS);
        let edge = upper_edge(index);
        assert!(micros < edge, "{micros} in bucket {index} ending at {edge}");
        assert!(edge - micros <= 1 + micros / 8, "{micros}: edge {edge}");
        if index > 0 {
            assert!(
                upper_edge(index - 1) <= micros,
                "{micros} belongs to an earlier bucket"
            );
        }
    }
}

#[test]
fn latencies_past_the_last_bucket_share_it() {
    assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    assert_eq!(bucket(1 << 40), BUCKETS - 1);
}

#[test]
fn the_quantile_is_the_edge_of_the_bucket_holding_its_rank() {
    let mut counts = [0u32; BUCKETS];
    // 90 answers in 10 ms, 10 in 1 s: the 90th percentile is the 10 ms bucket.
    counts[bucket(10_000)] = 90;
    counts[bucket(1_000_000)] = 10;
    let p90 = quantile(&counts, 100, 0.9);
    assert_eq!(p90, Duration::from_micros(upper_edge(bucket(10_000))));
    let p91 = quantile(&counts, 100, 0.91);
    assert_eq!(p91, Duration::from_micros(upper_edge(bucket(1_000_000))));
}

#[tokio::test(start_paused = true)]
async fn no_delay_is_read_before_a_window_has_ended() {
    let latencies = Latencies::new(reading(), 8);
    let key = latencies.of("http://a:80", Instant::now()).unwrap();
    for _ in 0..50 {
        key.record(Instant::now(), Duration::from_millis(10), &reading());
    }
    assert_eq!(key.delay(Instant::now(), &reading()), None);
}

#[tokio::test(start_paused = true)]
async fn the_delay_of_a_window_is_read_from_the_window_before() {
    let latencies = Latencies::new(reading(), 8);
    let key = latencies.of("http://a:80", Instant::now()).unwrap();
    for _ in 0..10 {
        key.record(Instant::now(), Duration::from_millis(10), &reading());
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    let delay = key.delay(Instant::now(), &reading()).unwrap();
    assert!(delay >= Duration::from_millis(10) && delay <= Duration::from_micros(11_250));
}

#[tokio::test(start_paused = true)]
async fn a_window_with_too_few_answers_leaves_the_fixed_delay() {
    let latencies = Latencies::new(reading(), 8);
    let key = latencies.of("http://a:80", Instant::now()).unwrap();
    for _ in 0..9 {
        key.record(Instant::now(), Duration::from_millis(10), &reading());
    }
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(key.delay(Instant::now(), &reading()), None);
}

#[tokio::test(start_paused = true)]
async fn a_window_that_ended_long_ago_is_not_read() {
    let latencies = Latencies::new(reading(), 8);
    let key = latencies.of("http://a:80", Instant::now()).unwrap();
    for _ in 0..10 {
        key.record(Instant::now(), Duration::from_millis(10), &reading());
    }
    tokio::time::advance(Duration::from_secs(25)).await;
    assert_eq!(key.delay(Instant::now(), &reading()), None);
}

#[tokio::test(start_paused = true)]
async fn a_full_record_forgets_idle_keys_and_refuses_busy_ones() {
    let latencies = Latencies::new(reading(), 2);
    assert!(latencies.of("a", Instant::now()).is_some());
    assert!(latencies.of("b", Instant::now()).is_some());
    assert!(
        latencies.of("c", Instant::now()).is_none(),
        "a and b are in use"
    );
    assert!(
        latencies.of("a", Instant::now()).is_some(),
        "a known key is found"
    );
    tokio::time::advance(Duration::from_secs(21)).await;
    assert!(latencies.of("c", Instant::now()).is_some());
    assert_eq!(latencies.len(), 1);
}

#[test]
fn invalid_configurations_name_the_bad_input() {
    let err = |builder: super::HedgePolicyBuilder| builder.build().unwrap_err();
    let b = HedgePolicy::builder;
    assert_eq!(
        err(b().delay_quantile(0.0)),
        HedgePolicyError::Quantile(0.0)
    );
    assert_eq!(
        err(b().delay_quantile(1.5)),
        HedgePolicyError::Quantile(1.5)
    );
    assert!(matches!(
        err(b().delay_quantile(f64::NAN)),
        HedgePolicyError::Quantile(_)
    ));
    assert_eq!(
        err(b().quantile_window(Duration::from_millis(99))),
        HedgePolicyError::QuantileWindow(Duration::from_millis(99))
    );
    assert_eq!(err(b().min_samples(0)), HedgePolicyError::ZeroMinSamples);
    assert_eq!(err(b().max_keys(0)), HedgePolicyError::ZeroMaxKeys);
    assert_eq!(
        err(b().budget(Budget::default().ratio(-1.0))),
        HedgePolicyError::BudgetRatio(-1.0)
    );
    assert_eq!(
        err(b().budget(Budget::default().window(Duration::ZERO))),
        HedgePolicyError::BudgetWindow(Duration::ZERO)
    );
    assert!(b().delay_quantile(1.0).build().is_ok());
}
