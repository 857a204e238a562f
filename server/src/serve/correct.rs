//! `POST /correct`: an Aligner corrector rewrites an upstream answer (from any model, hosted
//! here or elsewhere).
//!
//! Body: one pair `{"question": ..., "answer": ...}` or a batch `{"inputs": [{...}, ...]}`;
//! a question is text, or chat messages as `"messages"`. Sampling: `max_tokens` (256),
//! `temperature` (0: greedy), `top_p`, `top_k`, `seed`. Response: `corrections[i]` with
//! `correction` and `finish_reason`, plus `usage`; a single pair also gets `correction` at the
//! top level.
//!
//! The generate-then-correct pipeline behind `alignment.correct` is
//! [`correction`](super::correction), on the engine side.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use thresh_aligner::CorrectionInput;
use thresh_decoding::{SamplingParams, StopConditions};
use thresh_reward::Prompt;
use tokio::sync::oneshot;

use super::AppState;
use super::errors::ApiError;
use super::jobs::{CancelOnDrop, CorrectJob, Job, ModelInfo};
use super::openai::{CorrectBody, RawMessage};
use super::routes::{Arrived, await_reply, enqueue, ms, parse_body, ready, set_timing};
use super::validation::{bad, messages};

/// Most pairs in one `/correct` request.
pub const MAX_PAIRS: usize = 64;

fn pair(
    question: Option<String>,
    msgs: Option<Vec<RawMessage>>,
    answer: String,
    at: &str,
) -> Result<CorrectionInput, ApiError> {
    let question = match (question, msgs) {
        (Some(q), None) => Prompt::Text(q),
        (None, Some(m)) => Prompt::Messages(messages(&m, &format!("{at}messages"))?),
        (Some(_), Some(_)) => {
            return Err(bad(
                &format!("{at}question"),
                "give the question as `question` or as `messages`, not both",
            ));
        }
        (None, None) => {
            return Err(bad(
                &format!("{at}question"),
                "question is required (text, or chat messages as `messages`)",
            ));
        }
    };
    let input = CorrectionInput { question, answer };
    if input.question_text().trim().is_empty() {
        return Err(bad(
            &format!("{at}question"),
            "the question must not be empty",
        ));
    }
    if input.answer.trim().is_empty() {
        return Err(bad(&format!("{at}answer"), "the answer must not be empty"));
    }
    Ok(input)
}

/// Turns the body into pairs and settings, checking every limit before any work.
pub fn validate(
    body: CorrectBody,
    context: usize,
) -> Result<(Vec<CorrectionInput>, SamplingParams, StopConditions), ApiError> {
    if body.stream == Some(true) {
        return Err(bad(
            "stream",
            "streaming is not available on /correct; send stream: false",
        ));
    }
    let single = body.question.is_some() || body.messages.is_some() || body.answer.is_some();
    let inputs = match (single, body.inputs) {
        (true, Some(_)) => {
            return Err(bad(
                "inputs",
                "send either one pair (question, answer) or `inputs`, not both",
            ));
        }
        (true, None) => {
            let answer = body
                .answer
                .ok_or_else(|| bad("answer", "answer is required"))?;
            vec![pair(body.question, body.messages, answer, "")?]
        }
        (false, Some(list)) => {
            if list.is_empty() || list.len() > MAX_PAIRS {
                return Err(bad(
                    "inputs",
                    format!(
                        "inputs must hold 1 to {MAX_PAIRS} pairs, got {}",
                        list.len()
                    ),
                ));
            }
            list.into_iter()
                .enumerate()
                .map(|(i, p)| pair(p.question, p.messages, p.answer, &format!("inputs[{i}].")))
                .collect::<Result<_, _>>()?
        }
        (false, None) => {
            return Err(bad(
                "question",
                "send a pair as {\"question\", \"answer\"} or a batch as {\"inputs\": [...]}",
            ));
        }
    };
    let max_tokens = body.max_tokens.unwrap_or(256);
    if max_tokens == 0 || max_tokens >= context {
        return Err(bad(
            "max_tokens",
            format!(
                "max_tokens must be between 1 and {} (the aligner's context), got {max_tokens}",
                context - 1
            ),
        ));
    }
    let temperature = body.temperature.unwrap_or(0.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(bad(
            "temperature",
            format!("temperature must be between 0 and 2, got {temperature}"),
        ));
    }
    let top_p = body.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad(
            "top_p",
            format!("top_p must be in (0, 1], got {top_p}"),
        ));
    }
    let sampling = SamplingParams {
        temperature,
        top_p,
        top_k: body.top_k.unwrap_or(0),
        seed: body.seed.unwrap_or(0),
        ..Default::default()
    };
    let stop = StopConditions {
        max_tokens,
        ..Default::default()
    };
    Ok((inputs, sampling, stop))
}

fn check_model(info: &ModelInfo, model: Option<&str>) -> Result<(), ApiError> {
    match (model, &info.aligner_id) {
        (None, _) => Ok(()),
        (Some(m), Some(id)) if m == id => Ok(()),
        (Some(m), _) => Err(ApiError::UnknownModel(m.to_string())),
    }
}

/// `POST /correct`.
pub async fn correct(
    State(s): State<Arc<AppState>>,
    Extension(arrived): Extension<Arrived>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    run(s, arrived, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn run(
    s: Arc<AppState>,
    arrived: Arrived,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let info = ready(&s)?;
    let (aligner_id, context) = match (&info.aligner_id, info.aligner_context) {
        (Some(id), Some(c)) => (id.clone(), c),
        _ => return Err(ApiError::NoAligner),
    };
    let body: CorrectBody = parse_body(body, s.cfg.max_body_bytes)?;
    check_model(&info, body.model.as_deref())?;
    let (inputs, sampling, stop) = validate(body, context)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    let (tx, rx) = oneshot::channel();
    enqueue(
        &s,
        Job::Correct(Box::new(CorrectJob {
            inputs,
            sampling,
            stop,
            cancel,
            enqueued: Instant::now(),
            reply: tx,
        })),
    )?;
    let (out, took) = await_reply(&s, rx).await?;
    let (prompt, completion) = out.iter().fold((0, 0), |(p, c), x| {
        (p + x.prompt_tokens, c + x.completion_tokens)
    });
    let data: Vec<_> = out
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "index": i,
                "correction": c.text,
                "finish_reason": c.finish.as_openai(),
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
            })
        })
        .collect();
    let mut value = json!({
        "object": "correction",
        "model": aligner_id,
        "template": info.aligner_template,
        "corrections": data,
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion},
    });
    if out.len() == 1 {
        value["correction"] = json!(out[0].text);
    }
    let mut resp = Json(value).into_response();
    let timing = format!(
        "aligner;dur={:.2}, total;dur={:.2}",
        ms(took),
        ms(arrived.0.elapsed())
    );
    set_timing(&mut resp, &timing);
    Ok(resp)
}
