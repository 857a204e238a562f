//! Raw OpenAI bodies to typed, checked requests. Parameters are checked before any work
//! ([`validate_generation`]); prompt lengths, `max_tokens` and the KV budget once the prompt
//! is tokenised ([`tokenize`](tokenize::tokenize), on a blocking worker).
//!
//! This layer imports only [`api`](super::api): it knows the wire types and the error body,
//! never the engine or HTTP.

pub mod alignment;
pub mod correct;
pub mod model_info;
mod params;
pub mod tokenize;

use thresh_decoding::strategy::Strategy;
use thresh_decoding::{SamplingParams, StopConditions};
use thresh_models::ChatMessage;
use thresh_reward::{Prompt, RewardInput};

use super::api::errors::ApiError;
use super::api::openai::{
    CorrectInput, GenerationBody, MessageContent, PromptInput, RawMessage, RewardsBody, StopInput,
};

/// Which completion route a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/v1/completions`.
    Completions,
    /// `/v1/chat/completions`.
    Chat,
}

/// The prompt as given.
#[derive(Debug, Clone)]
pub enum PromptSpec {
    /// Completion text.
    Text(String),
    /// Completion token ids.
    Ids(Vec<u32>),
    /// Chat messages.
    Messages(Vec<ChatMessage>),
}

/// Server limits that validation enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest n / candidates.
    pub max_n: usize,
    /// KV tokens per request.
    pub kv_budget_tokens: usize,
    /// Whether plain (strategy `none`) answers are scored when the request does not say.
    pub score_plain: bool,
}

/// Whether a generation is followed by the aligner's correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorrectMode {
    /// No correction.
    Off,
    /// Return the corrected answer.
    On,
    /// Return whichever of the original and the correction scores higher.
    Guarded,
}

/// A checked generation request (before tokenisation).
#[derive(Debug, Clone)]
pub struct GenRequest {
    /// Correct the chosen answers with the aligner afterwards.
    pub correct: CorrectMode,
    /// Return the sampled tokens' log-probabilities.
    pub logprobs: bool,
    /// The route.
    pub route: Route,
    /// The prompt.
    pub prompt: PromptSpec,
    /// `max_tokens` if given (the default depends on the prompt length).
    pub max_tokens: Option<usize>,
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// Stop conditions (`max_tokens` set by [`tokenize`]).
    pub stop: StopConditions,
    /// Answers to return.
    pub n: usize,
    /// The alignment strategy; `None`: plain sampling of `n` answers.
    pub strategy: Option<Strategy>,
    /// Return every candidate.
    pub return_candidates: bool,
    /// Strategy `none`: score the answers with the reward model.
    pub score: bool,
    /// Stream the answer.
    pub stream: bool,
    /// Send a usage chunk at the end of a stream.
    pub include_usage: bool,
}

impl GenRequest {
    /// The strategy's name in requests, responses and metrics (`none` for plain sampling).
    pub fn strategy_name(&self) -> &'static str {
        self.strategy.as_ref().map_or("none", Strategy::name)
    }

    /// Rows decoded at once at the start.
    pub fn batch_rows(&self) -> usize {
        self.strategy.as_ref().map_or(self.n, Strategy::batch_rows)
    }
}

/// A request ready for the engine.
#[derive(Debug, Clone)]
pub struct Tokenized {
    /// The checked request, with `stop.max_tokens` resolved.
    pub req: GenRequest,
    /// Prompt ids for the policy.
    pub prompt_ids: Vec<u32>,
    /// The prompt as the reward model sees it.
    pub reward_prompt: Prompt,
}

use alignment::StrategyLimits;
pub(crate) use params::bad;
use params::{unit_range, usize_of};

