//! DeBERTa-v2/v3 sequence classifiers (`DebertaV2ForSequenceClassification`, e.g.
//! OpenAssistant's reward-model-deberta-v3-large-v2) on candle-transformers' DeBERTa-v2:
//! the encoder, the context pooler on the first token, and the `classifier` head, as Hugging
//! Face defines them. The pair is encoded as a text pair (prompt, response), as those reward
//! models are trained; label 0 is the reward.

use std::path::Path;

use candle_core::{DType, Device, IndexOp};
use candle_nn::VarBuilder;
use candle_transformers::models::debertav2::{
    Config as DebertaConfig, DebertaV2SeqClassificationModel, HiddenAct, Id2Label,
};
use thresh_models::config::read_json_value;
use thresh_models::loader::safetensors_files;
use thresh_models::{ModelError, Tokenizer};

use crate::RewardModel;
use crate::bert_files::{num_labels, tok_err};
use crate::encoder_pairs::{encode_pair, score_pairs};
use crate::error::Result;
use crate::input::{RewardInput, Scored};

/// Default padded-token budget of one forward pass.
pub const DEFAULT_TOKEN_BUDGET: usize = 8192;

/// A DeBERTa-v2/v3 sequence classifier used as a reward model.
pub struct DebertaClassifier {
    model: DebertaV2SeqClassificationModel,
    tokenizer: tokenizers::Tokenizer,
    max_len: usize,
    budget: usize,
    device: Device,
    name: String,
}

impl DebertaClassifier {
    /// Loads a `DebertaV2ForSequenceClassification` directory (`config.json`,
    /// `model.safetensors` or its shards, `tokenizer.json`).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let cfg_path = dir.join("config.json");
        let raw = read_json_value(&cfg_path)?;
        let mut config: DebertaConfig =
            serde_json::from_value(raw.clone()).map_err(|e| ModelError::bad_file(&cfg_path, e))?;
        // The context pooler needs these; Hugging Face defaults them (to the hidden size,
        // no dropout, GELU) when a configuration leaves them out.
        config.pooler_hidden_size.get_or_insert(config.hidden_size);
        config.pooler_dropout.get_or_insert(0.0);
        config.pooler_hidden_act.get_or_insert(HiddenAct::Gelu);
        // Without `id2label` the head's size comes from `num_labels`.
        let id2label: Option<Id2Label> = match config.id2label {
            Some(_) => None,
            None => Some(
                (0..num_labels(&raw))
                    .map(|i| (i as u32, format!("LABEL_{i}")))
                    .collect(),
            ),
        };
        let files = safetensors_files(dir)?;
        let named = |e: candle_core::Error| ModelError::bad_file(&files[0], e);
        // SAFETY: memory-mapped read-only, as for every model file thresh serves.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, DType::F32, device) }
            .map_err(named)?;
        let model = DebertaV2SeqClassificationModel::load(vb.pp("deberta"), &config, id2label)
            .map_err(named)?;
        let mut tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
        tokenizer.with_truncation(None).map_err(tok_err)?;
        tokenizer.with_padding(None);
        Ok(Self {
            model,
            tokenizer,
            max_len: config.max_position_embeddings.max(2),
            budget: DEFAULT_TOKEN_BUDGET,
            device: device.clone(),
            name: dir.display().to_string(),
        })
    }

    /// Caps the scored length.
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.max(2);
        self
    }

    /// Sets the padded-token budget of one forward pass.
    pub fn with_token_budget(mut self, budget: usize) -> Self {
        self.budget = budget.max(1);
        self
    }

    /// Token ids and type ids of a pair; when too long, tokens right after the first are
    /// dropped, so the first (`[CLS]`) token and the end of the response are kept.
    pub fn encode(&self, input: &RewardInput) -> Result<(Vec<u32>, Vec<u32>, bool)> {
        encode_pair(&self.tokenizer, input, self.max_len)
    }
}

impl RewardModel for DebertaClassifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, inputs: &[RewardInput]) -> Result<Vec<Scored>> {
        score_pairs(
            inputs,
            |i| self.encode(i),
            self.budget,
            &self.device,
            |ids, types, mask| {
                let logits = self
                    .model
                    .forward(ids, Some(types.clone()), Some(mask.clone()))?;
                Ok(logits.i((.., 0))?.to_vec1::<f32>()?)
            },
        )
    }
}
