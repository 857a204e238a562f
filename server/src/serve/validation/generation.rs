//! A completion or chat body to a [`GenRequest`]: one small function per rule, each failing
//! with a 400 that names its parameter. Nothing here needs the models; prompt lengths and the
//! KV budget are checked once the prompt is tokenised ([`tokenize`](super::tokenize)).

use thresh_decoding::{SamplingParams, StopConditions};

use super::alignment::{self, StrategyLimits};
use super::params::{bad, unit_range, usize_of};
use super::{CorrectMode, GenRequest, Limits, PromptSpec, Route, messages};
use crate::serve::api::contract;
use crate::serve::api::errors::ApiError;
use crate::serve::api::openai::{CorrectInput, GenerationBody, PromptInput, StopInput};

pub use crate::serve::api::contract::{MAX_STOP, MAX_STOP_CHARS};

/// Checks every parameter of a completion or chat request against its range and the
/// server's limits.
pub fn validate_generation(
    body: GenerationBody,
    route: Route,
    limits: Limits,
) -> Result<GenRequest, ApiError> {
    unsupported(&body.other)?;
    let tools = super::tools::tools(&body, route == Route::Chat)?;
    let mut grammar = super::structured::grammar(&body)?;
    let mut prompt = prompt(&body, route)?;
    if let Some(t) = &tools {
        if let Some(g) = &grammar {
            return Err(bad(
                g.field,
                format!("{} and tools both constrain the output; send one", g.field),
            ));
        }
        grammar = Some(super::structured::GrammarRequest {
            grammar: t.grammar.clone(),
            field: "tools",
        });
        if let PromptSpec::Messages(m) = prompt {
            prompt = PromptSpec::Messages(super::tools::with_system(m, &t.system));
        }
    }
    let max_tokens = max_tokens(
        body.max_tokens,
        body.max_completion_tokens,
        limits.tokens.max_tokens_limit,
    )?;
    let mut sampling = sampling(&body)?;
    let stop = stop_strings(body.stop)?;
    let n = n(body.n, limits.max_n)?;
    let logprobs = logprobs(body.logprobs.as_ref(), body.top_logprobs)?;
    sampling.token_logprobs = logprobs;
    if body.echo == Some(true) {
        return Err(bad("echo", "echo is not supported by this server"));
    }
    let min_tokens = min_tokens(body.min_tokens, max_tokens)?;
    let best_of = best_of(body.best_of)?;
    let alignment = body.alignment.unwrap_or_default();
    let stream = body.stream.unwrap_or(false);
    let correct = correct_mode(alignment.correct.as_ref(), stream)?;
    let return_token_ids = body.return_token_ids.unwrap_or(false);
    let strategy = alignment::strategy(
        &alignment,
        best_of,
        n,
        StrategyLimits {
            max_n: limits.max_n,
            kv_budget_tokens: limits.kv_budget_tokens,
        },
    )?;
    Ok(GenRequest {
        route,
        prompt,
        max_tokens,
        sampling,
        stop: StopConditions {
            max_tokens: max_tokens.unwrap_or(1),
            min_tokens,
            ignore_eos: body.ignore_eos.unwrap_or(false),
            stop,
        },
        n,
        strategy,
        return_candidates: alignment.return_candidates.unwrap_or(false),
        score: alignment.score.unwrap_or(limits.score_plain),
        correct,
        logprobs,
        stream,
        include_usage: stream
            && body
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
        return_token_ids,
        grammar,
        tool_calls: tools.is_some(),
    })
}

/// Fields accepted and ignored on purpose: OpenAI's bookkeeping, meaningless here.
pub const IGNORED_FIELDS: &[&str] = &["metadata", "store"];

/// OpenAI fields this server does not implement yet, with what to say about each.
const NOT_IMPLEMENTED: &[(&str, &str)] = &[
    ("functions", "function calling (functions) is not supported"),
    (
        "function_call",
        "function calling (function_call) is not supported",
    ),
    ("logit_bias", "logit_bias is not supported yet"),
    ("suffix", "suffix (insertion) is not supported"),
];

