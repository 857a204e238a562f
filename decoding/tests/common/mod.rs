//! The real demo models for the decoding tests, loaded once per test binary.

#![allow(dead_code)]

use std::sync::OnceLock;

pub mod scorers;

use thresh_decoding::SamplingParams;
use thresh_decoding::strategy::StrategyInput;
use thresh_models::{ChatMessage, GgmlDType, LoadOptions, LoadedModel, load};
use thresh_reward::{Prompt, RelevanceReward};

/// SmolLM2-135M-Instruct with q8_0 projections (the strategies' policy).
pub fn policy() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| {
        let p = thresh_models::testing::smollm2_gguf();
        let opts = LoadOptions {
            quant: Some(GgmlDType::Q8_0),
            ..Default::default()
        };
        load(p.to_str().unwrap(), &opts).unwrap()
    })
}

/// The MiniLM relevance reward.
pub fn relevance() -> &'static RelevanceReward {
    static R: OnceLock<RelevanceReward> = OnceLock::new();
    R.get_or_init(|| {
        RelevanceReward::load(
            &thresh_models::testing::minilm_dir(),
            &candle_core::Device::Cpu,
        )
        .unwrap()
    })
}

/// `q` as a one-turn chat prompt in `m`'s template, as token ids.
pub fn chat_ids(m: &LoadedModel, q: &str) -> Vec<u32> {
    let text = m
        .chat_template
        .as_ref()
        .unwrap()
        .render(&[ChatMessage::new("user", q)], true)
        .unwrap();
    m.tokenizer.encode(&text, false).unwrap()
}

/// A strategy input for the demo policy: `ids` answering `question` (as the reward model sees
/// it), at most `max_tokens` new tokens, the top answer, every candidate returned, no cancel
/// flag, stepper or prefix cache.
pub fn strategy_input<'a>(
    ids: &'a [u32],
    question: &str,
    max_tokens: usize,
    sampling: SamplingParams,
) -> StrategyInput<'a> {
    let m = policy();
    StrategyInput::new(
        &m.decoder,
        &m.tokenizer,
        ids,
        Prompt::Text(question.into()),
        sampling,
        max_tokens,
    )
}
