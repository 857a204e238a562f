//! Decoder configuration: one normalised `DecoderConfig`, built from a Hugging Face
//! `config.json` ([`DecoderConfig::from_hf_json`], in `hf`) or from GGUF metadata
//! ([`DecoderConfig::from_gguf`], in `gguf`). What a model family fixes about its
//! checkpoints is decided once, in [`Family::traits`], which both readers consult.

mod family;
mod gguf;
mod hf;
#[cfg(test)]
mod tests;

pub use family::{Activation, Family, FamilyTraits, SlidingWindow};

use std::path::Path;

use serde::Deserialize;

use crate::error::{ModelError, Result};

/// Largest hidden, intermediate or head size and head count [`DecoderConfig::validate`]
/// accepts.
pub const MAX_WIDTH: usize = 1 << 20;
/// Largest vocabulary accepted.
pub const MAX_VOCAB: usize = 1 << 24;
/// Most layers accepted.
pub const MAX_LAYERS: usize = 1 << 12;
/// Longest context accepted.
pub const MAX_POSITIONS: usize = 1 << 24;
/// Largest `max_position_embeddings x head_dim` accepted: the rotary tables hold half of it
/// twice (1 GiB in f32 at the cap; Qwen2.5-1M's 2^20 x 128 is 2^27).
pub const MAX_ROPE_TABLE: usize = 1 << 28;

/// Frequency scaling of rotary embeddings.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Llama 3.1's piecewise scaling (`rope_type: "llama3"`).
    Llama3 {
        /// Overall scale factor.
        factor: f64,
        /// Wavelengths longer than `original / low_freq_factor` are scaled fully.
        low_freq_factor: f64,
        /// Wavelengths shorter than `original / high_freq_factor` are not scaled.
        high_freq_factor: f64,
        /// Context length the model was pre-trained with.
        original_max_position_embeddings: usize,
    },
    /// Positions divided by `factor` (`rope_type: "linear"`).
    Linear {
        /// Scale factor.
        factor: f64,
    },
}

/// The normalised configuration of a Llama-family decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// Which family the checkpoint belongs to.
    pub family: Family,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP's hidden layer.
    pub intermediate_size: usize,
    /// Number of rows of the embedding table.
    pub vocab_size: usize,
    /// Number of transformer blocks.
    pub num_layers: usize,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (grouped-query attention when smaller than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Epsilon of every RMSNorm.
    pub rms_norm_eps: f64,
    /// Base of the rotary frequencies.
    pub rope_theta: f64,
    /// Optional rotary frequency scaling.
    pub rope_scaling: Option<RopeScaling>,
    /// Longest sequence the rotary tables cover.
    pub max_position_embeddings: usize,
    /// Whether the LM head reuses the embedding table.
    pub tie_word_embeddings: bool,
    /// Bias on the q, k and v projections.
    pub qkv_bias: bool,
    /// Bias on the output projection.
    pub o_bias: bool,
    /// RMSNorm on queries and keys per head (Qwen3).
    pub qk_norm: bool,
    /// Sliding-window attention width, where the model uses one.
    pub sliding_window: Option<usize>,
    /// The MLP's gate activation.
    pub activation: Activation,
    /// Multiply token embeddings by `sqrt(hidden_size)` (Gemma).
    pub scale_embeddings: bool,
    /// RMSNorm weights are stored as offsets from one and applied as `1 + w` (Gemma).
    pub norm_weight_offset: bool,
    /// Beginning-of-sequence token, where known.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence tokens named by the config.
    pub eos_token_ids: Vec<u32>,
}

impl DecoderConfig {
    /// Number of query heads served by each key/value head.
    pub fn gqa_groups(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// Checks the invariants the decoder relies on.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |reason: String| ModelError::InvalidConfig {
            path: path.to_path_buf(),
            reason,
        };
        if self.hidden_size == 0
            || self.num_layers == 0
            || self.num_heads == 0
            || self.vocab_size == 0
        {
            return Err(bad("hidden_size, num_hidden_layers, num_attention_heads and vocab_size must be positive".into()));
        }
        if self.num_kv_heads == 0 || !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(bad(format!(
                "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
                self.num_heads, self.num_kv_heads
            )));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return Err(bad(format!(
                "head_dim ({}) must be even and positive",
                self.head_dim
            )));
        }
        if self.max_position_embeddings == 0 {
            return Err(bad("max_position_embeddings must be positive".into()));
        }
        // A hostile or corrupt file must not make the loader allocate without bound (the
        // layer list, the rotary tables of max_position_embeddings x head_dim) or overflow
        // shape arithmetic: every size is capped far above any real model's.
        for (name, value, cap) in [
            ("hidden_size", self.hidden_size, MAX_WIDTH),
            ("intermediate_size", self.intermediate_size, MAX_WIDTH),
            ("num_attention_heads", self.num_heads, MAX_WIDTH),
            ("num_key_value_heads", self.num_kv_heads, MAX_WIDTH),
            ("head_dim", self.head_dim, MAX_WIDTH),
            ("vocab_size", self.vocab_size, MAX_VOCAB),
            ("num_hidden_layers", self.num_layers, MAX_LAYERS),
            (
                "max_position_embeddings",
                self.max_position_embeddings,
                MAX_POSITIONS,
            ),
        ] {
            if value > cap {
                return Err(bad(format!("{name} ({value}) is larger than {cap}")));
            }
        }
        if self.max_position_embeddings * self.head_dim > MAX_ROPE_TABLE {
            return Err(bad(format!(
                "max_position_embeddings x head_dim ({} x {}) is larger than {MAX_ROPE_TABLE}",
                self.max_position_embeddings, self.head_dim
            )));
        }
        Ok(())
    }
}

/// Either one id or a list, as `eos_token_id` appears in the wild.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<u32> {
        match self {
            OneOrMany::One(x) => vec![x],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Reads a JSON file (such as `config.json`) as an untyped value, naming the file on error.
pub fn read_json_value(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ModelError::MissingFile {
                path: path.to_path_buf(),
                what: "a JSON configuration".into(),
            }
        } else {
            ModelError::bad_file(path, e)
        }
    })?;
    serde_json::from_str(&text).map_err(|e| ModelError::bad_file(path, e))
}
