//! Speculative Rejection (Sun et al., NeurIPS 2024) on thresh's prunable batch: start with a
//! large batch, score partial answers at each decision, keep the best share, and finish only
//! the survivors. Kept rows continue on their gathered KV cache; nothing is re-prefilled.
//!
//! A round's length is fixed when the round starts ([`Schedule::next_decision`]): rows that
//! finish during the round leave the compute batch at once (their KV cache is freed), but they
//! do not postpone the decision. This is how the official code runs it: it allocates a
//! round's cache for the whole batch up front (`[batch, cur_len + gen_len]`,
//! `gen_len = B / batch - cur_len`), so decisions come at lengths that grow geometrically
//! whatever the rows do.

use std::collections::HashMap;
use std::time::Instant;

use thresh_reward::RewardModel;

use super::adaptive::{auto_keep, measured_drift};
use super::rows::RowBatch;
use super::{
    NoDecision, RowRequest, StrategyInput, StrategyOutput, StrategyStats, candidate, rank,
    score_rows, start_batch, top_k, validate,
};
use crate::error::{DecodeError, Result};

/// How many of the ranked candidates a decision rejects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rejection {
    /// The paper's fixed fraction **rejected**, `0 <= alpha < 1` (alpha = 0 keeps everything
    /// and reduces to Best-of-N; some peer implementations use the kept fraction instead).
    Fixed(f32),
    /// Decided at each decision from the scores themselves (`alpha: "auto"`): keep every
    /// candidate within a margin of the leader estimated from how much this request's partial
    /// scores move (see [`super::adaptive`]).
    Auto,
}

/// When Speculative Rejection makes its decisions.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// The paper's rule: a round that starts with `alive` rows and a cache of `len` tokens
    /// (prompt included) lasts until each row's cache reaches `B / alive` tokens; a round
    /// that cannot (`B / alive <= len`) runs to the end.
    Budget,
    /// Decide when the rows have generated each of these token counts (ascending); after the
    /// last, the survivors run to the end. One entry is the authors' single-round variant.
    Tokens(Vec<usize>),
    /// The first decision after `first` generated tokens, each later one after twice as many
    /// as the one before (`first`, `2 first`, `4 first`, ...).
    Geometric {
        /// Generated tokens at the first decision.
        first: usize,
    },
}

impl Schedule {
    /// The server's default for a request of `max_tokens`: geometric from
    /// `max(8, max_tokens / 8)` tokens (the paper's first decision falls near an eighth of the
    /// answer budget), so a request with `max_tokens >= 32` decides at 1/8, 1/4 and 1/2 of it.
    pub fn default_for(max_tokens: usize) -> Schedule {
        Schedule::Geometric {
            first: (max_tokens / 8).max(8),
        }
    }

    /// The generated-token count at which the round starting now ends with a decision, for a
    /// round that starts with `alive` rows, `generated` tokens each and a cache of
    /// `cache_len` tokens, under a KV budget of `budget` tokens; `None`: the round runs to
    /// the end.
    pub fn next_decision(
        &self,
        generated: usize,
        alive: usize,
        cache_len: usize,
        budget: usize,
    ) -> Option<usize> {
        match self {
            Schedule::Budget => {
                let limit = budget / alive.max(1);
                (limit > cache_len).then(|| generated + (limit - cache_len))
            }
            Schedule::Tokens(taus) => taus.iter().copied().find(|&t| t > generated),
            Schedule::Geometric { first } => {
                let mut t = (*first).max(1);
                while t <= generated {
                    t = t.saturating_mul(2);
                }
                Some(t)
            }
        }
    }

    fn validate(&self) -> Result<()> {
        match self {
            Schedule::Budget => Ok(()),
            Schedule::Tokens(taus) => {
                if taus.first().is_none_or(|&t| t == 0) || taus.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(DecodeError::InvalidParameter(format!(
                        "decision_tokens must list positive, strictly increasing token counts, got {taus:?}"
                    )));
                }
                Ok(())
            }
            Schedule::Geometric { first: 0 } => Err(DecodeError::InvalidParameter(
                "first_decision_tokens must be at least 1".into(),
            )),
            Schedule::Geometric { .. } => Ok(()),
        }
    }
}

