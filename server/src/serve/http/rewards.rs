//! `POST /v1/rewards`: scores (prompt or messages, response) pairs with the reward model.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::request::{Arrived, check_model, ms, parse_body, ready, set_timing};
use crate::serve::api::errors::ApiError;
use crate::serve::api::openai::RewardsBody;
use crate::serve::validation::model_info::ModelInfo;
use crate::serve::validation::validate_rewards;

type S = State<Arc<AppState>>;

/// `POST /v1/rewards`: scores (prompt or messages, response) pairs.
pub async fn rewards(
    State(s): S,
    Extension(arrived): Extension<Arrived>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let info = match ready(&s) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    score(s, info, arrived, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn score(
    s: Arc<AppState>,
    info: Arc<ModelInfo>,
    arrived: Arrived,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: RewardsBody = parse_body(body, s.cfg.max_body_bytes)?;
    check_model(&info, body.model.as_deref(), true)?;
    let inputs = validate_rewards(body)?;
    let (scores, took) = s.infer.score(inputs).await?;
    let data: Vec<_> = scores
        .iter()
        .enumerate()
        .map(|(i, sc)| {
            json!({
                "index": i,
                "object": "reward",
                "score": if sc.score.is_finite() { json!(sc.score) } else { json!(null) },
                "tokens": sc.tokens,
                "truncated": sc.truncated,
            })
        })
        .collect();
    let total: usize = scores.iter().map(|s| s.tokens).sum();
    let mut resp = Json(json!({
        "object": "list",
        "model": info.reward_id,
        "data": data,
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }))
    .into_response();
    let timing = format!(
        "reward;dur={:.2}, total;dur={:.2}",
        ms(took),
        ms(arrived.0.elapsed())
    );
    set_timing(&mut resp, &timing);
    Ok(resp)
}
