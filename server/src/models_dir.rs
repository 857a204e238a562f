//! Where the demo models live.

use std::path::PathBuf;

/// `$THRESH_MODELS`, or `./models`.
pub fn models_dir() -> PathBuf {
    std::env::var_os("THRESH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"))
}

/// The demo policy: SmolLM2-135M-Instruct (Q4_1 GGUF).
pub fn default_policy() -> PathBuf {
    models_dir().join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The demo reward encoder: all-MiniLM-L6-v2 (relevance head).
pub fn default_reward() -> PathBuf {
    models_dir().join("all-minilm-l6-v2")
}