/// Converts raw chat messages, joining text parts.
pub fn messages(raw: &[RawMessage], param: &str) -> Result<Vec<ChatMessage>, ApiError> {
    if raw.is_empty() {
        return Err(bad(
            param,
            format!("{param} must hold at least one message"),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, m)| {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant" | "tool" | "developer") {
                return Err(bad(
                    &format!("{param}[{i}].role"),
                    format!(
                        "{param}[{i}].role must be system, user, assistant, tool or developer, got {:?}",
                        m.role
                    ),
                ));
            }
            let content = match &m.content {
                None => String::new(),
                Some(MessageContent::Text(t)) => t.clone(),
                Some(MessageContent::Parts(parts)) => {
                    let mut s = String::new();
                    for (j, p) in parts.iter().enumerate() {
                        match (p.kind.as_str(), &p.text) {
                            ("text", Some(t)) => s.push_str(t),
                            _ => {
                                return Err(bad(
                                    &format!("{param}[{i}].content[{j}]"),
                                    format!(
                                        "only text content parts are supported, got type {:?}",
                                        p.kind
                                    ),
                                ));
                            }
                        }
                    }
                    s
                }
            };
            let role = if m.role == "developer" { "system" } else { m.role.as_str() };
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

/// Checks every parameter of a completion or chat request against its range and the
/// server's limits; nothing here needs the models.
pub fn validate_generation(
    body: GenerationBody,
    route: Route,
    limits: Limits,
) -> Result<GenRequest, ApiError> {
    let prompt = match route {
        Route::Completions => {
            if body.messages.is_some() {
                return Err(bad(
                    "messages",
                    "messages belongs to /v1/chat/completions; send prompt",
                ));
            }
            match body.prompt {
                None => return Err(bad("prompt", "prompt is required")),
                Some(PromptInput::Text(t)) => PromptSpec::Text(t),
                Some(PromptInput::Ids(ids)) => PromptSpec::Ids(ids),
                Some(PromptInput::Texts(mut v)) => {
                    if v.len() != 1 {
                        return Err(bad(
                            "prompt",
                            format!(
                                "prompt lists {} prompts; send one prompt per request",
                                v.len()
                            ),
                        ));
                    }
                    PromptSpec::Text(v.remove(0))
                }
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
    let max_tokens = match (body.max_tokens, body.max_completion_tokens) {
        (Some(m), _) => Some(("max_tokens", m)),
        (None, Some(m)) => Some(("max_completion_tokens", m)),
        _ => None,
    };
    let max_tokens = match max_tokens {
        Some((name, 0)) => return Err(bad(name, format!("{name} must be at least 1"))),
        Some((name, m)) => Some(usize_of(name, m)?),
        None => None,
    };
    let temperature = unit_range("temperature", body.temperature, 0.0, 2.0, false)?;
    let top_p = unit_range("top_p", body.top_p, 0.0, 1.0, true)?;
    let min_p = unit_range("min_p", body.min_p, 0.0, 1.0, false)?;
    let frequency_penalty = unit_range(
        "frequency_penalty",
        body.frequency_penalty,
        -2.0,
        2.0,
        false,
    )?;
    let presence_penalty = unit_range("presence_penalty", body.presence_penalty, -2.0, 2.0, false)?;
    let repetition_penalty = unit_range(
        "repetition_penalty",
        body.repetition_penalty,
        0.0,
        10.0,
        true,
    )?;
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
    let stop = match body.stop {
        None => Vec::new(),
        Some(StopInput::One(s)) => vec![s],
        Some(StopInput::Many(v)) => v,
    };
    if stop.len() > 16 {
        return Err(bad(
            "stop",
            format!("stop holds {} strings; the limit is 16", stop.len()),
        ));
    }
    if stop.iter().any(|s| s.is_empty() || s.len() > 256) {
        return Err(bad("stop", "each stop string must hold 1 to 256 bytes"));
    }
    let n = usize_of("n", body.n.unwrap_or(1))?;
    if n == 0 || n > limits.max_n {
        return Err(bad(
            "n",
            format!("n must be in [1, {}], got {n}", limits.max_n),
        ));
    }
    // The sampled tokens' log-probabilities: `logprobs: 0` (completions) or `true` (chat);
    // alternatives per token are not offered.
    let logprobs = match &body.logprobs {
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
    if body.top_logprobs.is_some_and(|t| t > 0) {
        return Err(bad(
            "top_logprobs",
            "top_logprobs (alternatives per token) are not supported by this server; \
             logprobs returns the sampled tokens' log-probabilities",
        ));
    }
    if body.echo == Some(true) {
        return Err(bad("echo", "echo is not supported by this server"));
    }
    let min_tokens = usize_of("min_tokens", body.min_tokens.unwrap_or(0))?;
    if let Some(m) = max_tokens
        && min_tokens > m
    {
        return Err(bad(
            "min_tokens",
            format!("min_tokens ({min_tokens}) exceeds max_tokens ({m})"),
        ));
    }
    let best_of = match body.best_of {
        None | Some(1) => None,
        Some(0) => return Err(bad("best_of", "best_of must be at least 1")),
        Some(b) => Some(usize_of("best_of", b)?),
    };
    let alignment = body.alignment.unwrap_or_default();
    let correct = match &alignment.correct {
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
    if correct != CorrectMode::Off && body.stream == Some(true) {
        return Err(bad(
            "alignment.correct",
            "alignment.correct cannot be streamed: send stream: false",
        ));
    }
    let strategy = alignment::strategy(
        &alignment,
        best_of,
        n,
        StrategyLimits {
            max_n: limits.max_n,
            kv_budget_tokens: limits.kv_budget_tokens,
        },
    )?;
    let sampling = SamplingParams {
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
    };
    let stream = body.stream.unwrap_or(false);
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
    })
}

/// Checks a `/v1/rewards` body: 1 to 1024 pairs, each with a non-empty prompt.
pub fn validate_rewards(body: RewardsBody) -> Result<Vec<RewardInput>, ApiError> {
    if body.input.is_empty() || body.input.len() > 1024 {
        return Err(bad(
            "input",
            format!("input must hold 1 to 1024 pairs, got {}", body.input.len()),
        ));
    }
    body.input
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let prompt = match (p.prompt, p.messages) {
                (Some(t), None) => {
                    if t.trim().is_empty() {
                        return Err(bad(
                            &format!("input[{i}].prompt"),
                            "the prompt must not be empty",
                        ));
                    }
                    Prompt::Text(t)
                }
                (None, Some(m)) => {
                    let param = format!("input[{i}].messages");
                    let m = messages(&m, &param)?;
                    if m.iter().all(|m| m.content.trim().is_empty()) {
                        return Err(bad(&param, "the messages must not all be empty"));
                    }
                    Prompt::Messages(m)
                }
                _ => {
                    return Err(bad(
                        &format!("input[{i}]"),
                        "each pair needs exactly one of prompt or messages",
                    ));
                }
            };
            Ok(RewardInput {
                prompt,
                response: p.response,
            })
        })
        .collect()
}
