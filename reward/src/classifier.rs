//! Decoder sequence classifiers in Hugging Face layout (`LlamaForSequenceClassification`,
//! `MistralForSequenceClassification`, `Qwen2ForSequenceClassification`,
//! `Qwen3ForSequenceClassification`): thresh's decoder plus `score.weight`
//! `(num_labels, hidden)`, read at each row's last real token. This covers Skywork-Reward(-V2),
//! FsfairX-LLaMA3-RM, GRM and RM-Mistral.

use std::path::Path;

use candle_core::{DType, IndexOp, Tensor};
use thresh_models::config::{DecoderConfig, read_json_value};
use thresh_models::loader::{load_hf_tokenizer, safetensors_files};
use thresh_models::{ChatTemplate, Decoder, LoadOptions, Tokenizer, WeightFile};

use crate::RewardModel;
use crate::batching::{pad_right, score_in_batches, truncate_front};
use crate::error::Result;
use crate::input::{RewardInput, Scored, render, validate};

/// Default padded-token budget of one forward pass.
pub const DEFAULT_TOKEN_BUDGET: usize = 8192;

/// A decoder with a scalar score head.
pub struct DecoderClassifier {
    decoder: Decoder,
    score: Tensor,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    max_len: usize,
    budget: usize,
    name: String,
}

impl DecoderClassifier {
    /// Loads a `*ForSequenceClassification` directory.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        opts.validate()?;
        let cfg_path = dir.join("config.json");
        let cfg = DecoderConfig::from_hf_json(&cfg_path)?;
        let raw = read_json_value(&cfg_path)?;
        let num_labels = crate::bert_files::num_labels(&raw);
        let dtype = opts.resolved_dtype();
        let mut weights = WeightFile::safetensors(&safetensors_files(dir)?, dtype, &opts.device)?;
        let decoder = Decoder::load_backbone(&cfg, &mut weights, dtype, &opts.device, opts.quant)?;
        let score = weights
            .get("score.weight", &[num_labels, cfg.hidden_size])?
            .to_dtype(DType::F32)?;
        let (tokenizer, template) = load_hf_tokenizer(dir, &cfg.eos_token_ids)?;
        Ok(Self {
            max_len: cfg.max_position_embeddings,
            decoder,
            score,
            tokenizer,
            template,
            budget: DEFAULT_TOKEN_BUDGET,
            name: dir.display().to_string(),
        })
    }

    /// Sets the padded-token budget of one forward pass.
    pub fn with_token_budget(mut self, budget: usize) -> Self {
        self.budget = budget.max(1);
        self
    }

    /// Caps the scored length (tokens beyond it are dropped from the front).
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.clamp(1, self.decoder.config().max_position_embeddings);
        self
    }

    /// The token ids a pair is scored on, and whether they were truncated.
    pub fn encode(&self, input: &RewardInput) -> Result<(Vec<u32>, bool)> {
        let text = render(self.template.as_ref(), input)?;
        let mut ids = self.tokenizer.encode(&text, self.template.is_none())?;
        let truncated = truncate_front(&mut ids, self.max_len);
        Ok((ids, truncated))
    }
}

impl RewardModel for DecoderClassifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, inputs: &[RewardInput]) -> Result<Vec<Scored>> {
        validate(inputs)?;
        let encoded: Vec<(Vec<u32>, bool)> = inputs
            .iter()
            .map(|i| self.encode(i))
            .collect::<Result<_>>()?;
        let lengths: Vec<usize> = encoded.iter().map(|e| e.0.len()).collect();
        let truncated: Vec<bool> = encoded.iter().map(|e| e.1).collect();
        score_in_batches(&lengths, &truncated, self.budget, |batch| {
            let rows: Vec<&[u32]> = batch.iter().map(|&i| encoded[i].0.as_slice()).collect();
            // Right padding with any id: causal attention keeps pads out of real positions.
            let (flat, longest) = pad_right(&rows, 0);
            let ids = Tensor::from_vec(flat, (rows.len(), longest), self.decoder.device())?;
            let hidden = self.decoder.forward_hidden(&ids, None)?;
            let last: Vec<Tensor> = batch
                .iter()
                .enumerate()
                .map(|(r, &i)| hidden.i((r, lengths[i] - 1)))
                .collect::<candle_core::Result<_>>()?;
            let last = Tensor::stack(&last, 0)?.to_dtype(DType::F32)?;
            // Label 0, as a per-row product and sum: no gemm whose path depends on the rows.
            Ok(last
                .broadcast_mul(&self.score.i(0)?)?
                .sum(1)?
                .to_vec1::<f32>()?)
        })
    }
}
