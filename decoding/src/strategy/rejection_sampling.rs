//! Threshold rejection sampling: batches of samples until one reaches a reward threshold.

use thresh_reward::RewardModel;

use super::{StrategyInput, StrategyOutput, best_of_n};
use crate::error::{DecodeError, Result};

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
    tries(batch, threshold, max_tries, input.top_k, |offset| {
        let mut inp = input.clone();
        inp.sampling.seed = input.sampling.seed.wrapping_add(offset);
        inp.top_k = batch;
        best_of_n(&inp, reward, batch)
    })
}

/// The loop of [`rejection_sampling`] over any source of batches: `draw(offset)` returns the
/// Best-of-`batch` of rows seeded from `seed + offset` with every row ranked in `best`.
/// Rows are renumbered across batches, and the stats are summed.
pub(crate) fn tries(
    batch: usize,
    threshold: f32,
    max_tries: usize,
    top_k: usize,
    mut draw: impl FnMut(u64) -> Result<StrategyOutput>,
) -> Result<StrategyOutput> {
    if max_tries == 0 {
        return Err(DecodeError::InvalidParameter(
            "max_tries must be at least 1".into(),
        ));
    }
    let mut out: Option<StrategyOutput> = None;
    for t in 0..max_tries {
        let mut o = draw((t * batch) as u64)?;
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
    out.best.truncate(top_k);
    Ok(out)
}