/// Parameters of Speculative Rejection.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeculativeParams {
    /// How many candidates each decision rejects.
    pub rejection: Rejection,
    /// KV token budget B (summed over rows, prompt included), standing in for GPU memory:
    /// it sets the initial batch unless `initial_batch` does, and the rounds of
    /// [`Schedule::Budget`].
    pub kv_budget_tokens: usize,
    /// Cap on the initial batch.
    pub max_batch: usize,
    /// Explicit initial batch N0 (otherwise derived from the budget).
    pub initial_batch: Option<usize>,
    /// When the decisions happen; `None`: [`Schedule::default_for`] the request's
    /// `max_tokens`.
    pub schedule: Option<Schedule>,
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

/// Checks the parameters and returns the schedule and the initial batch size.
pub(crate) fn plan(
    params: &SpeculativeParams,
    prompt_len: usize,
    max_tokens: usize,
) -> Result<(Schedule, usize)> {
    if let Rejection::Fixed(alpha) = params.rejection
        && !(0.0..1.0).contains(&alpha)
    {
        return Err(DecodeError::InvalidParameter(format!(
            "alpha (the fraction rejected per round) must be in [0, 1), got {alpha}"
        )));
    }
    let schedule = params
        .schedule
        .clone()
        .unwrap_or_else(|| Schedule::default_for(max_tokens));
    schedule.validate()?;
    if params.kv_budget_tokens < prompt_len + 8 && params.initial_batch.is_none() {
        return Err(DecodeError::InvalidParameter(format!(
            "kv budget of {} tokens cannot hold the {prompt_len}-token prompt plus 8 tokens",
            params.kv_budget_tokens
        )));
    }
    let n0 = params
        .initial_batch
        .unwrap_or_else(|| initial_batch(params.kv_budget_tokens, prompt_len, params.max_batch));
    Ok((schedule, n0))
}

/// Runs Speculative Rejection and returns the best kept answers.
pub fn speculative_rejection(
    input: &StrategyInput<'_>,
    reward: &dyn RewardModel,
    params: &SpeculativeParams,
) -> Result<StrategyOutput> {
    validate(input)?;
    let (schedule, n0) = plan(params, input.prompt_ids.len(), input.stop.max_tokens)?;
    let t = Instant::now();
    let batch = start_batch(input, n0)?;
    rounds(
        batch,
        &RowRequest::of(input),
        reward,
        params,
        &schedule,
        n0,
        t,
    )
}

