//! [`DecoderConfig`] from the metadata and tensor list of a GGUF file.

use std::path::Path;

use candle_core::quantized::gguf_file;

use super::{DecoderConfig, Family, RopeScaling};
use crate::error::{ModelError, Result};
use crate::tokenizer::gguf_str;

impl DecoderConfig {
    /// Reads a decoder configuration from GGUF metadata (`path` names the file in errors).
    /// Shapes come from `{arch}.*` keys; projection biases, q/k norms and tied embeddings
    /// from the tensors the file holds; the rest from the family's
    /// [`traits`](Family::traits).
    pub fn from_gguf(content: &gguf_file::Content, path: &Path) -> Result<Self> {
        let md = &content.metadata;
        let arch = gguf_str(md.get("general.architecture")).unwrap_or_default();
        let family =
            Family::from_name(&arch).ok_or_else(|| ModelError::UnsupportedArchitecture {
                arch: arch.clone(),
                path: path.to_path_buf(),
                supported: "GGUF architectures llama, mistral, qwen2, qwen3",
            })?;
        let traits = family.traits();
        let missing = |key: String| ModelError::InvalidConfig {
            path: path.to_path_buf(),
            reason: format!("metadata key {key} missing or not a number"),
        };
        let get_u = |k: &str| -> Result<usize> {
            let key = format!("{arch}.{k}");
            md.get(&key)
                .and_then(|v| v.to_u64().ok().or_else(|| v.to_u32().ok().map(u64::from)))
                .map(|v| v as usize)
                .ok_or_else(|| missing(key))
        };
        let get_f = |k: &str| md.get(&format!("{arch}.{k}")).and_then(|v| v.to_f32().ok());
        let has = |tensor: &str| content.tensor_infos.contains_key(tensor);
        if has("rope_freqs.weight") {
            return Err(ModelError::InvalidConfig {
                path: path.to_path_buf(),
                reason: "per-dimension rope_freqs (Llama 3.1 scaling in GGUF) is not supported; load the Hugging Face directory".into(),
            });
        }
        let hidden = get_u("embedding_length")?;
        let heads = get_u("attention.head_count")?;
        let head_dim = get_u("attention.key_length")
            .or_else(|_| get_u("rope.dimension_count"))
            .unwrap_or(hidden / heads.max(1));
        let vocab = get_u("vocab_size").or_else(|_| {
            content
                .tensor_infos
                .get("token_embd.weight")
                .and_then(|t| t.shape.dims().first().copied())
                .ok_or_else(|| missing(format!("{arch}.vocab_size")))
        })?;
        let rope_scaling = match gguf_str(md.get(&format!("{arch}.rope.scaling.type"))).as_deref() {
            Some("linear") => {
                get_f("rope.scaling.factor").map(|f| RopeScaling::Linear { factor: f as f64 })
            }
            _ => None,
        };
        let cfg = DecoderConfig {
            family,
            hidden_size: hidden,
            intermediate_size: get_u("feed_forward_length")?,
            vocab_size: vocab,
            num_layers: get_u("block_count")?,
            num_heads: heads,
            num_kv_heads: get_u("attention.head_count_kv").unwrap_or(heads),
            head_dim,
            rms_norm_eps: get_f("attention.layer_norm_rms_epsilon").unwrap_or(1e-5) as f64,
            rope_theta: get_f("rope.freq_base").unwrap_or(10_000.0) as f64,
            rope_scaling,
            max_position_embeddings: get_u("context_length").unwrap_or(4096),
            tie_word_embeddings: !has("output.weight"),
            qkv_bias: has("blk.0.attn_q.bias"),
            o_bias: has("blk.0.attn_output.bias"),
            qk_norm: has("blk.0.attn_q_norm.weight"),
            sliding_window: None,
            activation: traits.activation,
            scale_embeddings: traits.scale_embeddings,
            // llama.cpp's converter stores offset norm weights (Gemma's) with the one
            // already added.
            norm_weight_offset: false,
            bos_token_id: md
                .get("tokenizer.ggml.bos_token_id")
                .and_then(|v| v.to_u32().ok()),
            eos_token_ids: md
                .get("tokenizer.ggml.eos_token_id")
                .and_then(|v| v.to_u32().ok())
                .into_iter()
                .collect(),
        };
        cfg.validate(path)?;
        Ok(cfg)
    }
}
