//! [`DecoderConfig`] from a Hugging Face `config.json`.

use std::path::Path;

use serde::Deserialize;

use super::family::SlidingWindow;
use super::{DecoderConfig, Family, OneOrMany, RopeScaling, read_json_value};
use crate::error::{ModelError, Result};

impl DecoderConfig {
    /// Parses a Hugging Face `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<Self> {
        let raw: HfConfig = serde_json::from_value(read_json_value(path)?)
            .map_err(|e| ModelError::bad_file(path, e))?;
        let cfg = raw.into_config(path)?;
        cfg.validate(path)?;
        Ok(cfg)
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
        let traits = family.traits();
        let invalid = |reason: String| ModelError::InvalidConfig {
            path: path.to_path_buf(),
            reason,
        };
        // Gemma names its activation `hidden_activation` (older configs `hidden_act`: "gelu",
        // which transformers runs as the tanh approximation too).
        let act_name = self.hidden_activation.as_ref().or(self.hidden_act.as_ref());
        let activation = family
            .activation_named(act_name.map(String::as_str))
            .ok_or_else(|| {
                invalid(format!(
                    "hidden_act {:?} is not supported for {arch_name} (silu; gelu_pytorch_tanh for gemma)",
                    act_name.map(String::as_str).unwrap_or_default()
                ))
            })?;
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
        let sliding_window = match traits.sliding_window {
            SlidingWindow::Always => self.sliding_window,
            SlidingWindow::WhenEnabled if self.use_sliding_window == Some(true) => {
                self.sliding_window
            }
            _ => None,
        };
        let (qkv_bias, o_bias) = traits
            .attention_bias
            .unwrap_or((self.attention_bias, self.attention_bias));
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
            tie_word_embeddings: self
                .tie_word_embeddings
                .unwrap_or(traits.tie_word_embeddings),
            qkv_bias,
            o_bias,
            qk_norm: traits.qk_norm,
            sliding_window,
            activation,
            scale_embeddings: traits.scale_embeddings,
            norm_weight_offset: traits.norm_weight_offset,
            bos_token_id: self.bos_token_id,
            eos_token_ids: self
                .eos_token_id
                .map(OneOrMany::into_vec)
                .unwrap_or_default(),
        })
    }
}
