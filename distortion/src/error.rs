//! The simulator's error type.

/// Everything that can go wrong while reading a population, simulating or writing results.
#[derive(Debug, thiserror::Error)]
pub enum DistortionError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A population file does not parse.
    #[error("{path}:{line}: {message}")]
    Data {
        /// The file.
        path: std::path::PathBuf,
        /// One-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A population file is malformed or describes an invalid world.
    #[error("{path}: {message}")]
    Population {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A setting is out of range or inconsistent.
    #[error("invalid setting: {0}")]
    Config(String),
}

/// The simulator's result type.
pub type Result<T> = std::result::Result<T, DistortionError>;
