//! One error type for the work the engine runs (strategies, reward scoring, corrections),
//! converted into the API's error in one place ([`From<InferError> for ApiError`]), so no
//! path can report a client's mistake as a server failure.

use thresh_aligner::AlignerError;
use thresh_decoding::DecodeError;
use thresh_reward::RewardError;

use crate::serve::api::errors::ApiError;

/// What a job on the engine can fail with.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// Decoding (a strategy, plain sampling, detokenisation).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The reward model.
    #[error(transparent)]
    Reward(#[from] RewardError),
    /// The Aligner corrector.
    #[error(transparent)]
    Aligner(#[from] AlignerError),
    /// The request needs a model the server was not started with.
    #[error("{message}")]
    Unavailable {
        /// The parameter that asked for it.
        param: &'static str,
        /// What is missing and how to start the server with it.
        message: String,
    },
}

impl InferError {
    /// Whether the job stopped because it was cancelled (client gone, deadline passed).
    pub fn is_cancelled(&self) -> bool {
        matches!(
            self,
            InferError::Decode(DecodeError::Cancelled)
                | InferError::Aligner(AlignerError::Decode(DecodeError::Cancelled))
        )
    }
}

fn from_reward(e: RewardError) -> ApiError {
    match e {
        // The request's text cannot be scored (for example a prompt that decodes to nothing).
        RewardError::InvalidInput(m) => ApiError::InvalidParameter {
            param: None,
            message: format!("reward model: {m}"),
        },
        // The reward model is another server: its failure is a bad or slow gateway, named.
        RewardError::RemoteTimeout { .. } => ApiError::UpstreamTimeout(e.to_string()),
        RewardError::RemoteStatus {
            status: 401 | 403, ..
        } => ApiError::Upstream(format!(
            "{e} (the reward server refused thresh's credentials: check --reward-api-key)"
        )),
        RewardError::RemoteStatus { .. }
        | RewardError::RemoteUnreachable { .. }
        | RewardError::RemoteResponse { .. } => ApiError::Upstream(e.to_string()),
        other => ApiError::Internal(format!("reward model: {other}")),
    }
}

fn from_decode(e: DecodeError) -> ApiError {
    match e {
        DecodeError::InvalidParameter(m) => ApiError::InvalidParameter {
            param: None,
            message: m,
        },
        DecodeError::ContextOverflow { .. } => ApiError::param("max_tokens", e.to_string()),
        DecodeError::Reward(r) => from_reward(r),
        // The policy runs on another server: its failure is a bad gateway, named.
        DecodeError::Remote { .. } => ApiError::Upstream(e.to_string()),
        other => ApiError::Internal(other.to_string()),
    }
}

impl From<InferError> for ApiError {
    fn from(e: InferError) -> Self {
        match e {
            InferError::Decode(d) => from_decode(d),
            InferError::Reward(r) => from_reward(r),
            InferError::Aligner(AlignerError::InvalidInput(m)) => ApiError::param("inputs", m),
            InferError::Aligner(AlignerError::Decode(d)) => from_decode(d),
            InferError::Aligner(AlignerError::Reward(r)) => from_reward(r),
            InferError::Aligner(other) => ApiError::Internal(other.to_string()),
            InferError::Unavailable { param, message } => ApiError::param(param, message),
        }
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        InferError::from(e).into()
    }
}

impl From<AlignerError> for ApiError {
    fn from(e: AlignerError) -> Self {
        InferError::from(e).into()
    }
}

impl From<RewardError> for ApiError {
    fn from(e: RewardError) -> Self {
        InferError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn status(e: impl Into<InferError>) -> (StatusCode, serde_json::Value) {
        let api = ApiError::from(e.into());
        (api.status(), api.body()["error"]["param"].clone())
    }

    #[test]
    fn client_mistakes_are_400s_wherever_they_surface() {
        let empty = || RewardError::InvalidInput("pair 0 has an empty prompt".into());
        assert_eq!(status(empty()).0, StatusCode::BAD_REQUEST);
        assert_eq!(
            status(DecodeError::Reward(empty())).0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(AlignerError::Reward(empty())).0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(DecodeError::InvalidParameter("top_p".into())).0,
            StatusCode::BAD_REQUEST
        );
        let overflow = DecodeError::ContextOverflow {
            prompt: 10,
            max_tokens: 10,
            context: 12,
        };
        assert_eq!(
            status(overflow),
            (StatusCode::BAD_REQUEST, "max_tokens".into())
        );
        assert_eq!(
            status(AlignerError::InvalidInput(
                "answer must not be empty".into()
            )),
            (StatusCode::BAD_REQUEST, "inputs".into())
        );
        let missing = InferError::Unavailable {
            param: "alignment.correct",
            message: "alignment.correct needs --aligner".into(),
        };
        assert_eq!(
            status(missing),
            (StatusCode::BAD_REQUEST, "alignment.correct".into())
        );
    }

    #[test]
    fn engine_failures_are_500s() {
        assert_eq!(
            status(DecodeError::Merged("step failed".into())).0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        let model = thresh_models::ModelError::InvalidArgument("bad".into());
        assert_eq!(
            status(RewardError::Model(model)).0,
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert!(InferError::Decode(DecodeError::Cancelled).is_cancelled());
        assert!(!InferError::Reward(RewardError::InvalidInput("x".into())).is_cancelled());
    }

    #[test]
    fn failing_remote_servers_are_gateway_errors_that_name_them() {
        let policy = DecodeError::Remote {
            url: "http://p/v1/completions".into(),
            message: "HTTP 500: boom".into(),
        };
        let api = ApiError::from(InferError::from(policy));
        assert_eq!(api.status(), StatusCode::BAD_GATEWAY);
        assert!(api.to_string().contains("http://p/v1/completions"), "{api}");
        let refused = RewardError::RemoteStatus {
            url: "http://r/v1/rewards".into(),
            status: 401,
            attempts: 1,
            body: "no".into(),
        };
        let api = ApiError::from(InferError::from(refused));
        assert_eq!(api.status(), StatusCode::BAD_GATEWAY);
        assert!(api.to_string().contains("--reward-api-key"), "{api}");
        let slow = RewardError::RemoteTimeout {
            url: "http://r/v1/rewards".into(),
            timeout: std::time::Duration::from_secs(1),
        };
        assert_eq!(
            ApiError::from(InferError::from(slow)).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
    }
}
