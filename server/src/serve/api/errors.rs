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
    /// The client did not send its body within `--body-timeout` (408).
    #[error("the request body did not arrive within {0} seconds")]
    BodyTimeout(u64),
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
    /// A server thresh relies on (a remote reward model) failed or refused (502).
    #[error("upstream: {0}")]
    Upstream(String),
    /// A server thresh relies on did not answer in time (504).
    #[error("upstream: {0}")]
    UpstreamTimeout(String),
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
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::QueueFull(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Loading | ApiError::ShuttingDown | ApiError::NoAligner => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Timeout(_) | ApiError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
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
            | ApiError::BodyTooLarge(_)
            | ApiError::BodyTimeout(_) => "invalid_request_error",
            ApiError::Unauthorized => "authentication_error",
            ApiError::QueueFull(_) => "rate_limit_error",
            ApiError::Loading
            | ApiError::ShuttingDown
            | ApiError::Timeout(_)
            | ApiError::NoAligner => "service_unavailable",
            ApiError::Internal(_) | ApiError::Upstream(_) | ApiError::UpstreamTimeout(_) => {
                "server_error"
            }
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
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::QueueFull(_) => "queue_full",
            ApiError::Loading => "loading",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::NoAligner => "no_aligner",
            ApiError::Timeout(_) => "timeout",
            ApiError::Internal(_) => "internal_error",
            ApiError::Upstream(_) => "upstream_error",
            ApiError::UpstreamTimeout(_) => "upstream_timeout",
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

#[cfg(test)]
mod tests {
    use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};

    use super::*;

    /// What one variant renders as.
    struct Row {
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: &'static str,
        param: Option<&'static str>,
        retry_after: bool,
    }

    /// One sample of every variant.
    fn samples() -> Vec<ApiError> {
        vec![
            ApiError::param("alignment.lambda", "alignment.lambda must be in (0, 1e6]"),
            ApiError::InvalidParameter {
                param: None,
                message: "no parameter named".into(),
            },
            ApiError::InvalidJson("expected value at line 1 column 1".into()),
            ApiError::Unauthorized,
            ApiError::UnknownRoute {
                method: "GET".into(),
                path: "/v2/nothing".into(),
            },
            ApiError::MethodNotAllowed,
            ApiError::UnknownModel("gpt-9".into()),
            ApiError::BodyTooLarge(1024),
            ApiError::BodyTimeout(30),
            ApiError::QueueFull(32),
            ApiError::Loading,
            ApiError::ShuttingDown,
            ApiError::NoAligner,
            ApiError::Timeout(30),
            ApiError::Internal("engine gone".into()),
            ApiError::Upstream("reward server http://r/v1/rewards answered HTTP 401".into()),
            ApiError::UpstreamTimeout("reward server http://r/v1/rewards did not answer".into()),
        ]
    }

    /// The expected rendering. The match has no wildcard: a new variant does not compile
    /// until it has its row here (and a sample in [`samples`]).
    fn expected(e: &ApiError) -> Row {
        use StatusCode as S;
        let row = |status, kind, code, message, param, retry_after| Row {
            status,
            kind,
            code,
            message,
            param,
            retry_after,
        };
        let bad_request = "invalid_request_error";
        let unavailable = "service_unavailable";
        match e {
            ApiError::InvalidParameter { param: Some(_), .. } => row(
                S::BAD_REQUEST,
                bad_request,
                "invalid_parameter",
                "alignment.lambda must be in (0, 1e6]",
                Some("alignment.lambda"),
                false,
            ),
            ApiError::InvalidParameter { param: None, .. } => row(
                S::BAD_REQUEST,
                bad_request,
                "invalid_parameter",
                "no parameter named",
                None,
                false,
            ),
            ApiError::InvalidJson(_) => row(
                S::BAD_REQUEST,
                bad_request,
                "invalid_json",
                "expected value at line 1 column 1",
                None,
                false,
            ),
            ApiError::Unauthorized => row(
                S::UNAUTHORIZED,
                "authentication_error",
                "invalid_api_key",
                "invalid or missing API key: send `Authorization: Bearer <key>`",
                None,
                false,
            ),
            ApiError::UnknownRoute { .. } => row(
                S::NOT_FOUND,
                bad_request,
                "unknown_route",
                "no route for GET /v2/nothing",
                None,
                false,
            ),
            ApiError::MethodNotAllowed => row(
                S::METHOD_NOT_ALLOWED,
                bad_request,
                "method_not_allowed",
                "method not allowed on this route",
                None,
                false,
            ),
            ApiError::UnknownModel(_) => row(
                S::NOT_FOUND,
                bad_request,
                "model_not_found",
                "the model `gpt-9` does not exist: see GET /v1/models",
                Some("model"),
                false,
            ),
            ApiError::BodyTooLarge(_) => row(
                S::PAYLOAD_TOO_LARGE,
                bad_request,
                "body_too_large",
                "request body too large: the limit is 1024 bytes",
                None,
                false,
            ),
            ApiError::BodyTimeout(_) => row(
                S::REQUEST_TIMEOUT,
                bad_request,
                "body_timeout",
                "the request body did not arrive within 30 seconds",
                None,
                false,
            ),
            ApiError::QueueFull(_) => row(
                S::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "queue_full",
                "the server is busy: 32 requests are already queued; retry later",
                None,
                true,
            ),
            ApiError::Loading => row(
                S::SERVICE_UNAVAILABLE,
                unavailable,
                "loading",
                "the models are still loading",
                None,
                true,
            ),
            ApiError::ShuttingDown => row(
                S::SERVICE_UNAVAILABLE,
                unavailable,
                "shutting_down",
                "the server is shutting down",
                None,
                false,
            ),
            ApiError::NoAligner => row(
                S::SERVICE_UNAVAILABLE,
                unavailable,
                "no_aligner",
                "no aligner model is loaded: start the server with `thresh serve --aligner PATH` (an Aligner checkpoint: Hugging Face directory or .gguf file)",
                None,
                false,
            ),
            ApiError::Timeout(_) => row(
                S::GATEWAY_TIMEOUT,
                unavailable,
                "timeout",
                "the request took longer than the server's limit of 30 seconds",
                None,
                false,
            ),
            ApiError::Internal(_) => row(
                S::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal_error",
                "internal error: engine gone",
                None,
                false,
            ),
            ApiError::Upstream(_) => row(
                S::BAD_GATEWAY,
                "server_error",
                "upstream_error",
                "upstream: reward server http://r/v1/rewards answered HTTP 401",
                None,
                false,
            ),
            ApiError::UpstreamTimeout(_) => row(
                S::GATEWAY_TIMEOUT,
                "server_error",
                "upstream_timeout",
                "upstream: reward server http://r/v1/rewards did not answer",
                None,
                false,
            ),
        }
    }

    #[tokio::test]
    async fn every_variant_renders_its_status_type_code_body_and_headers() {
        let samples = samples();
        let kinds: std::collections::HashSet<_> =
            samples.iter().map(std::mem::discriminant).collect();
        assert_eq!(kinds.len(), 16, "one sample per variant");
        let mut codes = std::collections::HashSet::new();
        for e in samples {
            let want = expected(&e);
            let name = format!("{e:?}");
            assert_eq!(e.status(), want.status, "{name}");
            assert_eq!(e.kind(), want.kind, "{name}");
            assert_eq!(e.code(), want.code, "{name}");
            assert_eq!(e.to_string(), want.message, "{name}");
            codes.insert(e.code());
            let body = json!({"error": {
                "message": want.message,
                "type": want.kind,
                "param": want.param,
                "code": want.code,
            }});
            // Exactly these four keys, `param` null unless the variant names one.
            assert_eq!(e.body(), body, "{name}");

            let resp = e.into_response();
            assert_eq!(resp.status(), want.status, "{name}");
            assert_eq!(
                resp.headers().get(RETRY_AFTER).map(|v| v.to_str().unwrap()),
                want.retry_after.then_some("1"),
                "{name}: Retry-After"
            );
            assert_eq!(
                resp.headers().get(CONTENT_TYPE).unwrap(),
                "application/json",
                "{name}"
            );
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            let sent: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(sent, body, "{name}: the response body");
        }
        assert_eq!(codes.len(), 16, "each variant has its own code");
    }

    #[test]
    fn param_names_the_parameter() {
        match ApiError::param("n", "n must be in [1, 16], got 0") {
            ApiError::InvalidParameter { param, message } => {
                assert_eq!(param.as_deref(), Some("n"));
                assert_eq!(message, "n must be in [1, 16], got 0");
            }
            other => panic!("not InvalidParameter: {other:?}"),
        }
    }
}