/// Fields outside [`GenerationBody`]'s own: a 400 that names the first one, unless it is
/// ignored on purpose. A server that dropped them would return answers the client cannot use
/// (free text where it asked for JSON, no tool call where it offered tools).
pub(super) fn unsupported(
    other: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<(), ApiError> {
    for key in other.keys() {
        if IGNORED_FIELDS.contains(&key.as_str()) {
            continue;
        }
        let message = match NOT_IMPLEMENTED.iter().find(|(k, _)| k == key) {
            Some((_, why)) => format!("{why} by this server; remove `{key}` from the request"),
            None => format!("unknown field `{key}`: this server does not implement it"),
        };
        return Err(bad(key, message));
    }
    Ok(())
}

/// The prompt: `prompt` (one text, one token list, or a one-element list) on completions,
/// `messages` on chat; the other route's field is an error, not ignored.
pub(super) fn prompt(body: &GenerationBody, route: Route) -> Result<PromptSpec, ApiError> {
    let prompt = match route {
        Route::Completions => {
            if body.messages.is_some() {
                return Err(bad(
                    "messages",
                    "messages belongs to /v1/chat/completions; send prompt",
                ));
            }
            match &body.prompt {
                None => return Err(bad("prompt", "prompt is required")),
                Some(PromptInput::Text(t)) => PromptSpec::Text(t.clone()),
                Some(PromptInput::Ids(ids)) => PromptSpec::Ids(ids.iter().map(|t| t.0).collect()),
                Some(PromptInput::Texts(v)) => match v.as_slice() {
                    [one] => PromptSpec::Text(one.clone()),
                    _ => {
                        return Err(bad(
                            "prompt",
                            format!(
                                "prompt lists {} prompts; send one prompt per request",
                                v.len()
                            ),
                        ));
                    }
                },
            }
        }
        Route::Chat => {
            if body.prompt.is_some() {
                return Err(bad(
                    "prompt",
                    "prompt belongs to /v1/completions; send messages",
                ));
            }
            match &body.messages {
                None => return Err(bad("messages", "messages is required")),
                Some(m) => PromptSpec::Messages(messages(m, "messages")?),
            }
        }
    };
    if let PromptSpec::Text(t) = &prompt
        && t.is_empty()
    {
        return Err(bad("prompt", "prompt must not be empty"));
    }
    Ok(prompt)
}

/// `max_tokens`, or OpenAI's newer `max_completion_tokens` (`max_tokens` wins when both are
/// given); each given one at least 1 and at most the operator's `--max-tokens-limit`.
/// `None`: the default, resolved once the prompt length is known.
pub(super) fn max_tokens(
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
    cap: Option<usize>,
) -> Result<Option<usize>, ApiError> {
    let mut chosen = None;
    for (name, given) in [
        ("max_tokens", max_tokens),
        ("max_completion_tokens", max_completion_tokens),
    ] {
        let Some(m) = given else { continue };
        if m == 0 {
            return Err(bad(name, format!("{name} must be at least 1")));
        }
        let m = usize_of(name, m)?;
        if let Some(cap) = cap.filter(|&c| m > c) {
            return Err(bad(
                name,
                format!(
                    "{name} ({m}) exceeds this server's limit of {cap} tokens per answer (--max-tokens-limit)"
                ),
            ));
        }
        chosen = chosen.or(Some(m));
    }
    Ok(chosen)
}

/// The sampling parameters, each in its range ([`contract::SAMPLING`]): `temperature`
/// [0, 2] (1), `top_p` (0, 1] (1), `min_p` [0, 1] (0), the frequency and presence penalties
/// [-2, 2] (0), `repetition_penalty` (0, 10] (1); `top_k` -1, 0 (off) or positive, and `seed`
/// (random when absent).
pub(super) fn sampling(body: &GenerationBody) -> Result<SamplingParams, ApiError> {
    let range = |name: &str, v: Option<f64>| {
        let r = contract::sampling(name);
        unit_range(name, v, r.min, r.max, r.exclusive_min)
    };
    let temperature = range("temperature", body.temperature)?;
    let top_p = range("top_p", body.top_p)?;
    let min_p = range("min_p", body.min_p)?;
    let frequency_penalty = range("frequency_penalty", body.frequency_penalty)?;
    let presence_penalty = range("presence_penalty", body.presence_penalty)?;
    let repetition_penalty = range("repetition_penalty", body.repetition_penalty)?;
    let top_k = match body.top_k {
        None | Some(-1) | Some(0) => 0,
        Some(k) if k > 0 => usize_of("top_k", k as u64)?,
        Some(k) => {
            return Err(bad(
                "top_k",
                format!("top_k must be -1, 0 or positive, got {k}"),
            ));
        }
    };
    Ok(SamplingParams {
        temperature: temperature.unwrap_or(1.0),
        top_k,
        top_p: top_p.unwrap_or(1.0),
        min_p: min_p.unwrap_or(0.0),
        repetition_penalty: repetition_penalty.unwrap_or(1.0),
        frequency_penalty: frequency_penalty.unwrap_or(0.0),
        presence_penalty: presence_penalty.unwrap_or(0.0),
        seed: match body.seed {
            Some(s) => s as u64,
            None => rand::random(),
        },
        constraint: None,
        on_device: false,
        token_logprobs: true,
    })
}

/// `stop`: one string or a list of at most [`MAX_STOP`], each 1 to [`MAX_STOP_CHARS`] characters.
pub(super) fn stop_strings(stop: Option<StopInput>) -> Result<Vec<String>, ApiError> {
    let stop = match stop {
        None => Vec::new(),
        Some(StopInput::One(s)) => vec![s],
        Some(StopInput::Many(v)) => v,
    };
    if stop.len() > MAX_STOP {
        return Err(bad(
            "stop",
            format!("stop holds {} strings; the limit is {MAX_STOP}", stop.len()),
        ));
    }
    if stop
        .iter()
        .any(|s| s.is_empty() || s.chars().count() > MAX_STOP_CHARS)
    {
        return Err(bad(
            "stop",
            format!("each stop string must hold 1 to {MAX_STOP_CHARS} characters"),
        ));
    }
    Ok(stop)
}

/// `n` (1 by default), in `[1, max_n]`.
pub(super) fn n(n: Option<u64>, max_n: usize) -> Result<usize, ApiError> {
    let n = usize_of("n", n.unwrap_or(1))?;
    if n == 0 || n > max_n {
        return Err(bad("n", format!("n must be in [1, {max_n}], got {n}")));
    }
    Ok(n)
}

/// The sampled tokens' log-probabilities: `logprobs: 0` (completions) or `true` (chat).
/// Alternatives per token (`logprobs` above 0, `top_logprobs` above 0) are not offered.
pub(super) fn logprobs(
    logprobs: Option<&serde_json::Value>,
    top_logprobs: Option<u64>,
) -> Result<bool, ApiError> {
    let on = match logprobs {
        None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => false,
        Some(serde_json::Value::Bool(true)) => true,
        Some(serde_json::Value::Number(x)) if x.as_u64() == Some(0) => true,
        Some(_) => {
            return Err(bad(
                "logprobs",
                "logprobs takes 0 (completions) or true (chat): the sampled tokens' \
                 log-probabilities; alternatives per token are not supported",
            ));
        }
    };
    if top_logprobs.is_some_and(|t| t > 0) {
        return Err(bad(
            "top_logprobs",
            "top_logprobs (alternatives per token) are not supported by this server; \
             logprobs returns the sampled tokens' log-probabilities",
        ));
    }
    Ok(on)
}

/// `min_tokens` (0 by default), at most `max_tokens` where that is given.
pub(super) fn min_tokens(
    min_tokens: Option<u64>,
    max_tokens: Option<usize>,
) -> Result<usize, ApiError> {
    let min_tokens = usize_of("min_tokens", min_tokens.unwrap_or(0))?;
    if let Some(m) = max_tokens
        && min_tokens > m
    {
        return Err(bad(
            "min_tokens",
            format!("min_tokens ({min_tokens}) exceeds max_tokens ({m})"),
        ));
    }
    Ok(min_tokens)
}

/// `best_of`: `None` for absent or 1 (plain sampling), at least 1.
pub(super) fn best_of(best_of: Option<u64>) -> Result<Option<usize>, ApiError> {
    match best_of {
        None | Some(1) => Ok(None),
        Some(0) => Err(bad("best_of", "best_of must be at least 1")),
        Some(b) => Ok(Some(usize_of("best_of", b)?)),
    }
}

/// `alignment.correct`: `true`, `false`, `"on"`, `"off"` or `"guarded"`; a correction is not
/// streamed.
pub(super) fn correct_mode(
    correct: Option<&CorrectInput>,
    stream: bool,
) -> Result<CorrectMode, ApiError> {
    let mode = match correct {
        None | Some(CorrectInput::Flag(false)) => CorrectMode::Off,
        Some(CorrectInput::Flag(true)) => CorrectMode::On,
        Some(CorrectInput::Mode(m)) => match m.as_str() {
            "off" => CorrectMode::Off,
            "on" => CorrectMode::On,
            "guarded" => CorrectMode::Guarded,
            other => {
                return Err(bad(
                    "alignment.correct",
                    format!("alignment.correct must be true, false or \"guarded\", got {other:?}"),
                ));
            }
        },
    };
    if mode != CorrectMode::Off && stream {
        return Err(bad(
            "alignment.correct",
            "alignment.correct cannot be streamed: send stream: false",
        ));
    }
    Ok(mode)
}