/// The rounds of Speculative Rejection over any [`RowBatch`] of `n0` rows: each round's
/// length is fixed when it starts, every row alive in it (and every finished survivor) is
/// ranked at its end, and the rest are dropped.
pub(crate) fn rounds<B: RowBatch>(
    mut batch: B,
    request: &RowRequest<'_>,
    reward: &dyn RewardModel,
    params: &SpeculativeParams,
    schedule: &Schedule,
    n0: usize,
    t: Instant,
) -> Result<StrategyOutput> {
    let max_tokens = request.max_tokens;
    let mut stats = StrategyStats {
        initial_batch: n0,
        ..Default::default()
    };
    // Finished rows that survived every decision so far, with their (final) scores.
    let mut kept_finished: Vec<(usize, f32)> = Vec::new();
    let mut score_of: HashMap<usize, f32> = HashMap::new();
    let mut pruned_in: HashMap<usize, usize> = HashMap::new();
    // The scores of the rows still decoding at the last decision, and when it was.
    let mut scored_last: HashMap<usize, f32> = HashMap::new();
    let mut last_decision = 0;
    let mut first_decision = None;
    let mut round = 0;
    while !batch.is_done() {
        round += 1;
        // The round's length is fixed now, from the rows alive at its start.
        let decide_at = schedule.next_decision(
            batch.generated(),
            batch.active_rows().len(),
            batch.row_len(),
            params.kv_budget_tokens,
        );
        if round == 1 {
            first_decision = decide_at;
        }
        let finished_now = batch.advance(decide_at)?;
        stats.rounds = round;
        if batch.is_done() {
            // Everything finished within this round: no decision left to make; the answer
            // is the best over the survivors and this round's rows.
            let scores = score_rows(
                reward,
                request.reward_prompt,
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
        let at = batch.generated();
        stats.decision_tokens.push(at);
        // Decision: rank the finished survivors with every row of this round.
        let mut this_round: Vec<usize> = finished_now.clone();
        this_round.extend_from_slice(batch.active_rows());
        let scores = score_rows(
            reward,
            request.reward_prompt,
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
        let keep = match params.rejection {
            Rejection::Fixed(alpha) => keep_count(alpha, ranked.len()),
            Rejection::Auto => {
                let moved: Vec<(f32, f32)> = this_round
                    .iter()
                    .filter_map(|r| Some((*scored_last.get(r)?, score_of[r])))
                    .collect();
                let drift =
                    measured_drift(&moved, at - last_decision, max_tokens.saturating_sub(at));
                let scores: Vec<f32> = ranked.iter().map(|x| x.1).collect();
                auto_keep(&scores, drift, request.top_k).keep
            }
        };
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
        scored_last = kept
            .iter()
            .copied()
            .filter(|k| active.contains(&k.0))
            .collect();
        last_decision = at;
        stats.peak_kv_bytes = stats.peak_kv_bytes.max(batch.peak_kv_bytes());
        let bytes = batch.prune(&drop_active)?;
        stats.kv_bytes_per_round.push(bytes);
    }
    if stats.decision_tokens.is_empty() {
        stats.no_decision = Some(match first_decision {
            None => NoDecision::BudgetCannotBound,
            Some(d) if d >= max_tokens => NoDecision::BeyondMaxTokens,
            Some(_) => NoDecision::AllFinished,
        });
    }
    let (rows, bstats) = batch.finish();
    stats.prompt_tokens = bstats.prompt_tokens;
    stats.cached_prompt_tokens = bstats.cached_prompt_tokens;
    stats.policy_tokens = bstats.generated_tokens;
    stats.peak_kv_bytes = stats.peak_kv_bytes.max(bstats.peak_kv_bytes);
    stats.policy_time = t.elapsed().saturating_sub(stats.reward_time);
    let best = top_k(kept_finished, &rows, request.top_k);
    let candidates = request.return_candidates.then(|| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_rounds_are_fixed_by_the_rows_alive_at_their_start() {
        // 900 tokens over 16 rows of a 40-token prompt: each row may grow to 56 tokens.
        let s = Schedule::Budget;
        assert_eq!(s.next_decision(0, 16, 40, 900), Some(16));
        // 8 rows left at 16 generated (cache 56): they may grow to 112.
        assert_eq!(s.next_decision(16, 8, 56, 900), Some(72));
        // A round that starts at or over the budget runs to the end.
        assert_eq!(s.next_decision(72, 8, 112, 900), None);
        assert_eq!(s.next_decision(0, 30, 40, 900), None);
    }

    #[test]
    fn token_and_geometric_schedules() {
        let s = Schedule::Tokens(vec![8, 24]);
        assert_eq!(s.next_decision(0, 4, 30, 0), Some(8));
        assert_eq!(s.next_decision(8, 4, 38, 0), Some(24));
        assert_eq!(s.next_decision(24, 4, 54, 0), None);
        let g = Schedule::Geometric { first: 12 };
        assert_eq!(g.next_decision(0, 4, 30, 0), Some(12));
        assert_eq!(g.next_decision(12, 4, 42, 0), Some(24));
        assert_eq!(g.next_decision(30, 4, 60, 0), Some(48));
        assert!(Schedule::Tokens(vec![8, 8]).validate().is_err());
        assert!(Schedule::Tokens(vec![0]).validate().is_err());
        assert!(Schedule::Tokens(Vec::new()).validate().is_err());
        assert!(Schedule::Geometric { first: 0 }.validate().is_err());
    }

    #[test]
    fn the_default_schedule_decides_at_an_eighth_of_max_tokens() {
        assert_eq!(Schedule::default_for(96), Schedule::Geometric { first: 12 });
        assert_eq!(Schedule::default_for(32), Schedule::Geometric { first: 8 });
        assert_eq!(
            Schedule::default_for(512),
            Schedule::Geometric { first: 64 }
        );
    }
}
