//! What a reward model scores: a prompt (text or chat messages) and a possibly unfinished
//! response, both as text, since the policy's and the reward model's tokenizers differ.

use serde::{Deserialize, Serialize};
use thresh_models::{ChatMessage, ChatTemplate};

use crate::error::{Result, RewardError};

/// The prompt of a pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// A plain user prompt.
    Text(String),
    /// A conversation ending with the user's turn.
    Messages(Vec<ChatMessage>),
}

impl Prompt {
    /// The conversation: a text prompt becomes one user message.
    pub fn messages(&self) -> Vec<ChatMessage> {
        match self {
            Prompt::Text(t) => vec![ChatMessage::new("user", t)],
            Prompt::Messages(m) => m.clone(),
        }
    }

    /// The prompt as plain text: the text itself, or the last user message.
    pub fn text(&self) -> String {
        match self {
            Prompt::Text(t) => t.clone(),
            Prompt::Messages(m) => m
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map(|m| m.content.clone())
                .unwrap_or_default(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Prompt::Text(t) => t.trim().is_empty(),
            Prompt::Messages(m) => m.is_empty() || m.iter().all(|m| m.content.trim().is_empty()),
        }
    }
}

impl From<&str> for Prompt {
    fn from(s: &str) -> Self {
        Prompt::Text(s.to_string())
    }
}

/// One (prompt, response) pair to score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewardInput {
    /// The prompt.
    pub prompt: Prompt,
    /// The response so far; may be unfinished.
    pub response: String,
}

impl RewardInput {
    /// A pair from a text prompt and a response.
    pub fn new(prompt: impl Into<String>, response: impl Into<String>) -> Self {
        Self {
            prompt: Prompt::Text(prompt.into()),
            response: response.into(),
        }
    }
}

/// The score of one pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// The reward.
    pub score: f32,
    /// Reward-model tokens run for this pair (after truncation).
    pub tokens: usize,
    /// Whether the input was cut to fit the model (the beginning is dropped, so the end of
    /// the response is always scored).
    pub truncated: bool,
}

/// Rejects an empty batch or a pair with an empty prompt.
pub fn validate(inputs: &[RewardInput]) -> Result<()> {
    if inputs.is_empty() {
        return Err(RewardError::InvalidInput(
            "nothing to score: the batch is empty".into(),
        ));
    }
    if let Some(i) = inputs.iter().position(|p| p.prompt.is_empty()) {
        return Err(RewardError::InvalidInput(format!(
            "pair {i} has an empty prompt"
        )));
    }
    Ok(())
}

/// Renders a pair through a chat template as a finished exchange (the response as the
/// assistant's turn), or as `prompt\n\nresponse` for models without a template.
pub fn render(template: Option<&ChatTemplate>, input: &RewardInput) -> Result<String> {
    match template {
        Some(t) => {
            let mut msgs = input.prompt.messages();
            msgs.push(ChatMessage::new("assistant", &input.response));
            Ok(t.render(&msgs, false)?)
        }
        None => Ok(format!("{}\n\n{}", input.prompt.text(), input.response)),
    }
}
