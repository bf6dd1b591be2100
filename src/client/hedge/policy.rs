//! [`HedgePolicy`]: when copies go, how many, and what they may spend.

use std::time::Duration;

use crate::client::budget::InvalidBudget;
use crate::client::{Budget, Classifier};

/// A hedging configuration that cannot work, found when the policy is built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HedgePolicyError {
    /// `max_hedges` was outside 1 to 10.
    #[error("max_hedges {0} is outside 1 to 10")]
    MaxHedges(u32),
    /// The delay quantile was not above 0 and at most 1.
    #[error("delay quantile {0} is outside 0 (excluded) to 1")]
    Quantile(f64),
    /// The window of the latency record was outside 100 ms to 10 min.
    #[error("quantile window {0:?} is outside 100 ms to 10 min")]
    QuantileWindow(Duration),
    /// `min_samples` was 0.
    #[error("min_samples must be at least 1")]
    ZeroMinSamples,
    /// `max_keys` was 0.
    #[error("max_keys must be at least 1")]
    ZeroMaxKeys,
    /// The budget window was outside 1 s to 60 s.
    #[error("budget window {0:?} is outside 1 s to 60 s")]
    BudgetWindow(Duration),
    /// The budget ratio was negative, not finite, or above 1000.
    #[error("budget ratio {0} is outside 0 to 1000")]
    BudgetRatio(f64),
}

/// When a [`Hedge`](super::Hedge) sends copies of a request, and how many.
///
/// Built with [`HedgePolicy::builder`]; the defaults are stated on each builder method.
#[derive(Debug, Clone)]
pub struct HedgePolicy {
    pub(super) delay: Duration,
    pub(super) quantile: Option<f64>,
    pub(super) quantile_window: Duration,
    pub(super) min_samples: u32,
    pub(super) max_keys: usize,
    pub(super) max_hedges: u32,
    pub(super) classifier: Classifier,
    pub(super) budget: Option<Budget>,
}

impl Default for HedgePolicy {
    fn default() -> Self {
        HedgePolicy {
            delay: Duration::from_secs(2),
            quantile: None,
            quantile_window: Duration::from_secs(10),
            min_samples: 20,
            max_keys: 1024,
            max_hedges: 1,
            classifier: Classifier::default(),
            budget: Some(Budget::default()),
        }
    }
}

impl HedgePolicy {
    /// Starts a policy from the defaults: one copy after a fixed 2 s (Polly's defaults), the
    /// failures of [`Classifier::default`], and the default [`Budget`].
    pub fn builder() -> HedgePolicyBuilder {
        HedgePolicyBuilder {
            policy: HedgePolicy::default(),
        }
    }

    /// The fixed delay: the delay itself, or the fallback of a quantile delay.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The quantile of the latencies seen that the delay is read from, if one was set.
    pub fn delay_quantile(&self) -> Option<f64> {
        self.quantile
    }

    /// The most copies sent besides the first request.
    pub fn max_hedges(&self) -> u32 {
        self.max_hedges
    }
}

/// Builds a [`HedgePolicy`]; see [`HedgePolicy::builder`].
#[derive(Debug, Clone)]
pub struct HedgePolicyBuilder {
    policy: HedgePolicy,
}

