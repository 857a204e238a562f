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
}

/// Result alias for reward models.
pub type Result<T> = std::result::Result<T, RewardError>;
