//! How the property tests run: a fixed seed, so a failure is repeatable on every machine, and
//! 64 cases per property in `cargo test`; `PROPTEST_CASES=100000 cargo test` runs many more,
//! and `PROPTEST_RNG_SEED=<n>` another sequence (proptest's own variables).

use proptest::test_runner::{Config, RngSeed};

/// The configuration every property test of the crate uses.
pub(crate) fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(64);
    let seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x5709_0e7e);
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}
