//! Alignment strategies on the batched engine: Best-of-N, Speculative Rejection, soft
//! Best-of-N and threshold rejection sampling, dispatched through one [`Strategy`].
//!
//! All run on the same [`DecodeBatch`](crate::DecodeBatch) and the same
//! [`RewardModel`] trait, so their compute is counted the same way: prompt tokens prefilled,
//! policy tokens generated (every sampled token, EOS included), reward-model tokens scored,
//! peak KV bytes, and wall time in the policy and in the reward model.

pub mod adaptive;
mod best_of_n;
mod dispatch;
mod rejection_sampling;
pub mod remote;
pub mod rows;
mod soft_best_of_n;
mod speculative;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

pub use best_of_n::best_of_n;
pub use dispatch::Strategy;
pub use rejection_sampling::rejection_sampling;
pub use rows::RowBatch;
pub use soft_best_of_n::soft_best_of_n;
pub use speculative::{
    Rejection, Schedule, SpeculativeParams, initial_batch, keep_count, speculative_rejection,
};
use thresh_models::{Decoder, Tokenizer};
use thresh_reward::{Prompt, RewardInput, RewardModel};

use crate::batch::{DecodeBatch, FinishReason, Row, StopConditions};
use crate::error::{DecodeError, Result};
use crate::sampling::SamplingParams;

/// What a strategy needs to know about one request.
#[derive(Clone)]
pub struct StrategyInput<'a> {
    /// The policy.
    pub decoder: &'a Decoder,
    /// The policy's tokenizer.
    pub tokenizer: &'a Tokenizer,
    /// The prompt as policy token ids (already templated).
    pub prompt_ids: &'a [u32],
    /// The prompt as the reward model sees it: the untemplated user text or messages.
    pub reward_prompt: Prompt,
    /// Sampling parameters; row `r` samples with `seed + r`.
    pub sampling: SamplingParams,
    /// Stop conditions (`max_tokens` is the length cap).
    pub stop: StopConditions,
    /// How many of the best answers to return.
    pub top_k: usize,
    /// Whether to return every candidate with its score and fate.
    pub return_candidates: bool,
    /// Stops the work at the next step when set.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Runs the decode steps (e.g. a [`StepMerger`](crate::StepMerger) that batches them
    /// with other requests' steps); `None` calls the decoder directly.
    pub stepper: Option<&'a dyn crate::merge::Stepper>,
    /// Reuses the keys and values of earlier prompts sharing a prefix with this one (and
    /// caches this one); `None` prefills the whole prompt.
    pub prefix_cache: Option<&'a crate::prefix::PrefixCache>,
}

impl<'a> StrategyInput<'a> {
    /// A request for `prompt_ids` on `decoder`, scored against `reward_prompt`, with at most
    /// `max_tokens` new tokens: the top answer and every candidate returned, no stop strings,
    /// cancel flag, stepper or prefix cache (set the fields to change them).
    pub fn new(
        decoder: &'a Decoder,
        tokenizer: &'a Tokenizer,
        prompt_ids: &'a [u32],
        reward_prompt: Prompt,
        sampling: SamplingParams,
        max_tokens: usize,
    ) -> Self {
        StrategyInput {
            decoder,
            tokenizer,
            prompt_ids,
            reward_prompt,
            sampling,
            stop: StopConditions {
                max_tokens,
                ..Default::default()
            },
            top_k: 1,
            return_candidates: true,
            cancel: None,
            stepper: None,
            prefix_cache: None,
        }
    }
}

/// How a candidate ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// It finished (EOS or stop string).
    Finished,
    /// It reached `max_tokens` or the context.
    LengthCapped,
    /// Speculative Rejection dropped it at the end of this round (1-based).
    Pruned {
        /// The round.
        round: usize,
    },
}

/// One sampled answer.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its row in the batch (row `r` sampled with `seed + r`).
    pub row: usize,
    /// Its text (cut before a stop string).
    pub text: String,
    /// Its token ids.
    pub tokens: Vec<u32>,
    /// Log-probability of each token under the policy.
    pub token_logprobs: Vec<f32>,
    /// Its reward: for pruned rows, the score of the partial answer that got it pruned.
    pub score: f32,
    /// How it ended.
    pub fate: Fate,
    /// The OpenAI finish reason of its row.
    pub finish_reason: &'static str,
}

/// Compute spent by a strategy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StrategyStats {
    /// Prompt tokens prefilled (once per batch).
    pub prompt_tokens: usize,
    /// Of those, tokens reused from the prefix cache rather than computed.
    pub cached_prompt_tokens: usize,
    /// Policy tokens sampled over all rows.
    pub policy_tokens: usize,
    /// Reward-model tokens run over all scoring calls.
    pub reward_tokens: usize,
    /// Reward-model calls (rounds of scoring).
    pub reward_calls: usize,
    /// Initial batch size.
    pub initial_batch: usize,
    /// Rows dropped at the end of each round (Speculative Rejection).
    pub pruned_per_round: Vec<usize>,
    /// Live KV bytes just before and just after each round's pruning (Speculative Rejection).
    pub kv_bytes_per_round: Vec<(usize, usize)>,
    /// Decoding rounds.
    pub rounds: usize,
    /// Generated tokens per row at each decision (Speculative Rejection).
    pub decision_tokens: Vec<usize>,
    /// Why Speculative Rejection made no decision, when it made none.
    pub no_decision: Option<NoDecision>,
    /// Largest number of KV bytes live at once.
    pub peak_kv_bytes: usize,
    /// Wall time in the policy (prefill, decoding, sampling).
    pub policy_time: Duration,
    /// Wall time in the reward model.
    pub reward_time: Duration,
}

