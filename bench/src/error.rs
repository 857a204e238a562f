//! The library's error type.

use std::path::PathBuf;

/// Everything a benchmark run can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A setting is out of range or inconsistent.
    #[error("{0}")]
    Config(String),
    /// A dataset line is malformed.
    #[error("{path}:{line}: {message}")]
    Dataset {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The target server cannot be reached at all.
    #[error("cannot connect to {url}: {reason}; is the server running and is --base-url right?")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// The target answered, but not as expected (quality sweep requests must succeed).
    #[error("{url}: {message}")]
    Server {
        /// The URL.
        url: String,
        /// What went wrong, with the status and the server's message.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
    /// A chart could not be drawn.
    #[error("chart {path}: {message}")]
    Plot {
        /// The output file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}
