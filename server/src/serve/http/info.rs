//! The routes that describe the server: `GET /v1/models`, `/health`, `/metrics`,
//! `/openapi.json`, and the 404 and 405 answers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::request::ready;
use crate::serve::api::errors::ApiError;
use crate::serve::api::openapi;

type S = State<Arc<AppState>>;

/// The operator's limits on one request, as `/v1/models` shows them with the policy.
fn limits_json(s: &AppState, context: usize) -> serde_json::Value {
    let t = &s.cfg.tokens;
    let max_input = t.max_input_tokens.map_or(context.saturating_sub(1), |m| {
        m.min(context.saturating_sub(1))
    });
    json!({
        "max_input_tokens": max_input,
        "max_tokens_limit": t.max_tokens_limit.map_or(context.saturating_sub(1), |m| m.min(context.saturating_sub(1))),
        "default_max_tokens": {
            "chat": t.default_chat_max_tokens,
            "completions": t.default_completion_max_tokens,
        },
        "max_n": s.cfg.max_n,
        "kv_budget_tokens": s.cfg.kv_budget_tokens,
    })
}

/// `GET /v1/models`.
pub async fn models(State(s): S) -> Response {
    let info = match ready(&s) {
        Ok(i) => i,
        Err(e) => return e.into_response(),
    };
    let created = s.started_unix;
    let mut data = vec![
        json!({"id": info.id, "object": "model", "created": created, "owned_by": "thresh",
               "max_model_len": info.context, "thresh_role": "policy",
               "thresh_limits": limits_json(&s, info.context)}),
        json!({"id": info.reward_id, "object": "model", "created": created, "owned_by": "thresh",
               "thresh_role": "reward"}),
    ];
    if let Some(a) = &info.aligner_id {
        data.push(
            json!({"id": a, "object": "model", "created": created, "owned_by": "thresh",
                         "thresh_role": "aligner"}),
        );
    }
    Json(json!({"object": "list", "data": data})).into_response()
}

/// `GET /health`: 200 once the models are loaded, 503 before and while shutting down.
pub async fn health(State(s): S) -> Response {
    if let Some(e) = s.infer.load_error() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "failed", "error": e})),
        )
            .into_response();
    }
    match ready(&s) {
        Ok(_) => Json(json!({"status": "ok"})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": e.code()})),
        )
            .into_response(),
    }
}

/// `GET /metrics` in Prometheus' text format.
pub async fn metrics(State(s): S) -> Response {
    let mut resp = s.metrics.render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// Unknown routes: 404 in OpenAI's error format.
pub async fn not_found(method: Method, uri: Uri) -> Response {
    ApiError::UnknownRoute {
        method: method.to_string(),
        path: uri.path().to_string(),
    }
    .into_response()
}

/// Known route, wrong method: 405.
pub async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}

/// `GET /openapi.json`.
pub async fn openapi(State(s): S) -> Response {
    // Before the models load, the context is unknown: the operator's cap, or no cap.
    let context = s.infer.info().map_or(usize::MAX, |i| i.context);
    // Without the models loaded the document cannot know the vocabulary or the aligner.
    let max_tokens = s
        .cfg
        .tokens
        .max_tokens_limit
        .unwrap_or(usize::MAX)
        .min(context.saturating_sub(1));
    let info = s.infer.info();
    Json(openapi::document(openapi::DocLimits {
        max_n: s.cfg.max_n,
        kv_budget_tokens: s.cfg.kv_budget_tokens,
        max_tokens,
        vocab_size: info.as_ref().and_then(|i| i.vocab_size),
        aligner: info.as_ref().is_some_and(|i| i.aligner_id.is_some()),
    }))
    .into_response()
}
