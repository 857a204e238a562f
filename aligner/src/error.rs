//! Errors of the corrector.

use thiserror::Error;

/// What can go wrong while correcting.
#[derive(Debug, Error)]
pub enum AlignerError {
    /// The request is invalid (empty text, too long, bad template); the message names the
    /// field and the limit.
    #[error("{0}")]
    InvalidInput(String),
    /// The model runtime failed.
    #[error(transparent)]
    Model(#[from] thresh_models::ModelError),
    /// Decoding failed.
    #[error(transparent)]
    Decode(#[from] thresh_decoding::DecodeError),
    /// The reward model failed (guarded correction).
    #[error("reward model: {0}")]
    Reward(#[from] thresh_reward::RewardError),
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, AlignerError>;
