//! The one place that matches on the strategy: the server, the device check and the benches
//! describe a strategy as a [`Strategy`] and call [`Strategy::run`].

use thresh_reward::RewardModel;

use super::{
    SpeculativeParams, StrategyInput, StrategyOutput, best_of_n, rejection_sampling,
    soft_best_of_n, speculative_rejection,
};
use crate::error::Result;

/// An alignment strategy with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    /// Best-of-N over `candidates` samples.
    BestOfN {
        /// Samples drawn.
        candidates: usize,
    },
    /// Speculative Rejection.
    Speculative(SpeculativeParams),
    /// Soft Best-of-N.
    SoftBestOfN {
        /// Samples drawn.
        candidates: usize,
        /// Softmax temperature over rewards.
        lambda: f32,
    },
    /// Threshold rejection sampling.
    Rejection {
        /// Samples per batch.
        candidates: usize,
        /// Reward to reach.
        threshold: f32,
        /// Batches at most.
        max_tries: usize,
    },
}

impl Strategy {
    /// The name used in requests, responses and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::BestOfN { .. } => "best_of_n",
            Strategy::Speculative(_) => "speculative_rejection",
            Strategy::SoftBestOfN { .. } => "soft_best_of_n",
            Strategy::Rejection { .. } => "rejection_sampling",
        }
    }

    /// Rows decoded at once at the start (Speculative Rejection: the initial batch, or its
    /// cap when the budget sets it).
    pub fn batch_rows(&self) -> usize {
        match self {
            Strategy::BestOfN { candidates }
            | Strategy::SoftBestOfN { candidates, .. }
            | Strategy::Rejection { candidates, .. } => *candidates,
            Strategy::Speculative(p) => p.initial_batch.unwrap_or(p.max_batch),
        }
    }

    /// Runs the strategy for one request.
    pub fn run(
        &self,
        input: &StrategyInput<'_>,
        reward: &dyn RewardModel,
    ) -> Result<StrategyOutput> {
        match self {
            Strategy::BestOfN { candidates } => best_of_n(input, reward, *candidates),
            Strategy::Speculative(params) => speculative_rejection(input, reward, params),
            Strategy::SoftBestOfN { candidates, lambda } => {
                soft_best_of_n(input, reward, *candidates, *lambda)
            }
            Strategy::Rejection {
                candidates,
                threshold,
                max_tries,
            } => rejection_sampling(input, reward, *candidates, *threshold, *max_tries),
        }
    }
}
