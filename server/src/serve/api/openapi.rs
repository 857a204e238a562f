//! `GET /openapi.json`: the API description, generated from the request types with utoipa.

#![allow(dead_code)]

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::openai::{
    AlignmentInput, AlphaInput, ContentPart, CorrectBody, CorrectInput, GenerationBody,
    MessageContent, PromptInput, RawMessage, RawPair, RewardPair, RewardsBody, StopInput,
    StreamOptions,
};

/// OpenAI's error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The fields of an error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// What went wrong; for a 400, the parameter and its limit.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`,
    /// `service_unavailable` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending parameter, where one is to blame.
    pub param: Option<String>,
    /// A machine-readable code (`invalid_parameter`, `queue_full`, ...).
    pub code: String,
}

/// A generated answer, its reward and the strategy's statistics in `alignment`.
#[utoipa::path(post, path = "/v1/completions", request_body = GenerationBody,
    responses(
        (status = 200, description = "A `text_completion` (or SSE chunks with `stream`); each choice carries `reward`, the response `alignment` (strategy, stats, candidates)", body = Object),
        (status = 400, description = "Invalid parameter", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "Queue full", body = ErrorBody),
        (status = 503, description = "Loading or shutting down", body = ErrorBody),
    ))]
fn completions() {}

/// A chat answer through the model's chat template.
#[utoipa::path(post, path = "/v1/chat/completions", request_body = GenerationBody,
    responses(
        (status = 200, description = "A `chat.completion` (or `chat.completion.chunk` SSE with `stream`)", body = Object),
        (status = 400, description = "Invalid parameter", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "Queue full", body = ErrorBody),
        (status = 503, description = "Loading or shutting down", body = ErrorBody),
    ))]
fn chat_completions() {}

/// Scores (prompt or messages, response) pairs with the reward model.
#[utoipa::path(post, path = "/v1/rewards", request_body = RewardsBody,
    responses(
        (status = 200, description = "`{object: list, data: [{index, score, tokens, truncated}]}`", body = Object),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 429, description = "Queue full", body = ErrorBody),
    ))]
fn rewards() {}

/// Corrects upstream answers with the Aligner model (`--aligner`).
#[utoipa::path(post, path = "/correct", request_body = CorrectBody,
    responses(
        (status = 200, description = "`{object: correction, model, template, corrections: [{index, correction, finish_reason}], correction (one pair), usage}`", body = Object),
        (status = 400, description = "Invalid input (names the field and limit)", body = ErrorBody),
        (status = 429, description = "Queue full", body = ErrorBody),
        (status = 503, description = "No aligner loaded, loading or shutting down", body = ErrorBody),
    ))]
fn correct() {}

/// The served models: policy, reward model and aligner.
#[utoipa::path(get, path = "/v1/models", responses((status = 200, body = Object)))]
fn models() {}

/// 200 once the models are loaded; 503 before, and while shutting down.
#[utoipa::path(get, path = "/health", responses((status = 200, body = Object), (status = 503, body = Object)))]
fn health() {}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", responses((status = 200, body = String, content_type = "text/plain")))]
fn metrics() {}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "thresh",
        description = "OpenAI-compatible inference-time alignment server: sample from a policy LLM, pick by a reward model."
    ),
    paths(
        completions,
        chat_completions,
        rewards,
        correct,
        models,
        health,
        metrics
    ),
    components(schemas(
        GenerationBody,
        AlignmentInput,
        PromptInput,
        RawMessage,
        MessageContent,
        ContentPart,
        StopInput,
        StreamOptions,
        RewardsBody,
        RewardPair,
        CorrectBody,
        RawPair,
        CorrectInput,
        AlphaInput,
        ErrorBody,
        ErrorDetail
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document as JSON.
pub fn document() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or_default()
}
