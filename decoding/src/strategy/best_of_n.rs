//! Best-of-N: sample N answers in one batch, return the highest-reward one.

use std::time::Instant;

use thresh_reward::RewardModel;

use super::rows::RowBatch;
use super::{
    RowRequest, StrategyInput, StrategyOutput, StrategyStats, candidate, score_rows, start_batch,
    top_k, validate,
};
use crate::error::Result;

/// Prefills the prompt once, forks it to `n` rows, decodes them in one batch (finished rows
/// leave the batch), scores every answer and returns the best (ties: lowest row).
pub fn best_of_n(
    input: &StrategyInput<'_>,
    reward: &dyn RewardModel,
    n: usize,
) -> Result<StrategyOutput> {
    validate(input)?;
    let t = Instant::now();
    let batch = start_batch(input, n)?;
    best_of_rows(batch, &RowRequest::of(input), reward, n, t)
}

/// Best-of-N over any [`RowBatch`] of `n` rows: run every row to its end, score every answer,
/// return the best.
pub(crate) fn best_of_rows<B: RowBatch>(
    mut batch: B,
    request: &RowRequest<'_>,
    reward: &dyn RewardModel,
    n: usize,
    t: Instant,
) -> Result<StrategyOutput> {
    batch.advance(None)?;
    let (rows, bstats) = batch.finish();
    let mut stats = StrategyStats {
        prompt_tokens: bstats.prompt_tokens,
        cached_prompt_tokens: bstats.cached_prompt_tokens,
        policy_tokens: bstats.generated_tokens,
        initial_batch: n,
        rounds: 1,
        peak_kv_bytes: bstats.peak_kv_bytes,
        policy_time: t.elapsed(),
        ..Default::default()
    };
    let all: Vec<usize> = (0..rows.len()).collect();
    let scores = score_rows(reward, request.reward_prompt, &rows, &all, &mut stats)?;
    let best = top_k(
        all.iter().map(|&r| (r, scores[r])).collect(),
        &rows,
        request.top_k,
    );
    let candidates = request.return_candidates.then(|| {
        all.iter()
            .map(|&r| candidate(r, &rows[r], scores[r], None))
            .collect()
    });
    Ok(StrategyOutput {
        best,
        candidates,
        stats,
    })
}