/// Why a Speculative Rejection run made no decision (and so cost what Best-of-N costs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoDecision {
    /// Every candidate ended before the first decision point.
    AllFinished,
    /// The first decision point is at or past `max_tokens`.
    BeyondMaxTokens,
    /// The KV budget cannot bound even the first round (`B / N0` is no longer than the
    /// prompt), so it ran to the end.
    BudgetCannotBound,
}

impl NoDecision {
    /// A short machine-readable label (metrics).
    pub fn label(&self) -> &'static str {
        match self {
            NoDecision::AllFinished => "all_finished",
            NoDecision::BeyondMaxTokens => "beyond_max_tokens",
            NoDecision::BudgetCannotBound => "budget_cannot_bound",
        }
    }

    /// The reason in words (the response's `alignment.stats.no_decision`).
    pub fn describe(&self) -> &'static str {
        match self {
            NoDecision::AllFinished => "all candidates finished before the first decision",
            NoDecision::BeyondMaxTokens => "the first decision falls at or after max_tokens",
            NoDecision::BudgetCannotBound => {
                "the kv budget cannot hold a first round for the initial batch"
            }
        }
    }
}

/// The result of a strategy.
#[derive(Debug, Clone)]
pub struct StrategyOutput {
    /// The `top_k` best candidates, best first (ties: lowest row first).
    pub best: Vec<Candidate>,
    /// Every candidate, in row order, when asked for.
    pub candidates: Option<Vec<Candidate>>,
    /// Compute spent.
    pub stats: StrategyStats,
}

/// What the strategies written over [`RowBatch`] need to know about the request, whichever
/// backend runs its rows.
pub(crate) struct RowRequest<'p> {
    /// The prompt as the reward model sees it.
    pub reward_prompt: &'p Prompt,
    /// The length cap.
    pub max_tokens: usize,
    /// Answers to return.
    pub top_k: usize,
    /// Whether to return every candidate.
    pub return_candidates: bool,
}

impl<'p> RowRequest<'p> {
    /// The request of a local strategy input.
    pub(crate) fn of(input: &'p StrategyInput<'_>) -> Self {
        Self {
            reward_prompt: &input.reward_prompt,
            max_tokens: input.stop.max_tokens,
            top_k: input.top_k,
            return_candidates: input.return_candidates,
        }
    }
}

/// The strategy's batch of `n` rows: the prompt prefilled (through the prefix cache when
/// there is one) and forked, with the request's cancel flag and stepper attached.
pub(crate) fn start_batch<'a>(input: &StrategyInput<'a>, n: usize) -> Result<DecodeBatch<'a>> {
    let mut batch = DecodeBatch::with_prefix_cache(
        input.decoder,
        input.tokenizer,
        input.prompt_ids,
        n,
        &input.sampling,
        &input.stop,
        input.prefix_cache,
    )?;
    if let Some(flag) = &input.cancel {
        batch.set_cancel_flag(flag.clone());
    }
    if let Some(stepper) = input.stepper {
        batch.set_stepper(stepper);
    }
    Ok(batch)
}

pub(crate) fn validate(input: &StrategyInput<'_>) -> Result<()> {
    if input.top_k == 0 {
        return Err(DecodeError::InvalidParameter(
            "top_k (answers to return) must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Scores the texts of `rows` of `all` with the reward model.
pub(crate) fn score_rows(
    reward: &dyn RewardModel,
    prompt: &Prompt,
    all: &[Row],
    rows: &[usize],
    stats: &mut StrategyStats,
) -> Result<Vec<f32>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let t = std::time::Instant::now();
    let inputs: Vec<RewardInput> = rows
        .iter()
        .map(|&r| RewardInput {
            prompt: prompt.clone(),
            response: all[r].text.clone(),
        })
        .collect();
    let scored = reward.score(&inputs)?;
    stats.reward_time += t.elapsed();
    stats.reward_calls += 1;
    stats.reward_tokens += scored.iter().map(|s| s.tokens).sum::<usize>();
    Ok(scored.into_iter().map(|s| s.score).collect())
}

/// Orders `(row, score)` best first, ties by lowest row.
pub(crate) fn rank(scored: &mut [(usize, f32)]) {
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

/// The `k` best of `scored` as candidates, best first.
pub(crate) fn top_k(mut scored: Vec<(usize, f32)>, rows: &[Row], k: usize) -> Vec<Candidate> {
    rank(&mut scored);
    scored
        .iter()
        .take(k)
        .map(|&(r, s)| candidate(r, &rows[r], s, None))
        .collect()
}

pub(crate) fn candidate(row: usize, r: &Row, score: f32, pruned_in: Option<usize>) -> Candidate {
    let fate = match (pruned_in, &r.finish) {
        (Some(round), _) => Fate::Pruned { round },
        (None, Some(FinishReason::Length)) => Fate::LengthCapped,
        _ => Fate::Finished,
    };
    Candidate {
        row,
        text: r.text.clone(),
        tokens: r.tokens.clone(),
        token_logprobs: r.token_logprobs.clone(),
        score,
        fate,
        finish_reason: r.finish.as_ref().map_or("length", FinishReason::as_openai),
    }
}
