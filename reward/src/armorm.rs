//! ArmoRM's multi-objective head (`LlamaForRewardModelWithGating`, ArmoRM-Llama3-8B-v0.1) on
//! thresh's decoder backbone, as its `modeling_custom.py` defines it:
//!
//! - `regression_layer.weight` `(num_objectives, hidden)`, no bias: one reward per objective
//!   from the hidden state at the pair's last real token;
//! - `reward_transform_matrix` `(num_objectives, num_objectives)`: the rewards are multiplied
//!   by it (a debiasing transform; the identity when untrained);
//! - `gating.layers.{0..=n}`: an MLP (`gating_n_hidden` layers of `gating_hidden_dim` with ReLU,
//!   then a layer to `num_objectives`) on the hidden state where the prompt ends, then
//!   `softmax(x / gating_temperature) * gating.logit_scale`;
//! - the score is `sum(gating * (rewards @ transform))`.
//!
//! The original reads the gating state at the `<|eot_id|>` that closes the last user turn
//! (the start of the last `<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`). Here
//! it is read at the last token of the prompt rendered alone by the model's chat template, the
//! same token for Llama 3's template, and defined for any template.

use std::path::Path;

use candle_core::{D, DType, IndexOp, Tensor};
use thresh_models::config::{DecoderConfig, read_json_value};
use thresh_models::loader::{load_hf_tokenizer, safetensors_files};
use thresh_models::{ChatTemplate, Decoder, LoadOptions, ModelError, Tokenizer, WeightFile};

use crate::RewardModel;
use crate::batching::{pad_right, score_in_batches, truncate_front};
use crate::classifier::DEFAULT_TOKEN_BUDGET;
use crate::error::Result;
use crate::input::{RewardInput, Scored, render, validate};

/// An encoded pair: token ids, the position of the prompt's last token (the gating
/// position), and whether the pair was truncated.
pub type ArmoEncoded = (Vec<u32>, usize, bool);

/// ArmoRM: a decoder with per-objective regression and a gating network over objectives.
pub struct ArmoReward {
    decoder: Decoder,
    /// `(num_objectives, hidden)`, f32.
    regression: Tensor,
    /// `(num_objectives, num_objectives)`, f32.
    transform: Tensor,
    /// Gating layers: weight `(out, in)` and optional bias `(out)`, f32.
    gating: Vec<(Tensor, Option<Tensor>)>,
    temperature: f64,
    logit_scale: f64,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    max_len: usize,
    budget: usize,
    name: String,
}

fn config_usize(raw: &serde_json::Value, key: &str, default: usize) -> usize {
    raw.get(key)
        .and_then(|v| v.as_u64())
        .map_or(default, |v| v as usize)
}

