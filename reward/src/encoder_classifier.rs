//! Encoder classifiers: `BertForSequenceClassification`, on candle-transformers' BERT
//! encoder plus the pooler (`tanh` of a dense layer on the first token) and the
//! `classifier` head, as Hugging Face defines them. The pair is encoded as a text pair
//! (prompt, response), the way OpenAssistant-style reward models are trained.

use std::path::Path;

use candle_core::{Device, IndexOp};
use candle_nn::{Linear, Module};
use candle_transformers::models::bert::BertModel;
use thresh_models::ModelError;

use crate::RewardModel;
use crate::bert_files::{BertFiles, load_bert, num_labels};
use crate::encoder_pairs::{encode_pair, score_pairs};
use crate::error::Result;
use crate::input::{RewardInput, Scored};

/// A BERT sequence classifier used as a reward model (label 0 is the reward).
pub struct BertClassifier {
    bert: BertModel,
    pooler: Linear,
    classifier: Linear,
    tokenizer: tokenizers::Tokenizer,
    max_len: usize,
    budget: usize,
    device: Device,
    name: String,
}

impl BertClassifier {
    /// Loads a `BertForSequenceClassification` directory.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let BertFiles {
            bert,
            config,
            raw_config,
            vb,
            tokenizer,
            weights,
        } = load_bert(dir, device)?;
        let named = |e: candle_core::Error| ModelError::bad_file(&weights, e);
        let h = config.hidden_size;
        let pooler = candle_nn::linear(h, h, vb.pp("bert.pooler.dense")).map_err(named)?;
        let classifier =
            candle_nn::linear(h, num_labels(&raw_config), vb.pp("classifier")).map_err(named)?;
        Ok(Self {
            bert,
            pooler,
            classifier,
            tokenizer,
            max_len: config.max_position_embeddings,
            budget: 16384,
            device: device.clone(),
            name: dir.display().to_string(),
        })
    }

    /// Caps the scored length.
    pub fn with_max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len.max(2);
        self
    }

    /// Token ids and type ids of a pair; when too long, tokens right after the first are
    /// dropped, so the first (`[CLS]`) token and the end of the response are kept.
    pub fn encode(&self, input: &RewardInput) -> Result<(Vec<u32>, Vec<u32>, bool)> {
        encode_pair(&self.tokenizer, input, self.max_len)
    }
}

impl RewardModel for BertClassifier {
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
                let hidden = self.bert.forward(ids, types, Some(mask))?;
                let first = hidden.i((.., 0))?.contiguous()?;
                let pooled = self.pooler.forward(&first)?.tanh()?;
                Ok(self
                    .classifier
                    .forward(&pooled)?
                    .i((.., 0))?
                    .to_vec1::<f32>()?)
            },
        )
    }
}
