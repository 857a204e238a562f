//! Loading the files of a BERT-family directory, shared by the sentence-embedding rewards and
//! the BERT sequence classifier.

use std::path::Path;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use thresh_models::ModelError;
use thresh_models::config::read_json_value;

use crate::error::{Result, RewardError};

/// A loaded BERT encoder with what its callers need next to it.
pub(crate) struct BertFiles {
    /// The encoder.
    pub bert: BertModel,
    /// The typed configuration.
    pub config: BertConfig,
    /// `config.json` as written (for `num_labels`, `id2label`).
    pub raw_config: serde_json::Value,
    /// Weights, to load heads from.
    pub vb: VarBuilder<'static>,
    /// The tokenizer with its own truncation and padding turned off.
    pub tokenizer: tokenizers::Tokenizer,
    /// The weights file, for error messages.
    pub weights: std::path::PathBuf,
}

/// Maps a tokenizer error into the reward error type.
pub(crate) fn tok_err(e: impl std::fmt::Display) -> RewardError {
    RewardError::Model(ModelError::Tokenizer(e.to_string()))
}

/// Reads `config.json`, memory-maps `model.safetensors`, loads the encoder (with or without
/// the `bert.` prefix) and `tokenizer.json`.
pub(crate) fn load_bert(dir: &Path, device: &Device) -> Result<BertFiles> {
    let cfg_path = dir.join("config.json");
    let raw_config = read_json_value(&cfg_path)?;
    let config: BertConfig = serde_json::from_value(raw_config.clone())
        .map_err(|e| ModelError::bad_file(&cfg_path, e))?;
    let weights = dir.join("model.safetensors");
    if !weights.exists() {
        return Err(ModelError::MissingFile {
            path: weights,
            what: "model weights".into(),
        }
        .into());
    }
    // SAFETY: memory-mapped read-only, as for every model file thresh serves.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, device) }
        .map_err(|e| ModelError::bad_file(&weights, e))?;
    let bert =
        BertModel::load(vb.clone(), &config).map_err(|e| ModelError::bad_file(&weights, e))?;
    let mut tokenizer = thresh_models::Tokenizer::from_file(&dir.join("tokenizer.json"))?;
    tokenizer.with_truncation(None).map_err(tok_err)?;
    tokenizer.with_padding(None);
    Ok(BertFiles {
        bert,
        config,
        raw_config,
        vb,
        tokenizer,
        weights,
    })
}

/// `num_labels` of a classifier configuration (or the size of `id2label`), at least 1.
pub(crate) fn num_labels(raw_config: &serde_json::Value) -> usize {
    raw_config
        .get("num_labels")
        .and_then(|v| v.as_u64())
        .map(|n| n as usize)
        .or_else(|| {
            raw_config
                .get("id2label")
                .and_then(|m| m.as_object())
                .map(|m| m.len())
        })
        .unwrap_or(1)
        .max(1)
}
