//! Errors of the reward layer.

/// What can go wrong while loading or running a reward model.
#[derive(Debug, thiserror::Error)]
pub enum RewardError {
    /// The model directory names an architecture thresh cannot score with.
    #[error(
        "unsupported reward model architecture {arch:?} in {path}: thresh scores with {supported}"
    )]
    UnsupportedArchitecture {
        /// The architecture as `config.json` names it.
        arch: String,
        /// The configuration file.
        path: std::path::PathBuf,
        /// What is supported.
        supported: &'static str,
    },
    /// The input cannot be scored (empty batch, empty prompt...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The model runtime failed (missing file or tensor, bad shape...).
    #[error(transparent)]
    Model(#[from] thresh_models::ModelError),
    /// The tensor library failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A remote reward server could not be reached (refused, reset, unknown host...).
    #[error(
        "reward server {url} is unreachable after {attempts} attempt(s): {reason} (is it running, and is the address right?)"
    )]
    RemoteUnreachable {
        /// The endpoint.
        url: String,
        /// Requests tried.
        attempts: u32,
        /// What the last attempt met.
        reason: String,
    },
    /// A remote reward server did not answer in time.
    #[error("reward server {url} did not answer within {timeout:?}")]
    RemoteTimeout {
        /// The endpoint.
        url: String,
        /// The per-request timeout.
        timeout: std::time::Duration,
    },
    /// A remote reward server answered with an error status.
    #[error("reward server {url} answered HTTP {status} after {attempts} attempt(s): {body}")]
    RemoteStatus {
        /// The endpoint.
        url: String,
        /// The HTTP status of the last answer.
        status: u16,
        /// Requests tried.
        attempts: u32,
        /// The start of the answer's body.
        body: String,
    },
    /// A remote reward server answered something that is not the expected format.
    #[error("reward server {url} answered an unusable {format} response: {reason}")]
    RemoteResponse {
        /// The endpoint.
        url: String,
        /// The wire format expected.
        format: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A remote reward specification (URL, format) is not usable.
    #[error("invalid remote reward {spec:?}: {reason}")]
    RemoteSpec {
        /// The specification as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result alias for reward models.
pub type Result<T> = std::result::Result<T, RewardError>;
