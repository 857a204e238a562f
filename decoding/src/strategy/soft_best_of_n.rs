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
    if !(lambda.is_finite() && lambda > 0.0) {
        return Err(DecodeError::InvalidParameter(format!(
            "lambda must be positive, got {lambda}"
        )));
    }
    let all = best_of_n(
        &StrategyInput {
            top_k: n,
            return_candidates: true,
            ..input.clone()
        },
        reward,
        n,
    )?;
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
    let mut rng = StdRng::seed_from_u64(input.sampling.seed ^ 0x5eed_50f7);
    let mut u = rng.random::<f64>() * total;
    let mut pick = ranked.len() - 1;
    for (i, w) in weights.iter().enumerate() {
        u -= w;
        if u <= 0.0 {
            pick = i;
            break;
        }
    }
    let mut best = vec![ranked[pick].clone()];
    best.extend(
        ranked
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != pick)
            .map(|(_, c)| c.clone()),
    );
    best.truncate(input.top_k);
    Ok(StrategyOutput {
        best,
        candidates: if input.return_candidates {
            all.candidates
        } else {
            None
        },
        stats: all.stats,
    })
}