impl HedgePolicyBuilder {
    /// How long to wait for an answer before sending the next copy. Default 2 s; zero sends
    /// every copy at once. With [`delay_quantile`](Self::delay_quantile), the delay used until
    /// the latency record has enough samples.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.policy.delay = delay;
        self
    }

    /// Reads the delay from the latencies seen: the `quantile` (0.95 for the 95th percentile)
    /// of how long first requests took to answer, per key (the origin by default,
    /// [`Hedge::key`](super::Hedge::key) otherwise). Default: none, the fixed
    /// [`delay`](Self::delay) is used.
    ///
    /// The record is kept per window of [`quantile_window`](Self::quantile_window) (default
    /// 10 s), and the delay of a window is read from the window before it, as tower's hedge
    /// does: a window with fewer than [`min_samples`](Self::min_samples) answers (default 20),
    /// and a key's first window, leave the fixed delay in place. The value read is the upper
    /// edge of the latency bucket holding the quantile, at most one eighth above the latencies
    /// in it. A first request overtaken by a copy counts with the time it had run when it was
    /// cancelled; failures do not count.
    ///
    /// ```
    /// use std::time::Duration;
    /// use stopover::client::hedge::HedgePolicy;
    ///
    /// // A copy once a request is slower than 95 % of those of the previous 10 s,
    /// // after 200 ms until 20 answers have been seen.
    /// let policy = HedgePolicy::builder()
    ///     .delay_quantile(0.95)
    ///     .delay(Duration::from_millis(200))
    ///     .build()?;
    /// # let _ = policy;
    /// # Ok::<(), stopover::client::hedge::HedgePolicyError>(())
    /// ```
    pub fn delay_quantile(mut self, quantile: f64) -> Self {
        self.policy.quantile = Some(quantile);
        self
    }

    /// The length of one window of the latency record. Default 10 s; between 100 ms and
    /// 10 min. Only used with [`delay_quantile`](Self::delay_quantile).
    pub fn quantile_window(mut self, window: Duration) -> Self {
        self.policy.quantile_window = window;
        self
    }

    /// How many answers a window needs before its quantile is used. Default 20; at least 1.
    /// Only used with [`delay_quantile`](Self::delay_quantile).
    pub fn min_samples(mut self, samples: u32) -> Self {
        self.policy.min_samples = samples;
        self
    }

    /// How many keys the latency record keeps. Default 1024; at least 1. Past it, keys not seen
    /// for two windows are forgotten, and a new key that still finds no room is hedged after
    /// the fixed delay. Only used with [`delay_quantile`](Self::delay_quantile).
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.policy.max_keys = keys;
        self
    }

    /// The most copies sent besides the first request. Default 1; between 1 and 10.
    pub fn max_hedges(mut self, hedges: u32) -> Self {
        self.policy.max_hedges = hedges;
        self
    }

    /// Which answers are failures, that do not win and start the next copy at once. Default
    /// [`Classifier::default`].
    pub fn classifier(mut self, classifier: Classifier) -> Self {
        self.policy.classifier = classifier;
        self
    }

    /// The budget the copies are taken from, shared by every request through one
    /// [`Hedge`](super::Hedge): each request it could hedge adds to it, each copy sent takes
    /// one, and a request finding it spent is not copied (an upstream that slows down as a
    /// whole is not sent twice its load). Default [`Budget::default`]: copies for 20 % of the
    /// requests of the last 10 s, and 10 whatever the traffic.
    pub fn budget(mut self, budget: Budget) -> Self {
        self.policy.budget = Some(budget);
        self
    }

    /// Removes the budget: every request may send all its copies.
    pub fn no_budget(mut self) -> Self {
        self.policy.budget = None;
        self
    }

    /// Checks the configuration and returns the policy.
    pub fn build(self) -> Result<HedgePolicy, HedgePolicyError> {
        let policy = self.policy;
        if !(1..=10).contains(&policy.max_hedges) {
            return Err(HedgePolicyError::MaxHedges(policy.max_hedges));
        }
        if let Some(quantile) = policy.quantile.filter(|q| !(*q > 0.0 && *q <= 1.0)) {
            return Err(HedgePolicyError::Quantile(quantile));
        }
        if policy.quantile_window < Duration::from_millis(100)
            || policy.quantile_window > Duration::from_secs(600)
        {
            return Err(HedgePolicyError::QuantileWindow(policy.quantile_window));
        }
        if policy.min_samples == 0 {
            return Err(HedgePolicyError::ZeroMinSamples);
        }
        if policy.max_keys == 0 {
            return Err(HedgePolicyError::ZeroMaxKeys);
        }
        if let Some(budget) = &policy.budget {
            budget.validate().map_err(|invalid| match invalid {
                InvalidBudget::Window(window) => HedgePolicyError::BudgetWindow(window),
                InvalidBudget::Ratio(ratio) => HedgePolicyError::BudgetRatio(ratio),
            })?;
        }
        Ok(policy)
    }
}
