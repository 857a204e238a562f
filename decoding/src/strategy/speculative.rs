//! Speculative Rejection (Sun et al., NeurIPS 2024), as the official code runs it, on
//! thresh's prunable batch: start with the largest batch the KV budget allows, score partial
//! answers at the end of each round, keep the best `(1 - alpha)` share, and finish only the
//! survivors. Kept rows continue on their gathered KV cache; nothing is re-prefilled.

use std::collections::HashMap;
use std::time::Instant;

use thresh_reward::RewardModel;

use super::{
    StrategyInput, StrategyOutput, StrategyStats, candidate, rank, score_rows, start_batch, top_k,
    validate,
};
use crate::error::{DecodeError, Result};

/// Parameters of Speculative Rejection.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeculativeParams {
    /// Fraction of the ranked candidates **rejected** at each decision, `0 <= alpha < 1`
    /// (alpha = 0 keeps everything and reduces to Best-of-N; some peer implementations use
    /// the kept fraction instead).
    pub alpha: f32,
    /// KV token budget B (summed over rows, prompt included), standing in for GPU memory.
    pub kv_budget_tokens: usize,
    /// Cap on the initial batch.
    pub max_batch: usize,
    /// Explicit initial batch N0 (otherwise derived from the budget).
    pub initial_batch: Option<usize>,
    /// The single-round variant: decide at these new-token counts (tau) instead of when the
    /// budget is reached.
    pub decision_tokens: Option<Vec<usize>>,
}

/// The largest batch for which every row can still generate at least 8 tokens within the
/// budget (`B / N0 - prompt_len >= 8`), between 1 and `max_batch`.
pub fn initial_batch(budget: usize, prompt_len: usize, max_batch: usize) -> usize {
    (budget / (prompt_len + 8)).clamp(1, max_batch.max(1))
}

/// Candidates kept out of `m`: `round_half_even((1 - alpha) m)`, at least 1.
pub fn keep_count(alpha: f32, m: usize) -> usize {
    ((1.0 - alpha as f64) * m as f64).round_ties_even().max(1.0) as usize
}

/// Runs Speculative Rejection and returns the best kept answers.
pub fn speculative_rejection(
    input: &StrategyInput<'_>,
    reward: &dyn RewardModel,
    params: &SpeculativeParams,
) -> Result<StrategyOutput> {
    validate(input)?;
    if !(0.0..1.0).contains(&params.alpha) {
        return Err(DecodeError::InvalidParameter(format!(
            "alpha (the fraction rejected per round) must be in [0, 1), got {}",
            params.alpha
        )));
    }
    let prompt_len = input.prompt_ids.len();
    if params.kv_budget_tokens < prompt_len + 8 && params.initial_batch.is_none() {
        return Err(DecodeError::InvalidParameter(format!(
            "kv budget of {} tokens cannot hold the {prompt_len}-token prompt plus 8 tokens",
            params.kv_budget_tokens
        )));
    }
    let n0 = params
        .initial_batch
        .unwrap_or_else(|| initial_batch(params.kv_budget_tokens, prompt_len, params.max_batch));
    let t = Instant::now();
    let mut batch = start_batch(input, n0)?;
    let mut stats = StrategyStats {
        initial_batch: n0,
        ..Default::default()
    };
    // Finished rows that survived every decision so far, with their (final) scores.
    let mut kept_finished: Vec<(usize, f32)> = Vec::new();
    let mut score_of: HashMap<usize, f32> = HashMap::new();
    let mut pruned_in: HashMap<usize, usize> = HashMap::new();
    let mut taus = params
        .decision_tokens
        .clone()
        .unwrap_or_default()
        .into_iter();
    let mut budget_binds = params.decision_tokens.is_none();
    let mut round = 0;
    while !batch.is_done() {
        round += 1;
        let tau = if params.decision_tokens.is_some() {
            taus.next()
        } else {
            None
        };
        // A round that starts over budget (nothing was dropped last time) cannot be bounded
        // by the budget any more: it runs to the end.
        if budget_binds
            && batch.active_rows().len() * (batch.cache().len() + 1) > params.kv_budget_tokens
        {
            budget_binds = false;
        }
        let mut finished_now: Vec<usize> = Vec::new();
        loop {
            if batch.is_done() {
                break;
            }
            let generated = batch.cache().len() - prompt_len;
            let over_budget = budget_binds
                && batch.active_rows().len() * (batch.cache().len() + 1) > params.kv_budget_tokens;
            if over_budget || tau.is_some_and(|t| generated >= t) {
                break;
            }
            finished_now.extend(batch.step()?);
        }
        stats.rounds = round;
        if batch.is_done() {
            // Everything finished within this round: no decision left to make; the answer
            // is the best over the survivors and this round's rows.
            let scores = score_rows(
                reward,
                &input.reward_prompt,
                batch.rows(),
                &finished_now,
                &mut stats,
            )?;
            for (&r, s) in finished_now.iter().zip(scores) {
                score_of.insert(r, s);
                kept_finished.push((r, s));
            }
            break;
        }
        // Decision: rank the finished survivors with every row of this round.
        let mut this_round: Vec<usize> = finished_now.clone();
        this_round.extend_from_slice(batch.active_rows());
        let scores = score_rows(
            reward,
            &input.reward_prompt,
            batch.rows(),
            &this_round,
            &mut stats,
        )?;
        let mut ranked: Vec<(usize, f32)> = kept_finished.clone();
        for (&r, s) in this_round.iter().zip(scores) {
            score_of.insert(r, s);
            ranked.push((r, s));
        }
        // Stable order on ties: by row.
        rank(&mut ranked);
        let keep = keep_count(params.alpha, ranked.len());
        let (kept, dropped) = ranked.split_at(keep.min(ranked.len()));
        let active: Vec<usize> = batch.active_rows().to_vec();
        let drop_active: Vec<usize> = dropped
            .iter()
            .map(|d| d.0)
            .filter(|r| active.contains(r))
            .collect();
        for d in dropped {
            pruned_in.insert(d.0, round);
        }
        stats.pruned_per_round.push(dropped.len());
        kept_finished = kept
            .iter()
            .copied()
            .filter(|k| !active.contains(&k.0))
            .collect();
        stats.peak_kv_bytes = stats.peak_kv_bytes.max(batch.stats().peak_kv_bytes);
        let before = batch.cache().bytes_in_use();
        batch.prune(&drop_active)?;
        stats
            .kv_bytes_per_round
            .push((before, batch.cache().bytes_in_use()));
    }
    let (rows, bstats) = batch.into_parts();
    stats.prompt_tokens = bstats.prompt_tokens;
    stats.cached_prompt_tokens = bstats.cached_prompt_tokens;
    stats.policy_tokens = bstats.generated_tokens;
    stats.peak_kv_bytes = stats.peak_kv_bytes.max(bstats.peak_kv_bytes);
    stats.policy_time = t.elapsed().saturating_sub(stats.reward_time);
    let best = top_k(kept_finished, &rows, input.top_k);
    let candidates = input.return_candidates.then(|| {
        (0..rows.len())
            .map(|r| {
                candidate(
                    r,
                    &rows[r],
                    score_of.get(&r).copied().unwrap_or(f32::NAN),
                    pruned_in.get(&r).copied(),
                )
            })
            .collect()
    });
    Ok(StrategyOutput {
        best,
        candidates,
        stats,
    })
}
