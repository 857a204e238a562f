//! Raw OpenAI bodies to typed, checked requests. Parameters are checked before any work
//! ([`validate_generation`]); prompt lengths, `max_tokens` and the KV budget once the prompt
//! is tokenised ([`tokenize`](tokenize::tokenize), on a blocking worker).
//!
//! This layer imports only [`api`](super::api): it knows the wire types and the error body,
//! never the engine or HTTP.

pub mod alignment;
pub mod correct;
mod generation;
pub mod messages;
pub mod model_info;
mod params;
mod rewards;
pub mod structured;
#[cfg(test)]
mod tests;
pub mod tokenize;
pub mod tools;

pub use generation::validate_generation;
pub use messages::messages;
pub use rewards::validate_rewards;

use thresh_decoding::strategy::Strategy;
use thresh_decoding::{SamplingParams, StopConditions};
use thresh_models::ChatMessage;
use thresh_reward::Prompt;

pub use super::config::TokenLimits;

/// Which completion route a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/v1/completions`.
    Completions,
    /// `/v1/chat/completions`.
    Chat,
}

/// The prompt as given.
#[derive(Debug, Clone)]
pub enum PromptSpec {
    /// Completion text.
    Text(String),
    /// Completion token ids.
    Ids(Vec<u32>),
    /// Chat messages.
    Messages(Vec<ChatMessage>),
}

/// Server limits that validation enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest n / candidates.
    pub max_n: usize,
    /// KV tokens per request.
    pub kv_budget_tokens: usize,
    /// Whether plain (strategy `none`) answers are scored when the request does not say.
    pub score_plain: bool,
    /// The operator's token limits and default `max_tokens`.
    pub tokens: TokenLimits,
}

/// Whether a generation is followed by the aligner's correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorrectMode {
    /// No correction.
    Off,
    /// Return the corrected answer.
    On,
    /// Return whichever of the original and the correction scores higher.
    Guarded,
}

/// A checked generation request (before tokenisation).
#[derive(Debug, Clone)]
pub struct GenRequest {
    /// Correct the chosen answers with the aligner afterwards.
    pub correct: CorrectMode,
    /// Return the sampled tokens' log-probabilities.
    pub logprobs: bool,
    /// The route.
    pub route: Route,
    /// The prompt.
    pub prompt: PromptSpec,
    /// `max_tokens` if given (the default depends on the prompt length).
    pub max_tokens: Option<usize>,
    /// Sampling parameters.
    pub sampling: SamplingParams,
    /// Stop conditions (`max_tokens` set by [`tokenize`]).
    pub stop: StopConditions,
    /// Answers to return.
    pub n: usize,
    /// The alignment strategy; `None`: plain sampling of `n` answers.
    pub strategy: Option<Strategy>,
    /// Return every candidate.
    pub return_candidates: bool,
    /// Strategy `none`: score the answers with the reward model.
    pub score: bool,
    /// Stream the answer.
    pub stream: bool,
    /// Send a usage chunk at the end of a stream.
    pub include_usage: bool,
    /// Return the prompt's and the answers' token ids.
    pub return_token_ids: bool,
    /// The grammar every answer follows (`response_format`, `guided_*`), compiled into
    /// `sampling.constraint` by [`tokenize`].
    pub grammar: Option<structured::GrammarRequest>,
    /// Answers are tool calls in the generic form ([`tools`]), returned as `tool_calls`.
    pub tool_calls: bool,
}

impl GenRequest {
    /// The strategy's name in requests, responses and metrics (`none` for plain sampling).
    pub fn strategy_name(&self) -> &'static str {
        self.strategy.as_ref().map_or("none", Strategy::name)
    }

    /// Rows decoded at once at the start.
    pub fn batch_rows(&self) -> usize {
        self.strategy.as_ref().map_or(self.n, Strategy::batch_rows)
    }
}

/// A request ready for the engine.
#[derive(Debug, Clone)]
pub struct Tokenized {
    /// The checked request, with `stop.max_tokens` resolved.
    pub req: GenRequest,
    /// Prompt ids for the policy.
    pub prompt_ids: Vec<u32>,
    /// The prompt as the reward model sees it.
    pub reward_prompt: Prompt,
}

pub(crate) use params::bad;
