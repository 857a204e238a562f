//! Turning (prompt, response) text into token ids the way the served models see it.
//!
//! Policies: the prompt rendered by the chat template with the generation prompt (what
//! `thresh serve` feeds the model), then the response and the end-of-sequence token.
//! Reward models: exactly what the reward crate scores (`thresh_reward::input::render`).

use thresh_models::{ChatMessage, ChatTemplate, Tokenizer};
use thresh_reward::{Prompt as RewardPrompt, RewardInput};

use crate::error::{Result, TrainError};

/// Encodes examples for one model, truncating to `max_len` tokens.
pub struct Encoder<'a> {
    tokenizer: &'a Tokenizer,
    template: Option<&'a ChatTemplate>,
    max_len: usize,
    eos: Option<u32>,
}

impl<'a> Encoder<'a> {
    /// An encoder for `tokenizer` and (optionally) its chat template.
    pub fn new(
        tokenizer: &'a Tokenizer,
        template: Option<&'a ChatTemplate>,
        max_len: usize,
    ) -> Self {
        let eos = tokenizer
            .eos_token()
            .and_then(|t| tokenizer.token_to_id(t))
            .or_else(|| tokenizer.eos_ids().first().copied());
        Self {
            tokenizer,
            template,
            max_len: max_len.max(2),
            eos,
        }
    }

    /// The prompt's ids as the model sees it before answering.
    pub fn prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        Ok(match self.template {
            Some(t) => self.tokenizer.encode(&t.render(messages, true)?, false)?,
            None => {
                let text: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
                self.tokenizer.encode(&text.join("\n\n"), true)?
            }
        })
    }

    /// Prompt and response ids with the prompt's length: `(ids, prompt_len)`. The response
    /// ends with the end-of-sequence token; the prompt loses tokens from the front (and the
    /// response from the back, when it alone is too long) to fit `max_len`.
    pub fn policy(&self, messages: &[ChatMessage], response: &str) -> Result<(Vec<u32>, usize)> {
        let mut prompt = self.prompt(messages)?;
        let mut resp = self.tokenizer.encode(response, false)?;
        resp.extend(self.eos);
        if resp.is_empty() {
            return Err(TrainError::Input("empty response".into()));
        }
        // Keep at least one prompt token: the first response token needs a predecessor.
        resp.truncate(self.max_len - 1);
        let room = self.max_len - resp.len();
        if prompt.len() > room {
            prompt.drain(..prompt.len() - room);
        }
        if prompt.is_empty() {
            prompt.push(
                self.tokenizer
                    .token_to_id("<|im_start|>")
                    .or(self.eos)
                    .unwrap_or(0),
            );
        }
        let p = prompt.len();
        prompt.extend(resp);
        Ok((prompt, p))
    }

    /// The ids a reward model of this tokenizer scores for (prompt, response), as the reward
    /// crate renders them, cut from the front to `max_len`.
    pub fn reward(&self, messages: &[ChatMessage], response: &str) -> Result<Vec<u32>> {
        let input = RewardInput {
            prompt: RewardPrompt::Messages(messages.to_vec()),
            response: response.to_string(),
        };
        let text = thresh_reward::input::render(self.template, &input)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        let mut ids = self.tokenizer.encode(&text, self.template.is_none())?;
        if ids.len() > self.max_len {
            ids.drain(..ids.len() - self.max_len);
        }
        if ids.is_empty() {
            return Err(TrainError::Input("empty reward input".into()));
        }
        Ok(ids)
    }

    /// The ids of a chat-templated conversation without a generation prompt (KLDO's
    /// separation metric reads the last token's hidden state).
    pub fn conversation(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let mut ids = match self.template {
            Some(t) => self.tokenizer.encode(&t.render(messages, false)?, false)?,
            None => {
                let text: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
                self.tokenizer.encode(&text.join("\n\n"), true)?
            }
        };
        if ids.len() > self.max_len {
            ids.drain(..ids.len() - self.max_len);
        }
        Ok(ids)
    }
}

impl Encoder<'_> {
    /// A raw-text prompt (encoded with the tokenizer's special tokens, as the Aligner
    /// corrector does) followed by ` response` and the end-of-sequence token.
    pub fn raw(&self, prompt: &str, response: &str) -> Result<(Vec<u32>, usize)> {
        let mut ids = self.tokenizer.encode(prompt, true)?;
        let mut resp = self.tokenizer.encode(&format!(" {response}"), false)?;
        resp.extend(self.eos);
        resp.truncate(self.max_len - 1);
        let room = self.max_len - resp.len();
        if ids.len() > room {
            ids.drain(..ids.len() - room);
        }
        if ids.is_empty() {
            return Err(TrainError::Input("empty prompt".into()));
        }
        let p = ids.len();
        ids.extend(resp);
        Ok((ids, p))
    }
}

impl<'a> Encoder<'a> {
    /// An encoder for `model`'s tokenizer and template, `max_len` capped at its context.
    pub fn for_model(model: &'a crate::model::TrainModel, max_len: usize) -> Self {
        Self::new(
            model.tokenizer(),
            model.chat_template(),
            max_len.min(model.config().max_position_embeddings),
        )
    }
}
