//! OpenAI response bodies: completions, chat completions, their stream chunks, and thresh's
//! `alignment` extension (strategy statistics and candidates).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use thresh_decoding::strategy::{Candidate, Fate, StrategyStats};

use crate::serve::infer::jobs::{ChoiceOut, GenOutput};
use crate::serve::validation::Route;

/// What every body of one response shares.
#[derive(Debug, Clone)]
pub struct RespCtx {
    /// `cmpl-...` or `chatcmpl-...`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The policy's id.
    pub model: String,
    /// The reward model's id.
    pub reward_model: String,
    /// The route.
    pub route: Route,
    /// The strategy's name.
    pub strategy: &'static str,
    /// Return every candidate.
    pub return_candidates: bool,
    /// Send a usage chunk.
    pub include_usage: bool,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Answers.
    pub n: usize,
    /// When the request arrived.
    pub arrived: Instant,
    /// Time spent tokenising.
    pub tokenize_time: Duration,
}

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn fate(c: &Candidate) -> (&'static str, Option<usize>) {
    match c.fate {
        Fate::Finished => ("finished", None),
        Fate::LengthCapped => ("length", None),
        Fate::Pruned { round } => ("pruned", Some(round)),
    }
}

fn score_json(s: f32) -> Value {
    if s.is_finite() { json!(s) } else { Value::Null }
}

/// Strategy statistics as JSON.
pub fn stats_json(s: &StrategyStats, queue: Duration) -> Value {
    let mut v = json!({
        "candidates": s.initial_batch,
        "rounds": s.rounds,
        "pruned_per_round": s.pruned_per_round,
        "decision_tokens": s.decision_tokens,
        "prompt_tokens": s.prompt_tokens,
        "cached_prompt_tokens": s.cached_prompt_tokens,
        "policy_tokens": s.policy_tokens,
        "reward_tokens": s.reward_tokens,
        "reward_calls": s.reward_calls,
        "peak_kv_bytes": s.peak_kv_bytes,
        "queue_seconds": queue.as_secs_f64(),
        "policy_seconds": s.policy_time.as_secs_f64(),
        "reward_seconds": s.reward_time.as_secs_f64(),
    });
    if let Some(why) = s.no_decision {
        v["no_decision"] = json!(why.describe());
    }
    v
}

/// The `alignment` object of a response.
pub fn alignment_json(ctx: &RespCtx, out: &GenOutput) -> Value {
    let mut a = json!({
        "strategy": ctx.strategy,
        "reward_model": ctx.reward_model,
        "stats": stats_json(&out.stats, out.queue_time),
    });
    if ctx.return_candidates
        && let Some(cands) = &out.candidates
    {
        a["candidates"] = cands
            .iter()
            .map(|c| {
                let (f, round) = fate(c);
                json!({
                    "row": c.row,
                    "text": c.text,
                    "tokens": c.tokens.len(),
                    "reward": score_json(c.score),
                    "fate": f,
                    "pruned_round": round,
                    "finish_reason": c.finish_reason,
                })
            })
            .collect();
    }
    a
}

/// OpenAI's `usage`, with `prompt_tokens_details.cached_tokens`: prompt tokens whose keys and
/// values came from the prefix cache (at most the prompt, also for strategies that prefill it
/// more than once).
fn usage(ctx: &RespCtx, out: &GenOutput) -> Value {
    let completion: usize = out.choices.iter().map(|c| c.tokens).sum();
    json!({
        "prompt_tokens": ctx.prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": ctx.prompt_tokens + completion,
        "prompt_tokens_details": {
            "cached_tokens": out.stats.cached_prompt_tokens.min(ctx.prompt_tokens),
        },
    })
}

/// A choice's `logprobs` in the route's shape; null when not asked for.
fn logprobs_json(route: Route, c: &ChoiceOut) -> Value {
    match &c.logprobs {
        None => Value::Null,
        Some(lps) => logprobs_value(route, lps, 0),
    }
}

