//! Decoder configuration: one normalised `DecoderConfig`, built from a Hugging Face
//! `config.json` or from GGUF metadata.

use std::path::Path;

use serde::Deserialize;

use crate::error::{ModelError, Result};

/// The model families this runtime implements. They share one decoder and differ only in
/// the switches of [`DecoderConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Llama 2, 3, 3.x, SmolLM and SmolLM2.
    Llama,
    /// Mistral (optionally with a sliding window).
    Mistral,
    /// Qwen2 and Qwen2.5: bias on the q, k and v projections.
    Qwen2,
    /// Qwen3: RMSNorm on q and k per head, no projection bias.
    Qwen3,
    /// Gemma (1): embeddings scaled by sqrt(hidden), RMSNorm weights applied as `1 + w`,
    /// GeGLU (tanh-approximated GELU) MLP, tied embeddings. Released Aligner correctors use it.
    Gemma,
}

/// The MLP's gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU: `silu(gate) * up` (Llama, Mistral, Qwen).
    Silu,
    /// GeGLU with the tanh approximation of GELU (Gemma's `gelu_pytorch_tanh`).
    GeluTanh,
}

impl Family {
    /// Architectures accepted in `config.json` (`model_type`), for error messages.
    pub const SUPPORTED: &'static str = "llama, mistral, qwen2, qwen3, gemma (and their *ForCausalLM / *ForSequenceClassification checkpoints)";

    /// Maps a Hugging Face `model_type` or GGUF `general.architecture` to a family.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "llama" | "smollm" | "smollm2" => Some(Family::Llama),
            "mistral" => Some(Family::Mistral),
            "qwen2" => Some(Family::Qwen2),
            "qwen3" => Some(Family::Qwen3),
            "gemma" => Some(Family::Gemma),
            _ => None,
        }
    }
}

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
        Ok(())
    }

    /// Parses a Hugging Face `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<Self> {
        let raw: HfConfig = serde_json::from_value(read_json_value(path)?)
            .map_err(|e| ModelError::bad_file(path, e))?;
        let cfg = raw.into_config(path)?;
        cfg.validate(path)?;
        Ok(cfg)
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

#[derive(Debug, Deserialize)]
struct HfRopeScaling {
    #[serde(alias = "type")]
    rope_type: Option<String>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    hidden_size: usize,
    intermediate_size: usize,
    vocab_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    rope_scaling: Option<HfRopeScaling>,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    sliding_window: Option<usize>,
    use_sliding_window: Option<bool>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<OneOrMany>,
    hidden_act: Option<String>,
    hidden_activation: Option<String>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> usize {
    4096
}

impl HfConfig {
    fn into_config(self, path: &Path) -> Result<DecoderConfig> {
        let arch_name = self
            .model_type
            .clone()
            .or_else(|| {
                self.architectures.first().map(|a| {
                    a.trim_end_matches("ForCausalLM")
                        .trim_end_matches("ForSequenceClassification")
                        .to_lowercase()
                })
            })
            .unwrap_or_default();
        let family =
            Family::from_name(&arch_name).ok_or_else(|| ModelError::UnsupportedArchitecture {
                arch: arch_name.clone(),
                path: path.to_path_buf(),
                supported: Family::SUPPORTED,
            })?;
        let invalid = |reason: String| ModelError::InvalidConfig {
            path: path.to_path_buf(),
            reason,
        };
        // Gemma names its activation `hidden_activation` (older configs `hidden_act`: "gelu",
        // which transformers runs as the tanh approximation too).
        let activation = match (
            family,
            self.hidden_activation.as_ref().or(self.hidden_act.as_ref()),
        ) {
            (Family::Gemma, None) => Activation::GeluTanh,
            (Family::Gemma, Some(a))
                if matches!(a.as_str(), "gelu" | "gelu_pytorch_tanh" | "gelu_new") =>
            {
                Activation::GeluTanh
            }
            (_, None) => Activation::Silu,
            (_, Some(a)) if a == "silu" => Activation::Silu,
            (_, Some(a)) => {
                return Err(invalid(format!(
                    "hidden_act {a:?} is not supported for {arch_name} (silu; gelu_pytorch_tanh for gemma)"
                )));
            }
        };
        if self.mlp_bias {
            return Err(invalid("mlp_bias = true is not supported".into()));
        }
        let rope_scaling = match self.rope_scaling {
            None => None,
            Some(s) => match s.rope_type.as_deref() {
                None | Some("default") => None,
                Some("llama3") => Some(RopeScaling::Llama3 {
                    factor: s
                        .factor
                        .ok_or_else(|| invalid("rope_scaling.factor missing".into()))?,
                    low_freq_factor: s.low_freq_factor.unwrap_or(1.0),
                    high_freq_factor: s.high_freq_factor.unwrap_or(4.0),
                    original_max_position_embeddings: s
                        .original_max_position_embeddings
                        .unwrap_or(8192),
                }),
                Some("linear") => Some(RopeScaling::Linear {
                    factor: s
                        .factor
                        .ok_or_else(|| invalid("rope_scaling.factor missing".into()))?,
                }),
                Some(other) => {
                    return Err(invalid(format!(
                        "rope_scaling type {other:?} is not supported (llama3, linear)"
                    )));
                }
            },
        };
        let num_kv_heads = self.num_key_value_heads.unwrap_or(self.num_attention_heads);
        let head_dim = self
            .head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1));
        let sliding_window = match family {
            Family::Mistral => self.sliding_window,
            Family::Qwen2 | Family::Qwen3 if self.use_sliding_window == Some(true) => {
                self.sliding_window
            }
            _ => None,
        };
        let (qkv_bias, o_bias) = match family {
            Family::Qwen2 => (true, false),
            _ => (self.attention_bias, self.attention_bias),
        };
        Ok(DecoderConfig {
            family,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            vocab_size: self.vocab_size,
            num_layers: self.num_hidden_layers,
            num_heads: self.num_attention_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: self.rms_norm_eps,
            rope_theta: self.rope_theta,
            rope_scaling,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(family == Family::Gemma),
            qkv_bias,
            o_bias,
            qk_norm: family == Family::Qwen3,
            sliding_window,
            activation,
            scale_embeddings: family == Family::Gemma,
            norm_weight_offset: family == Family::Gemma,
            bos_token_id: self.bos_token_id,
            eos_token_ids: self
                .eos_token_id
                .map(OneOrMany::into_vec)
                .unwrap_or_default(),
        })
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