impl ArmoReward {
    /// Loads a `LlamaForRewardModelWithGating` directory.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        opts.validate()?;
        let cfg_path = dir.join("config.json");
        let cfg = DecoderConfig::from_hf_json(&cfg_path)?;
        let raw = read_json_value(&cfg_path)?;
        // Defaults of the original modeling code.
        let k = config_usize(&raw, "num_objectives", 19);
        let n_hidden = config_usize(&raw, "gating_n_hidden", 3);
        let gating_dim = config_usize(&raw, "gating_hidden_dim", 1024);
        let temperature = raw
            .get("gating_temperature")
            .and_then(|v| v.as_f64())
            .unwrap_or(10.0);
        if temperature <= 0.0 {
            return Err(ModelError::InvalidConfig {
                path: cfg_path,
                reason: format!("gating_temperature must be positive, not {temperature}"),
            }
            .into());
        }
        let h = cfg.hidden_size;
        let dtype = opts.resolved_dtype();
        let mut weights = WeightFile::safetensors(&safetensors_files(dir)?, dtype, &opts.device)?;
        let decoder = Decoder::load_backbone(&cfg, &mut weights, dtype, &opts.device, opts.quant)?;
        let f32_of = |weights: &mut WeightFile, name: &str, shape: &[usize]| -> Result<Tensor> {
            Ok(weights.get(name, shape)?.to_dtype(DType::F32)?)
        };
        let regression = f32_of(&mut weights, "regression_layer.weight", &[k, h])?;
        let transform = f32_of(&mut weights, "reward_transform_matrix", &[k, k])?;
        let logit_scale = f32_of(&mut weights, "gating.logit_scale", &[1])?
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?[0];
        let mut gating = Vec::with_capacity(n_hidden + 1);
        let mut inputs = h;
        for i in 0..=n_hidden {
            let out = if i == n_hidden { k } else { gating_dim };
            let w = f32_of(
                &mut weights,
                &format!("gating.layers.{i}.weight"),
                &[out, inputs],
            )?;
            let b = weights
                .get_opt(&format!("gating.layers.{i}.bias"), &[out])?
                .map(|b| b.to_dtype(DType::F32))
                .transpose()?;
            gating.push((w, b));
            inputs = out;
        }
        let (tokenizer, template) = load_hf_tokenizer(dir, &cfg.eos_token_ids)?;
        Ok(Self {
            max_len: cfg.max_position_embeddings,
            decoder,
            regression,
            transform,
            gating,
            temperature,
            logit_scale,
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

    /// Number of objectives.
    pub fn num_objectives(&self) -> usize {
        self.regression.dims()[0]
    }

    /// The token ids a pair is scored on, the gating position (the prompt's last token; 0
    /// when truncation dropped the whole prompt), and whether the pair was truncated.
    pub fn encode(&self, input: &RewardInput) -> Result<ArmoEncoded> {
        let special = self.template.is_none();
        let text = render(self.template.as_ref(), input)?;
        let mut ids = self.tokenizer.encode(&text, special)?;
        let prompt_text = match &self.template {
            Some(t) => t.render(&input.prompt.messages(), false)?,
            None => input.prompt.text(),
        };
        let prompt = self.tokenizer.encode(&prompt_text, special)?;
        // Where the prompt's tokens end inside the pair (they are a prefix unless the
        // tokenizer merges across the boundary).
        let common = prompt.iter().zip(&ids).take_while(|(a, b)| a == b).count();
        let gate = common.saturating_sub(1);
        let before = ids.len();
        let truncated = truncate_front(&mut ids, self.max_len);
        let dropped = before - ids.len();
        Ok((ids, gate.saturating_sub(dropped), truncated))
    }

    /// The objectives' rewards (after the transform) and the gating weights of one row's
    /// last-token and prompt hidden states, each `(1, hidden)`.
    fn head(&self, last: &Tensor, prompt: &Tensor) -> Result<(Tensor, Tensor)> {
        let rewards = last
            .matmul(&self.regression.t()?)?
            .matmul(&self.transform)?;
        let mut x = prompt.clone();
        let n = self.gating.len();
        for (i, (w, b)) in self.gating.iter().enumerate() {
            x = x.matmul(&w.t()?)?;
            if let Some(b) = b {
                x = x.broadcast_add(&b.unsqueeze(0)?)?;
            }
            if i + 1 < n {
                x = x.relu()?;
            }
        }
        let gate =
            (candle_nn::ops::softmax(&(x / self.temperature)?, D::Minus1)? * self.logit_scale)?;
        Ok((rewards, gate))
    }

    /// Per pair, the transformed reward of each objective and the gating weights, in input
    /// order; the score is their dot product.
    pub fn objectives(&self, inputs: &[RewardInput]) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        validate(inputs)?;
        let encoded: Vec<ArmoEncoded> = inputs
            .iter()
            .map(|i| self.encode(i))
            .collect::<Result<_>>()?;
        let mut out = vec![(Vec::new(), Vec::new()); inputs.len()];
        self.run(&encoded, |i, rewards, gate| {
            out[i] = (rewards.to_vec1()?, gate.to_vec1()?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs the backbone in token-budget batches and hands each pair's rewards and gating
    /// weights (`(num_objectives)` each) to `each`; returns the scores.
    fn run(
        &self,
        encoded: &[ArmoEncoded],
        mut each: impl FnMut(usize, &Tensor, &Tensor) -> Result<()>,
    ) -> Result<Vec<Scored>> {
        let lengths: Vec<usize> = encoded.iter().map(|e| e.0.len()).collect();
        let truncated: Vec<bool> = encoded.iter().map(|e| e.2).collect();
        score_in_batches(&lengths, &truncated, self.budget, |batch| {
            let rows: Vec<&[u32]> = batch.iter().map(|&i| encoded[i].0.as_slice()).collect();
            let (flat, longest) = pad_right(&rows, 0);
            let ids = Tensor::from_vec(flat, (rows.len(), longest), self.decoder.device())?;
            let hidden = self.decoder.forward_hidden(&ids, None)?;
            let mut scores = Vec::with_capacity(batch.len());
            // Row by row: no product whose path depends on the batch.
            for (r, &i) in batch.iter().enumerate() {
                let at = |pos: usize| -> Result<Tensor> {
                    Ok(hidden
                        .i((r, pos))?
                        .to_dtype(DType::F32)?
                        .unsqueeze(0)?
                        .contiguous()?)
                };
                let (rewards, gate) = self.head(&at(lengths[i] - 1)?, &at(encoded[i].1)?)?;
                let (rewards, gate) = (rewards.squeeze(0)?, gate.squeeze(0)?);
                scores.push((&rewards * &gate)?.sum_all()?.to_scalar::<f32>()?);
                each(i, &rewards, &gate)?;
            }
            Ok(scores)
        })
    }
}

impl RewardModel for ArmoReward {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, inputs: &[RewardInput]) -> Result<Vec<Scored>> {
        validate(inputs)?;
        let encoded: Vec<ArmoEncoded> = inputs
            .iter()
            .map(|i| self.encode(i))
            .collect::<Result<_>>()?;
        self.run(&encoded, |_, _, _| Ok(()))
    }
}
