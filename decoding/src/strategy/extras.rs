//! Cheap extras on top of Best-of-N: soft Best-of-N and threshold rejection sampling.

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
            cancel: input.cancel.clone(),
            ..clone_input(input)
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

/// Threshold rejection sampling: draw batches of `batch` answers (rows seeded `seed + r`,
/// continuing across batches) until one scores at least `threshold` or `max_tries` batches
/// were drawn; return the best seen.
pub fn rejection_sampling(
    input: &StrategyInput<'_>,
    reward: &dyn RewardModel,
    batch: usize,
    threshold: f32,
    max_tries: usize,
) -> Result<StrategyOutput> {
    if max_tries == 0 {
        return Err(DecodeError::InvalidParameter(
            "max_tries must be at least 1".into(),
        ));
    }
    let mut out: Option<StrategyOutput> = None;
    for t in 0..max_tries {
        let mut inp = clone_input(input);
        inp.sampling.seed = input.sampling.seed.wrapping_add((t * batch) as u64);
        inp.top_k = batch;
        inp.cancel = input.cancel.clone();
        let mut o = best_of_n(&inp, reward, batch)?;
        for c in o.best.iter_mut().chain(o.candidates.iter_mut().flatten()) {
            c.row += t * batch;
        }
        let hit = o.best.first().is_some_and(|c| c.score >= threshold);
        out = Some(match out.take() {
            None => o,
            Some(mut acc) => {
                acc.best.extend(o.best);
                acc.best
                    .sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
                if let (Some(all), Some(more)) = (acc.candidates.as_mut(), o.candidates) {
                    all.extend(more);
                }
                let s = &mut acc.stats;
                s.prompt_tokens += o.stats.prompt_tokens;
                s.cached_prompt_tokens += o.stats.cached_prompt_tokens;
                s.policy_tokens += o.stats.policy_tokens;
                s.reward_tokens += o.stats.reward_tokens;
                s.reward_calls += o.stats.reward_calls;
                s.rounds += 1;
                s.peak_kv_bytes = s.peak_kv_bytes.max(o.stats.peak_kv_bytes);
                s.policy_time += o.stats.policy_time;
                s.reward_time += o.stats.reward_time;
                acc
            }
        });
        if hit {
            break;
        }
    }
    let mut out = out.ok_or_else(|| DecodeError::InvalidParameter("no batch drawn".into()))?;
    out.best.truncate(input.top_k);
    Ok(out)
}

fn clone_input<'a>(input: &StrategyInput<'a>) -> StrategyInput<'a> {
    StrategyInput {
        decoder: input.decoder,
        tokenizer: input.tokenizer,
        prompt_ids: input.prompt_ids,
        reward_prompt: input.reward_prompt.clone(),
        sampling: input.sampling.clone(),
        stop: input.stop.clone(),
        top_k: input.top_k,
        return_candidates: input.return_candidates,
        cancel: input.cancel.clone(),
        stepper: input.stepper,
        prefix_cache: input.prefix_cache,
    }
}
