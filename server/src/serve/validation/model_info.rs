//! What validation and the handlers know about the loaded models. The engine fills it in
//! once loading succeeds ([`infer`](crate::serve::infer)).

use std::sync::OnceLock;

use thresh_decoding::ConstraintCompiler;
use thresh_models::{ChatTemplate, Tokenizer};

/// What handlers need to know about the loaded models.
pub struct ModelInfo {
    /// The policy's id (file or directory name).
    pub id: String,
    /// The reward model's id.
    pub reward_id: String,
    /// The aligner's id, where one was given.
    pub aligner_id: Option<String>,
    /// The aligner's context in tokens.
    pub aligner_context: Option<usize>,
    /// The aligner's prompt template name.
    pub aligner_template: Option<&'static str>,
    /// The policy's tokenizer.
    pub tokenizer: Tokenizer,
    /// The policy's chat template.
    pub chat_template: Option<ChatTemplate>,
    /// The policy's context in tokens.
    pub context: usize,
    /// The policy's vocabulary size, where known (a remote policy's server may not say; it
    /// checks the ids itself).
    pub vocab_size: Option<usize>,
    /// Whether the policy is a remote server (which decodes without thresh's grammars).
    pub remote_policy: bool,
    /// The grammar compiler for the policy's vocabulary, built on the first structured request.
    pub constraints: OnceLock<Result<ConstraintCompiler, String>>,
}

impl ModelInfo {
    /// The grammar compiler for the policy's vocabulary, or why this tokenizer has none.
    pub fn constraint_compiler(&self) -> Result<&ConstraintCompiler, &str> {
        self.constraints
            .get_or_init(|| ConstraintCompiler::new(&self.tokenizer).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(String::as_str)
    }
}
