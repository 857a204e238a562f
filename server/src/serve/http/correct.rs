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
//! in [`infer`](crate::serve::infer), on the engine side; the body's checks are
//! [`validation::correct`](crate::serve::validation::correct).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::request::{Arrived, ms, parse_body, ready, set_timing};
use crate::serve::api::errors::ApiError;
use crate::serve::api::openai::CorrectBody;
use crate::serve::validation::correct::validate;
use crate::serve::validation::model_info::ModelInfo;

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
    let (out, took) = s.infer.correct(inputs, sampling, stop).await?;
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
