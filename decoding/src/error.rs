//! Errors of the decoding layer.

/// What can go wrong while generating.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A sampling or stopping parameter is out of range; the message names it and the range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The prompt plus the requested tokens do not fit the model's context.
    #[error(
        "prompt of {prompt} tokens plus max_tokens {max_tokens} exceeds the model's context of {context} tokens"
    )]
    ContextOverflow {
        /// Prompt length in tokens.
        prompt: usize,
        /// Requested new tokens.
        max_tokens: usize,
        /// The model's context length.
        context: usize,
    },
    /// A grammar (JSON schema, regex, Lark) could not be compiled; the message says why.
    #[error("invalid grammar: {0}")]
    InvalidGrammar(String),
    /// The caller cancelled the generation; its memory has been released.
    #[error("generation cancelled")]
    Cancelled,
    /// The reward model failed (the request's text could not be scored, or the model or
    /// its server failed).
    #[error("reward model: {0}")]
    Reward(#[from] thresh_reward::RewardError),
    /// A remote policy server failed, refused or answered something unusable.
    #[error("policy server {url}: {message}")]
    Remote {
        /// The endpoint.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// A merged decode step failed (the message says why); every batch in it fails.
    #[error("merged decode step: {0}")]
    Merged(String),
    /// The model runtime failed.
    #[error(transparent)]
    Model(#[from] thresh_models::ModelError),
    /// The tensor library failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias for decoding.
pub type Result<T> = std::result::Result<T, DecodeError>;
