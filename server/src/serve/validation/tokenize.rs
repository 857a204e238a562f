//! Tokenisation of a checked request (on a blocking worker) and the limits that need the
//! prompt's length: the context, `max_tokens` and the request's KV budget.

use thresh_decoding::strategy::{Schedule, Strategy};
use thresh_decoding::{Constraint, DecodeError};
use thresh_reward::Prompt;

use super::model_info::ModelInfo;
use super::structured::GrammarRequest;
use super::{CorrectMode, GenRequest, Limits, PromptSpec, Route, Tokenized, bad};
use crate::serve::api::errors::ApiError;

/// Tokenises the prompt and checks its length, `max_tokens` and the KV budget.
pub fn tokenize(req: GenRequest, info: &ModelInfo, limits: Limits) -> Result<Tokenized, ApiError> {
    let internal = |e: thresh_models::ModelError| ApiError::Internal(format!("tokenizer: {e}"));
    let (prompt_ids, reward_prompt) = match &req.prompt {
        PromptSpec::Text(t) => (
            info.tokenizer.encode(t, true).map_err(internal)?,
            Prompt::Text(t.clone()),
        ),
        PromptSpec::Ids(ids) => {
            if let Some(vocab) = info.vocab_size
                && let Some(bad_id) = ids.iter().find(|&&i| i as usize >= vocab)
            {
                return Err(bad(
                    "prompt",
                    format!("token id {bad_id} is outside the vocabulary of {vocab} ids"),
                ));
            }
            let text = info.tokenizer.decode(ids, true).map_err(internal)?;
            (ids.clone(), Prompt::Text(text))
        }
        PromptSpec::Messages(m) => {
            let tmpl = info.chat_template.as_ref().ok_or_else(|| {
                bad(
                    "messages",
                    "this model has no chat template: use /v1/completions",
                )
            })?;
            let text = tmpl.render(m, true).map_err(|e| {
                bad(
                    "messages",
                    format!("the chat template rejected the messages: {e}"),
                )
            })?;
            (
                info.tokenizer.encode(&text, false).map_err(internal)?,
                Prompt::Messages(m.clone()),
            )
        }
    };
    let param = if req.route == Route::Chat {
        "messages"
    } else {
        "prompt"
    };
    if prompt_ids.is_empty() {
        return Err(bad(param, "the prompt has no tokens"));
    }
    let scored = req.strategy.is_some() || req.score || req.correct != CorrectMode::Off;
    if scored && matches!(&reward_prompt, Prompt::Text(t) if t.trim().is_empty()) {
        return Err(bad(
            param,
            "the prompt has no text for the reward model to score against (token ids of special \
             tokens only): send text, or strategy none without scoring",
        ));
    }
    if prompt_ids.len() >= info.context {
        return Err(bad(
            param,
            format!(
                "the prompt has {} tokens; the model's context is {} tokens",
                prompt_ids.len(),
                info.context
            ),
        ));
    }
    if let Some(limit) = limits.tokens.max_input_tokens
        && prompt_ids.len() > limit
    {
        return Err(bad(
            param,
            format!(
                "the prompt has {} tokens; this server takes at most {limit} (--max-input-tokens)",
                prompt_ids.len()
            ),
        ));
    }
    let room = info.context - prompt_ids.len();
    let cap = limits.tokens.max_tokens_limit.unwrap_or(usize::MAX);
    let max_tokens = match req.max_tokens {
        Some(m) if m > cap => {
            return Err(bad(
                "max_tokens",
                format!(
                    "max_tokens ({m}) exceeds this server's limit of {cap} tokens per answer (--max-tokens-limit)"
                ),
            ));
        }
        Some(m) if m > room => {
            return Err(bad(
                "max_tokens",
                format!(
                    "max_tokens ({m}) plus the prompt's {} tokens exceeds the model's context of {} tokens: at most {room}",
                    prompt_ids.len(),
                    info.context
                ),
            ));
        }
        Some(m) => m,
        None => room.min(cap).min(if req.route == Route::Chat {
            limits.tokens.default_chat_max_tokens
        } else {
            limits.tokens.default_completion_max_tokens
        }),
    };
    if req.stop.min_tokens > max_tokens {
        return Err(bad(
            "min_tokens",
            format!(
                "min_tokens ({}) exceeds max_tokens ({max_tokens})",
                req.stop.min_tokens
            ),
        ));
    }
    let rows = req.batch_rows();
    let kv = match &req.strategy {
        // Speculative Rejection prunes to stay in its budget: the first round must fit.
        Some(Strategy::Speculative(_)) => rows * (prompt_ids.len() + 8),
        _ => rows * (prompt_ids.len() + max_tokens),
    };
    if let Some(Strategy::Speculative(p)) = &req.strategy
        && p.schedule == Some(Schedule::Budget)
        && p.kv_budget_tokens < kv
    {
        let k = p.kv_budget_tokens;
        return Err(bad(
            "alignment.kv_budget_tokens",
            format!(
                "alignment.kv_budget_tokens must hold every candidate's prompt plus 8 tokens: at least {kv}, got {k}"
            ),
        ));
    }
    if kv > limits.kv_budget_tokens {
        return Err(bad(
            "max_tokens",
            format!(
                "{rows} rows of {} prompt tokens plus max_tokens {max_tokens} need {kv} KV tokens; the server's budget per request is {}",
                prompt_ids.len(),
                limits.kv_budget_tokens
            ),
        ));
    }
    let mut req = req;
    req.stop.max_tokens = max_tokens;
    if let Some(g) = &req.grammar {
        req.sampling.constraint = Some(constraint(g, info)?);
    }
    Ok(Tokenized {
        req,
        prompt_ids,
        reward_prompt,
    })
}

/// The request's grammar compiled against the policy's vocabulary: a 400 naming its field
/// when it does not compile, or when this policy cannot be constrained.
fn constraint(g: &GrammarRequest, info: &ModelInfo) -> Result<Constraint, ApiError> {
    if info.remote_policy {
        return Err(bad(
            g.field,
            format!(
                "{} is not supported over a remote policy: thresh constrains only the rows it decodes",
                g.field
            ),
        ));
    }
    let compiler = info
        .constraint_compiler()
        .map_err(|why| bad(g.field, why))?;
    compiler.compile(&g.grammar).map_err(|e| {
        let why = match e {
            DecodeError::InvalidGrammar(why) => why,
            other => other.to_string(),
        };
        bad(g.field, format!("{} does not compile: {why}", g.field))
    })
}
