//! Soft Best-of-N: Best-of-N's samples, one drawn with probability growing with its reward.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use thresh_reward::RewardModel;

use super::{StrategyInput, StrategyOutput, best_of_n};
use crate::error::{DecodeError, Result};

/// Soft Best-of-N: sample `n` answers and return one drawn with probability proportional to
/// `exp(r / lambda)` (seeded by the request's seed); `lambda -> 0` is Best-of-N, large
/// `lambda` plain sampling. The drawn answer comes first in `best`, then the others by score.
pub fn soft_best_of_n(
    input: &StrategyInput<'_>,
    reward: &dyn RewardModel,
    n: usize,
    lambda: f32,
) -> Result<StrategyOutput> {
    check_lambda(lambda)?;
    let all = best_of_n(
        &StrategyInput {
            top_k: n,
            return_candidates: true,
            ..input.clone()
        },
        reward,
        n,
    )?;
    Ok(soft_pick(
        all,
        input.sampling.seed,
        lambda,
        input.top_k,
        input.return_candidates,
    ))
}

/// Refuses a `lambda` that is not a positive number.
pub(crate) fn check_lambda(lambda: f32) -> Result<()> {
    if lambda.is_finite() && lambda > 0.0 {
        Ok(())
    } else {
        Err(DecodeError::InvalidParameter(format!(
            "lambda must be positive, got {lambda}"
        )))
    }
}

/// The soft draw over a Best-of-N output whose `best` ranks every candidate: one drawn with
/// probability proportional to `exp(r / lambda)` from an RNG seeded by `seed`, first, then
/// the others by score, `top_k` in all.
pub(crate) fn soft_pick(
    all: StrategyOutput,
    seed: u64,
    lambda: f32,
    top_k: usize,
    return_candidates: bool,
) -> StrategyOutput {
    let ranked = all.best;
    let max = ranked
        .iter()
        .map(|c| c.score)
        .fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = ranked
        .iter()
        .map(|c| (((c.score - max) / lambda) as f64).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_50f7);
    let mut u = rng.random::<f64>() * total;
    let mut pick = ranked.len().saturating_sub(1);
    for (i, w) in weights.iter().enumerate() {
        u -= w;
        if u <= 0.0 {
            pick = i;
            break;
        }
    }
    let mut best: Vec<_> = ranked.get(pick).cloned().into_iter().collect();
    best.extend(
        ranked
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != pick)
            .map(|(_, c)| c.clone()),
    );
    best.truncate(top_k);
    StrategyOutput {
        best,
        candidates: if return_candidates {
            all.candidates
        } else {
            None
        },
        stats: all.stats,
    }
}
