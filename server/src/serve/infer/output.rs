//! A generation's result as the response's choices, whichever policy produced it: a
//! strategy's best answers, or plain answers scored when the request asks.

use std::time::{Duration, Instant};

use thresh_decoding::strategy::{Candidate, Fate, StrategyOutput, StrategyStats};
use thresh_decoding::{BatchStats, DecodeError, Row};
use thresh_models::Tokenizer;
use thresh_reward::RewardInput;

use super::error::InferError;
use super::jobs::{ChoiceOut, GenOutput, Models};
use super::token_spans::TokenSpans;
use crate::serve::validation::Tokenized;

/// A strategy's answers as the response's choices.
pub(super) fn strategy_output(
    out: StrategyOutput,
    tokenizer: &Tokenizer,
    job: &Tokenized,
) -> Result<GenOutput, InferError> {
    let req = &job.req;
    let choices = out
        .best
        .iter()
        .map(|c| {
            let token_ends = if req.logprobs && req.stream {
                Some(TokenSpans::replay(tokenizer, &c.tokens)?)
            } else {
                None
            };
            Ok(ChoiceOut {
                text: c.text.clone(),
                tokens: c.tokens.len(),
                finish_reason: c.finish_reason,
                score: Some(c.score),
                correction: None,
                logprobs: req
                    .logprobs
                    .then(|| token_logprobs(tokenizer, &c.tokens, &c.token_logprobs)),
                token_ends,
                token_ids: Some(c.tokens.clone()),
            })
        })
        .collect::<Result<_, DecodeError>>()?;
    Ok(GenOutput {
        choices,
        candidates: out.candidates,
        stats: out.stats,
        queue_time: Duration::ZERO,
        engine_time: Duration::ZERO,
    })
}

/// Plain answers as the response's choices, scored when the request asks.
pub(super) fn plain_output(
    models: &Models,
    tokenizer: &Tokenizer,
    job: &Tokenized,
    rows: Vec<Row>,
    bstats: BatchStats,
    policy_time: Duration,
) -> Result<GenOutput, InferError> {
    let req = &job.req;
    let mut stats = StrategyStats {
        prompt_tokens: bstats.prompt_tokens,
        cached_prompt_tokens: bstats.cached_prompt_tokens,
        policy_tokens: bstats.generated_tokens,
        initial_batch: req.n,
        rounds: 1,
        peak_kv_bytes: bstats.peak_kv_bytes,
        policy_time,
        ..Default::default()
    };
    let scores: Vec<Option<f32>> = if !req.score {
        vec![None; rows.len()]
    } else {
        let t = Instant::now();
        let inputs: Vec<RewardInput> = rows
            .iter()
            .map(|r| RewardInput {
                prompt: job.reward_prompt.clone(),
                response: r.text.clone(),
            })
            .collect();
        let scored = models.reward.score(&inputs)?;
        stats.reward_time = t.elapsed();
        stats.reward_calls = 1;
        stats.reward_tokens = scored.iter().map(|s| s.tokens).sum();
        scored.into_iter().map(|s| Some(s.score)).collect()
    };
    let choices = rows
        .iter()
        .zip(scores)
        .map(|(r, score)| ChoiceOut {
            text: r.text.clone(),
            tokens: r.tokens.len(),
            finish_reason: r
                .finish
                .as_ref()
                .map_or("length", thresh_decoding::FinishReason::as_openai),
            score,
            correction: None,
            logprobs: req
                .logprobs
                .then(|| token_logprobs(tokenizer, &r.tokens, &r.token_logprobs)),
            token_ends: None,
            token_ids: Some(r.tokens.clone()),
        })
        .collect();
    Ok(GenOutput {
        choices,
        candidates: None,
        stats,
        queue_time: Duration::ZERO,
        engine_time: Duration::ZERO,
    })
}

/// Each token's own text (decoded alone) with its log-probability.
pub(super) fn token_logprobs(
    tokenizer: &Tokenizer,
    ids: &[u32],
    lps: &[f32],
) -> Vec<(String, f32)> {
    ids.iter()
        .zip(lps)
        .map(|(&id, &lp)| (tokenizer.decode(&[id], false).unwrap_or_default(), lp))
        .collect()
}

/// Tokens of candidates that were pruned before finishing.
pub fn pruned_tokens(candidates: &[Candidate]) -> usize {
    candidates
        .iter()
        .filter(|c| matches!(c.fate, Fate::Pruned { .. }))
        .map(|c| c.tokens.len())
        .sum()
}
