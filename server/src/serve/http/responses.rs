//! OpenAI response bodies: completions, chat completions, their stream chunks, and thresh's
//! `alignment` extension (strategy statistics and candidates).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use thresh_decoding::strategy::{Candidate, Fate, StrategyStats};

use crate::serve::infer::jobs::{ChoiceOut, GenOutput};
use crate::serve::validation::{Route, tools};

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
    /// The prompt's token ids, when the request asked for token ids.
    pub prompt_token_ids: Option<Vec<u32>>,
    /// Answers are in the generic tool-call form, returned as `tool_calls`.
    pub tool_calls: bool,
}

/// An answer's chat `message` (or stream `delta`, without the role) and finish reason:
/// its text, or under tools the calls it makes (`content: null`, `finish_reason:
/// "tool_calls"`) or the text it answers with.
pub fn chat_message(
    ctx: &RespCtx,
    index: usize,
    text: &str,
    finish: &'static str,
) -> (Value, &'static str) {
    if !ctx.tool_calls {
        return (json!({"role": "assistant", "content": text}), finish);
    }
    let a = tools::answer(text, finish);
    let mut m = json!({"role": "assistant", "content": a.content});
    if !a.calls.is_empty() {
        let hex = ctx.id.rsplit('-').next().unwrap_or_default();
        let calls: Vec<Value> = a
            .calls
            .iter()
            .enumerate()
            .map(|(j, (name, arguments))| {
                json!({"index": j, "id": format!("call_{}_{index}_{j}", &hex[..hex.len().min(16)]),
                       "type": "function", "function": {"name": name, "arguments": arguments}})
            })
            .collect();
        m["tool_calls"] = json!(calls);
    }
    (m, a.finish_reason)
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
                Route::Chat => {
                    let (message, finish) = chat_message(ctx, i, &c.text, c.finish_reason);
                    json!({
                        "index": i,
                        "message": message,
                        "logprobs": logprobs_json(ctx.route, c),
                        "finish_reason": finish,
                        "reward": c.score.map(score_json),
                    })
                }
            };
            if let Some(prompt_ids) = &ctx.prompt_token_ids {
                // vLLM's shape: both lists on each choice (null for a corrected answer).
                v["prompt_token_ids"] = json!(prompt_ids);
                v["token_ids"] = json!(c.token_ids);
            }
            if let Some(k) = &c.correction {
                v["correction"] = json!({
                    "original": k.original,
                    "original_reward": k.original_score.map(score_json),
                    "corrected": k.corrected,
                    "corrected_reward": k.corrected_score.map(score_json),
                    "returned": if k.returned_corrected { "corrected" } else { "original" },
                });
                if let Some(f) = k.follows_format {
                    v["correction"]["follows_format"] = json!(f);
                }
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

#[cfg(test)]
mod tests {
    use thresh_decoding::strategy::NoDecision;

    use super::*;
    use crate::serve::infer::jobs::CorrectionOut;

    fn ctx(route: Route) -> RespCtx {
        RespCtx {
            id: "cmpl-1".into(),
            created: 1_700_000_000,
            model: "policy".into(),
            reward_model: "rm".into(),
            route,
            strategy: "best_of_n",
            return_candidates: false,
            include_usage: false,
            prompt_tokens: 7,
            n: 2,
            arrived: Instant::now(),
            tokenize_time: Duration::ZERO,
            prompt_token_ids: None,
            tool_calls: false,
        }
    }

    fn choice(text: &str, tokens: usize, finish: &'static str, score: Option<f32>) -> ChoiceOut {
        ChoiceOut {
            text: text.into(),
            tokens,
            finish_reason: finish,
            score,
            correction: None,
            logprobs: None,
            token_ends: None,
            token_ids: None,
        }
    }

    fn stats() -> StrategyStats {
        StrategyStats {
            prompt_tokens: 14,
            cached_prompt_tokens: 4,
            policy_tokens: 40,
            reward_tokens: 90,
            reward_calls: 3,
            initial_batch: 4,
            pruned_per_round: vec![2, 1],
            kv_bytes_per_round: vec![(100, 50)],
            rounds: 2,
            decision_tokens: vec![8, 16],
            no_decision: None,
            peak_kv_bytes: 4096,
            policy_time: Duration::from_millis(1500),
            reward_time: Duration::from_millis(250),
        }
    }

    fn output() -> GenOutput {
        GenOutput {
            choices: vec![
                choice("first", 3, "stop", Some(0.5)),
                choice("second", 5, "length", None),
            ],
            candidates: None,
            stats: stats(),
            queue_time: Duration::from_millis(125),
            engine_time: Duration::from_secs(2),
        }
    }

    fn candidate(row: usize, score: f32, fate: Fate, finish: &'static str) -> Candidate {
        Candidate {
            row,
            text: format!("cand{row}"),
            tokens: vec![1; row + 1],
            token_logprobs: vec![-0.5; row + 1],
            score,
            fate,
            finish_reason: finish,
        }
    }

    #[test]
    fn completions_put_the_text_in_text() {
        let v = completion_json(&ctx(Route::Completions), &output());
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["id"], "cmpl-1");
        assert_eq!(v["created"], 1_700_000_000);
        assert_eq!(v["model"], "policy");
        assert_eq!(
            v["choices"],
            json!([
                {"index": 0, "text": "first", "logprobs": null, "finish_reason": "stop", "reward": 0.5},
                {"index": 1, "text": "second", "logprobs": null, "finish_reason": "length", "reward": null},
            ])
        );
    }

    #[test]
    fn chat_puts_the_text_in_an_assistant_message() {
        let v = completion_json(&ctx(Route::Chat), &output());
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(
            v["choices"],
            json!([
                {"index": 0, "message": {"role": "assistant", "content": "first"},
                 "logprobs": null, "finish_reason": "stop", "reward": 0.5},
                {"index": 1, "message": {"role": "assistant", "content": "second"},
                 "logprobs": null, "finish_reason": "length", "reward": null},
            ])
        );
    }

    #[test]
    fn usage_sums_the_choices_and_caps_cached_tokens_at_the_prompt() {
        for route in [Route::Completions, Route::Chat] {
            let v = completion_json(&ctx(route), &output());
            assert_eq!(
                v["usage"],
                json!({
                    "prompt_tokens": 7,
                    "completion_tokens": 8,
                    "total_tokens": 15,
                    "prompt_tokens_details": {"cached_tokens": 4},
                })
            );
        }
        // A strategy that prefilled the prompt twice may have reused more than one prompt.
        let mut out = output();
        out.stats.cached_prompt_tokens = 12;
        let v = completion_json(&ctx(Route::Chat), &out);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 7);
        out.choices.clear();
        let v = completion_json(&ctx(Route::Chat), &out);
        assert_eq!(v["usage"]["completion_tokens"], 0);
        assert_eq!(v["usage"]["total_tokens"], 7);
        assert_eq!(v["choices"], json!([]));
    }

    #[test]
    fn non_finite_rewards_are_null() {
        let mut out = output();
        out.choices = vec![
            choice("a", 1, "stop", Some(f32::NAN)),
            choice("b", 1, "stop", Some(f32::INFINITY)),
            choice("c", 1, "stop", Some(f32::NEG_INFINITY)),
            choice("d", 1, "stop", Some(-1.25)),
        ];
        for route in [Route::Completions, Route::Chat] {
            let v = completion_json(&ctx(route), &out);
            let rewards: Vec<&Value> = (0..4).map(|i| &v["choices"][i]["reward"]).collect();
            assert_eq!(
                rewards,
                [&Value::Null, &Value::Null, &Value::Null, &json!(-1.25)]
            );
        }
    }

    #[test]
    fn a_correction_shows_both_answers_and_which_was_returned() {
        let mut out = output();
        out.choices[0].correction = Some(CorrectionOut {
            original: "orig".into(),
            original_score: Some(0.25),
            corrected: "fixed".into(),
            corrected_score: Some(f32::NAN),
            returned_corrected: true,
            follows_format: None,
        });
        out.choices[1].correction = Some(CorrectionOut {
            original: "second".into(),
            original_score: None,
            corrected: "other".into(),
            corrected_score: Some(-2.0),
            returned_corrected: false,
            follows_format: Some(false),
        });
        for route in [Route::Completions, Route::Chat] {
            let v = completion_json(&ctx(route), &out);
            assert_eq!(
                v["choices"][0]["correction"],
                json!({"original": "orig", "original_reward": 0.25, "corrected": "fixed",
                       "corrected_reward": null, "returned": "corrected"})
            );
            assert_eq!(
                v["choices"][1]["correction"],
                json!({"original": "second", "original_reward": null, "corrected": "other",
                       "corrected_reward": -2.0, "returned": "original", "follows_format": false})
            );
        }
        let v = completion_json(&ctx(Route::Chat), &output());
        assert!(v["choices"][0].get("correction").is_none());
    }

    #[test]
    fn stats_json_reports_every_counter_and_time() {
        let v = stats_json(&stats(), Duration::from_millis(125));
        assert_eq!(
            v,
            json!({
                "candidates": 4,
                "rounds": 2,
                "pruned_per_round": [2, 1],
                "decision_tokens": [8, 16],
                "prompt_tokens": 14,
                "cached_prompt_tokens": 4,
                "policy_tokens": 40,
                "reward_tokens": 90,
                "reward_calls": 3,
                "peak_kv_bytes": 4096,
                "queue_seconds": 0.125,
                "policy_seconds": 1.5,
                "reward_seconds": 0.25,
            })
        );
        for why in [
            NoDecision::AllFinished,
            NoDecision::BeyondMaxTokens,
            NoDecision::BudgetCannotBound,
        ] {
            let s = StrategyStats {
                no_decision: Some(why),
                ..stats()
            };
            assert_eq!(
                stats_json(&s, Duration::ZERO)["no_decision"],
                why.describe()
            );
        }
    }

    #[test]
    fn alignment_holds_the_strategy_stats_and_candidates_when_asked() {
        let mut out = output();
        out.candidates = Some(vec![
            candidate(0, 0.5, Fate::Finished, "stop"),
            candidate(1, f32::NAN, Fate::Pruned { round: 2 }, "length"),
            candidate(2, f32::NEG_INFINITY, Fate::LengthCapped, "length"),
        ]);
        let mut c = ctx(Route::Chat);
        let a = alignment_json(&c, &out);
        assert_eq!(a["strategy"], "best_of_n");
        assert_eq!(a["reward_model"], "rm");
        assert_eq!(a["stats"], stats_json(&out.stats, out.queue_time));
        assert!(a.get("candidates").is_none(), "not asked for");

        c.return_candidates = true;
        let a = alignment_json(&c, &out);
        assert_eq!(
            a["candidates"],
            json!([
                {"row": 0, "text": "cand0", "tokens": 1, "reward": 0.5, "fate": "finished",
                 "pruned_round": null, "finish_reason": "stop"},
                {"row": 1, "text": "cand1", "tokens": 2, "reward": null, "fate": "pruned",
                 "pruned_round": 2, "finish_reason": "length"},
                {"row": 2, "text": "cand2", "tokens": 3, "reward": null, "fate": "length",
                 "pruned_round": null, "finish_reason": "length"},
            ])
        );
        for route in [Route::Completions, Route::Chat] {
            c.route = route;
            assert_eq!(completion_json(&c, &out)["alignment"], a, "{route:?}");
        }

        // Asked for but not kept by the engine: no list.
        out.candidates = None;
        assert!(alignment_json(&c, &out).get("candidates").is_none());
    }

    #[test]
    fn completion_logprobs_list_tokens_logprobs_and_offsets() {
        let lps = vec![
            ("Hel".to_string(), -0.5),
            ("lo".to_string(), -1.0),
            (" !".to_string(), 0.0),
        ];
        assert_eq!(
            logprobs_value(Route::Completions, &lps, 0),
            json!({
                "tokens": ["Hel", "lo", " !"],
                "token_logprobs": [-0.5, -1.0, 0.0],
                "top_logprobs": null,
                "text_offset": [0, 3, 5],
            })
        );
        // A later stream chunk continues from the text before it.
        assert_eq!(
            logprobs_value(Route::Completions, &lps[1..], 3)["text_offset"],
            json!([3, 5])
        );
        assert_eq!(
            logprobs_value(Route::Completions, &[], 9),
            json!({"tokens": [], "token_logprobs": [], "top_logprobs": null, "text_offset": []})
        );
    }

    #[test]
    fn chat_logprobs_are_content_entries_with_bytes() {
        let lps = vec![("hé".to_string(), -0.25), ("!".to_string(), -2.0)];
        let want = json!({"content": [
            {"token": "hé", "logprob": -0.25, "bytes": [104, 195, 169], "top_logprobs": []},
            {"token": "!", "logprob": -2.0, "bytes": [33], "top_logprobs": []},
        ]});
        assert_eq!(logprobs_value(Route::Chat, &lps, 0), want);
        // The offset only matters to completions.
        assert_eq!(logprobs_value(Route::Chat, &lps, 40), want);
        assert_eq!(logprobs_value(Route::Chat, &[], 0), json!({"content": []}));
    }

    #[test]
    fn a_choices_logprobs_take_the_routes_shape() {
        let mut out = output();
        out.choices[0].logprobs = Some(vec![("fir".into(), -0.5), ("st".into(), -0.25)]);
        let v = completion_json(&ctx(Route::Completions), &out);
        assert_eq!(
            v["choices"][0]["logprobs"],
            logprobs_value(
                Route::Completions,
                out.choices[0].logprobs.as_ref().unwrap(),
                0
            )
        );
        assert_eq!(v["choices"][0]["logprobs"]["text_offset"], json!([0, 3]));
        assert_eq!(v["choices"][1]["logprobs"], Value::Null);
        let v = completion_json(&ctx(Route::Chat), &out);
        assert_eq!(v["choices"][0]["logprobs"]["content"][1]["token"], "st");
        assert_eq!(v["choices"][0]["logprobs"]["content"][1]["logprob"], -0.25);
        assert_eq!(v["choices"][1]["logprobs"], Value::Null);
    }

    #[test]
    fn stream_chunks_name_their_object_per_route() {
        let choices = vec![json!({"index": 0})];
        let v = chunk(&ctx(Route::Completions), choices.clone());
        assert_eq!(
            v,
            json!({"id": "cmpl-1", "object": "text_completion", "created": 1_700_000_000,
                   "model": "policy", "choices": choices})
        );
        let v = chunk(&ctx(Route::Chat), Vec::new());
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(v["choices"], json!([]));
        assert!(v.get("usage").is_none());
    }

    #[test]
    fn completion_chunk_choices_carry_text_then_the_finish() {
        let c = ctx(Route::Completions);
        assert_eq!(
            chunk_choice(&c, 1, Some("abc"), true, None),
            json!({"index": 1, "text": "abc", "logprobs": null, "finish_reason": null})
        );
        assert_eq!(
            chunk_choice(&c, 0, None, false, Some(("stop", Some(0.5)))),
            json!({"index": 0, "text": "", "logprobs": null, "finish_reason": "stop",
                   "reward": 0.5})
        );
        assert_eq!(
            chunk_choice(&c, 0, Some("z"), false, Some(("length", None)))["reward"],
            Value::Null
        );
        assert_eq!(
            chunk_choice(&c, 0, None, false, Some(("stop", Some(f32::NAN))))["reward"],
            Value::Null
        );
    }

    #[test]
    fn chat_chunk_choices_carry_a_delta() {
        let c = ctx(Route::Chat);
        assert_eq!(
            chunk_choice(&c, 0, Some("hi"), true, None),
            json!({"index": 0, "delta": {"role": "assistant", "content": "hi"},
                   "logprobs": null, "finish_reason": null})
        );
        assert_eq!(
            chunk_choice(&c, 2, None, true, None)["delta"],
            json!({"role": "assistant"})
        );
        assert_eq!(
            chunk_choice(&c, 0, Some(""), false, None)["delta"],
            json!({"content": ""})
        );
        assert_eq!(
            chunk_choice(&c, 0, None, false, Some(("stop", Some(-0.75)))),
            json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop",
                   "reward": -0.75})
        );
        assert_eq!(
            chunk_choice(&c, 0, None, false, Some(("stop", Some(f32::INFINITY))))["reward"],
            Value::Null
        );
    }

    #[test]
    fn the_usage_chunk_has_no_choices() {
        for (route, object) in [
            (Route::Completions, "text_completion"),
            (Route::Chat, "chat.completion.chunk"),
        ] {
            let c = ctx(route);
            let out = output();
            let v = usage_chunk(&c, &out);
            assert_eq!(v["object"], object);
            assert_eq!(v["choices"], json!([]));
            assert_eq!(v["usage"], completion_json(&c, &out)["usage"]);
            assert_eq!(v["usage"]["total_tokens"], 15);
        }
    }
}