/// Tokens' log-probabilities in the route's shape: completions' `tokens` /
/// `token_logprobs` / `text_offset` lists (offsets counted from `offset`, the summed token
/// texts before these), chat's `content` entries. A stream chunk carries the entries of the
/// tokens its text completes, with offsets continuing from the chunks before.
pub fn logprobs_value(route: Route, lps: &[(String, f32)], offset: usize) -> Value {
    match route {
        Route::Completions => {
            let mut offset = offset;
            let offsets: Vec<usize> = lps
                .iter()
                .map(|(t, _)| {
                    let o = offset;
                    offset += t.len();
                    o
                })
                .collect();
            json!({
                "tokens": lps.iter().map(|(t, _)| t).collect::<Vec<_>>(),
                "token_logprobs": lps.iter().map(|(_, l)| l).collect::<Vec<_>>(),
                "top_logprobs": null,
                "text_offset": offsets,
            })
        }
        Route::Chat => json!({
            "content": lps
                .iter()
                .map(|(t, l)| json!({"token": t, "logprob": l, "bytes": t.as_bytes(), "top_logprobs": []}))
                .collect::<Vec<_>>(),
        }),
    }
}

/// The body of a non-streamed response.
pub fn completion_json(ctx: &RespCtx, out: &GenOutput) -> Value {
    let choices: Vec<Value> = out
        .choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut v = match ctx.route {
                Route::Completions => json!({
                    "index": i,
                    "text": c.text,
                    "logprobs": logprobs_json(ctx.route, c),
                    "finish_reason": c.finish_reason,
                    "reward": c.score.map(score_json),
                }),
                Route::Chat => json!({
                    "index": i,
                    "message": {"role": "assistant", "content": c.text},
                    "logprobs": logprobs_json(ctx.route, c),
                    "finish_reason": c.finish_reason,
                    "reward": c.score.map(score_json),
                }),
            };
            if let Some(k) = &c.correction {
                v["correction"] = json!({
                    "original": k.original,
                    "original_reward": k.original_score.map(score_json),
                    "corrected": k.corrected,
                    "corrected_reward": k.corrected_score.map(score_json),
                    "returned": if k.returned_corrected { "corrected" } else { "original" },
                });
            }
            v
        })
        .collect();
    json!({
        "id": ctx.id,
        "object": match ctx.route { Route::Completions => "text_completion", Route::Chat => "chat.completion" },
        "created": ctx.created,
        "model": ctx.model,
        "choices": choices,
        "usage": usage(ctx, out),
        "alignment": alignment_json(ctx, out),
    })
}

/// A stream chunk with the given choices.
pub fn chunk(ctx: &RespCtx, choices: Vec<Value>) -> Value {
    json!({
        "id": ctx.id,
        "object": match ctx.route { Route::Completions => "text_completion", Route::Chat => "chat.completion.chunk" },
        "created": ctx.created,
        "model": ctx.model,
        "choices": choices,
    })
}

/// One streamed choice: new text, or the end with its finish reason and reward.
pub fn chunk_choice(
    ctx: &RespCtx,
    index: usize,
    text: Option<&str>,
    role: bool,
    finish: Option<(&'static str, Option<f32>)>,
) -> Value {
    let mut c = match ctx.route {
        Route::Completions => json!({"index": index, "text": text.unwrap_or(""), "logprobs": null}),
        Route::Chat => {
            let mut delta = json!({});
            if role {
                delta["role"] = json!("assistant");
            }
            if let Some(t) = text {
                delta["content"] = json!(t);
            }
            json!({"index": index, "delta": delta, "logprobs": null})
        }
    };
    match finish {
        Some((reason, score)) => {
            c["finish_reason"] = json!(reason);
            c["reward"] = score.map_or(Value::Null, score_json);
        }
        None => c["finish_reason"] = Value::Null,
    }
    c
}

/// The final usage chunk (`choices: []`).
pub fn usage_chunk(ctx: &RespCtx, out: &GenOutput) -> Value {
    let mut c = chunk(ctx, Vec::new());
    c["usage"] = usage(ctx, out);
    c
}
