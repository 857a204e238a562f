//! What every handler shares: the request's id and arrival time (set by the outer
//! middleware), reading a JSON body into a wire type with a precise error, the readiness
//! check, and the `server-timing` header.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::serve::api::errors::ApiError;
use crate::serve::validation::model_info::ModelInfo;

/// The request's id (from `x-request-id` or generated), set by the outer middleware.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// When the request arrived.
#[derive(Debug, Clone, Copy)]
pub struct Arrived(pub Instant);

/// The strategy a response served, for the request metrics.
#[derive(Debug, Clone, Copy)]
pub struct StrategyLabel(pub &'static str);

/// Reads a JSON body into `T` (a request object): a syntax error, or a body that is not an
/// object (serde would read a list into a struct's fields in order), is `invalid_json`; a
/// wrong field names its path.
pub(crate) fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge(limit)
        } else {
            ApiError::InvalidJson(format!("cannot read the body: {}", r.body_text()))
        }
    })?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::InvalidJson(
            "invalid JSON body: expected an object, got a list".into(),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let syntax = matches!(
            inner.classify(),
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof
        );
        if syntax || path.is_empty() || path == "." {
            ApiError::InvalidJson(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::param(path.clone(), format!("{path}: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::InvalidJson(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// The loaded models, or why the server cannot take work now (loading, shutting down).
pub(super) fn ready(s: &AppState) -> Result<Arc<ModelInfo>, ApiError> {
    if s.shutting_down.load(Ordering::Relaxed) {
        return Err(ApiError::ShuttingDown);
    }
    s.infer.info().ok_or(ApiError::Loading)
}

/// Checks a request's `model` against the policy's id (or the reward model's).
pub(super) fn check_model(
    info: &ModelInfo,
    model: Option<&str>,
    reward: bool,
) -> Result<(), ApiError> {
    let expected = if reward { &info.reward_id } else { &info.id };
    match model {
        None | Some("") => Ok(()),
        Some(m) if m == expected => Ok(()),
        Some(m) => Err(ApiError::UnknownModel(m.to_string())),
    }
}

/// Sets the `server-timing` header (per-phase durations).
pub(super) fn set_timing(resp: &mut Response, timing: &str) {
    if let Ok(v) = HeaderValue::from_str(timing) {
        resp.headers_mut().insert("server-timing", v);
    }
}

/// Marks the strategy a response served, for the request metrics.
pub(super) fn with_label(mut resp: Response, strategy: &'static str) -> Response {
    resp.extensions_mut().insert(StrategyLabel(strategy));
    resp
}

/// Milliseconds, for `server-timing`.
pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
