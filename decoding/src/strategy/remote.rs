//! A request whose rows a remote policy server generates ([`RemoteInput`]), run by
//! [`Strategy::run_remote`](super::Strategy::run_remote).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use thresh_models::Tokenizer;
use thresh_reward::Prompt;

use super::RowRequest;
use crate::batch::StopConditions;
use crate::remote::RemotePolicy;
use crate::sampling::SamplingParams;

/// What a strategy over a remote policy needs to know about one request.
#[derive(Clone)]
pub struct RemoteInput<'a> {
    /// The policy server.
    pub policy: &'a RemotePolicy,
    /// The policy's tokenizer (the server's own), to decode the ids it returns.
    pub tokenizer: &'a Tokenizer,
    /// The prompt as policy token ids (already templated).
    pub prompt_ids: &'a [u32],
    /// The prompt as the reward model sees it.
    pub reward_prompt: Prompt,
    /// Sampling parameters; row `r` samples with `seed + r`.
    pub sampling: SamplingParams,
    /// Stop conditions (`max_tokens` is the length cap).
    pub stop: StopConditions,
    /// How many of the best answers to return.
    pub top_k: usize,
    /// Whether to return every candidate.
    pub return_candidates: bool,
    /// Stops the work before the next round when set.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl RemoteInput<'_> {
    pub(crate) fn request(&self) -> RowRequest<'_> {
        RowRequest {
            reward_prompt: &self.reward_prompt,
            max_tokens: self.stop.max_tokens,
            top_k: self.top_k,
            return_candidates: self.return_candidates,
        }
    }
}
