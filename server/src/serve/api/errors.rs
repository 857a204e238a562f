//! One error type for the HTTP API, rendered as OpenAI's error body
//! `{"error": {"message", "type", "param", "code"}}` with the matching status code.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Everything a request can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// A parameter is missing, malformed or out of range (400).
    #[error("{message}")]
    InvalidParameter {
        /// The offending parameter (JSON path).
        param: Option<String>,
        /// What is wrong, with the limit.
        message: String,
    },
    /// The body is not valid JSON or not an object of the expected shape (400).
    #[error("{0}")]
    InvalidJson(String),
    /// Missing or wrong API key (401).
    #[error("invalid or missing API key: send `Authorization: Bearer <key>`")]
    Unauthorized,
    /// Unknown route (404).
    #[error("no route for {method} {path}")]
    UnknownRoute {
        /// The HTTP method.
        method: String,
        /// The path.
        path: String,
    },
    /// Method not allowed on a known route (405).
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// Unknown model (404).
    #[error("the model `{0}` does not exist: see GET /v1/models")]
    UnknownModel(String),
    /// The body exceeds `--max-body-bytes` (413).
    #[error("request body too large: the limit is {0} bytes")]
    BodyTooLarge(usize),
    /// The engine's queue is full (429).
    #[error("the server is busy: {0} requests are already queued; retry later")]
    QueueFull(usize),
    /// Models are still loading (503).
    #[error("the models are still loading")]
    Loading,
    /// The server is shutting down (503).
    #[error("the server is shutting down")]
    ShuttingDown,
    /// `/correct` without a corrector (503).
    #[error(
        "no aligner model is loaded: start the server with `thresh serve --aligner PATH` (an Aligner checkpoint: Hugging Face directory or .gguf file)"
    )]
    NoAligner,
    /// The request ran past `--request-timeout` (504).
    #[error("the request took longer than the server's limit of {0} seconds")]
    Timeout(u64),
    /// A failure inside the engine; the server keeps serving (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 naming `param`.
    pub fn param(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidParameter {
            param: Some(param.into()),
            message: message.into(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidParameter { .. } | ApiError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::UnknownRoute { .. } | ApiError::UnknownModel(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::QueueFull(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Loading | ApiError::ShuttingDown | ApiError::NoAligner => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's error `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::InvalidParameter { .. }
            | ApiError::InvalidJson(_)
            | ApiError::UnknownRoute { .. }
            | ApiError::UnknownModel(_)
            | ApiError::MethodNotAllowed
            | ApiError::BodyTooLarge(_) => "invalid_request_error",
            ApiError::Unauthorized => "authentication_error",
            ApiError::QueueFull(_) => "rate_limit_error",
            ApiError::Loading
            | ApiError::ShuttingDown
            | ApiError::Timeout(_)
            | ApiError::NoAligner => "service_unavailable",
            ApiError::Internal(_) => "server_error",
        }
    }

    /// OpenAI's error `code`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidParameter { .. } => "invalid_parameter",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::Unauthorized => "invalid_api_key",
            ApiError::UnknownRoute { .. } => "unknown_route",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::UnknownModel(_) => "model_not_found",
            ApiError::BodyTooLarge(_) => "body_too_large",
            ApiError::QueueFull(_) => "queue_full",
            ApiError::Loading => "loading",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::NoAligner => "no_aligner",
            ApiError::Timeout(_) => "timeout",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let param = match self {
            ApiError::InvalidParameter { param, .. } => param.clone(),
            ApiError::UnknownModel(_) => Some("model".to_string()),
            _ => None,
        };
        json!({"error": {
            "message": self.to_string(),
            "type": self.kind(),
            "param": param,
            "code": self.code(),
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), Json(self.body())).into_response();
        if matches!(self, ApiError::QueueFull(_) | ApiError::Loading) {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        resp
    }
}
