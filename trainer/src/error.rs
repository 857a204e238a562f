//! The trainer's error type.

/// Everything that can go wrong while loading data, building a model or training it.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Loading or saving a model failed.
    #[error(transparent)]
    Model(#[from] thresh_models::ModelError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A data file holds a line that is not a valid example.
    #[error("{path}:{line}: {message}")]
    Data {
        /// The file.
        path: std::path::PathBuf,
        /// One-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A checkpoint is incomplete or does not match its manifest (a torn write, a truncated
    /// or altered file, a damaged `state.json`); it is never loaded.
    #[error("{path}: torn or corrupt checkpoint, not loaded: {reason}")]
    Checkpoint {
        /// The checkpoint directory.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The distortion simulator failed (a population file, a setting, an output file).
    #[error(transparent)]
    Distortion(#[from] thresh_distortion::DistortionError),
    /// A setting is out of range or inconsistent.
    #[error("invalid setting: {0}")]
    Config(String),
    /// A loss or metric got inputs of the wrong shape, length or value range.
    #[error("invalid input: {0}")]
    Input(String),
    /// The daemon `collect` talks to is down, refuses the key, or answers what it cannot read.
    #[error("daemon: {0}")]
    Daemon(String),
    /// The data holds no examples of the kind a command needs (no pairs, no labels...).
    #[error("no usable examples: {0}")]
    NoExamples(String),
}

/// The trainer's result type.
pub type Result<T> = std::result::Result<T, TrainError>;
