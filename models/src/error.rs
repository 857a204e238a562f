//! The one error type of the model runtime.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
///
/// Every variant names the file (and where it applies, the tensor) involved, so that a user
/// can tell a missing download from a corrupt one from an unsupported architecture.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file the model needs is not there.
    #[error("missing file {path}: {what}")]
    MissingFile {
        /// The path that was looked for.
        path: PathBuf,
        /// What the file was needed for.
        what: String,
    },
    /// A file exists but could not be read or parsed.
    #[error("cannot read {path}: {reason}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// Why it could not be used.
        reason: String,
    },
    /// The configuration names an architecture this runtime does not implement.
    #[error("unsupported architecture {arch:?} in {path}: thresh runs {supported}")]
    UnsupportedArchitecture {
        /// The architecture as the file names it.
        arch: String,
        /// The file that named it.
        path: PathBuf,
        /// What is supported.
        supported: &'static str,
    },
    /// A weight is absent from the checkpoint.
    #[error("tensor {tensor} not found in {path}")]
    MissingTensor {
        /// The tensor's name.
        tensor: String,
        /// The checkpoint.
        path: PathBuf,
    },
    /// A weight has a shape that does not fit the configuration.
    #[error("tensor {tensor} in {path} has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor's name.
        tensor: String,
        /// The checkpoint.
        path: PathBuf,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape found in the file.
        actual: Vec<usize>,
    },
    /// The configuration itself is inconsistent.
    #[error("invalid configuration in {path}: {reason}")]
    InvalidConfig {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Tokenizer construction or use failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Rendering a chat template failed.
    #[error("chat template: {0}")]
    Template(String),
    /// A caller passed arguments the runtime cannot honour (wrong batch size, bad row index...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The tensor library failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias for the model runtime.
pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    /// A [`ModelError::BadFile`] for `path`.
    pub fn bad_file(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        ModelError::BadFile {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
