//! Writing a trained model as a Hugging Face directory that `thresh serve` loads as is:
//! `config.json`, `model.safetensors` (LoRA merged), `tokenizer.json` and
//! `tokenizer_config.json` (with the chat template where the source had one).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;
use serde_json::json;
use thresh_models::DecoderConfig;
use thresh_models::config::{Activation, Family, RopeScaling};

use super::TrainModel;
use crate::error::{Result, TrainError};

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The `config.json` that `DecoderConfig::from_hf_json` reads back as `cfg`; `classifier`
/// writes the `*ForSequenceClassification` architecture with one label.
pub fn config_json(
    cfg: &DecoderConfig,
    eos_ids: &[u32],
    classifier: bool,
) -> Result<serde_json::Value> {
    let traits = cfg.family.traits();
    let (model_type, stem) = (traits.model_type, traits.architecture_stem);
    // A family that fixes its projection biases (Qwen2) ignores `attention_bias`.
    let attention_bias = match traits.attention_bias {
        Some(_) => false,
        _ if cfg.qkv_bias != cfg.o_bias => {
            return Err(TrainError::Config(
                "a config.json cannot express q/k/v bias without output bias for this family"
                    .into(),
            ));
        }
        _ => cfg.qkv_bias,
    };
    let arch = if classifier {
        format!("{stem}ForSequenceClassification")
    } else {
        format!("{stem}ForCausalLM")
    };
    let mut v = json!({
        "architectures": [arch],
        "model_type": model_type,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "vocab_size": cfg.vocab_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_theta,
        "max_position_embeddings": cfg.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "attention_bias": attention_bias,
        "torch_dtype": "float32",
    });
    match cfg.activation {
        Activation::Silu => v["hidden_act"] = json!("silu"),
        Activation::GeluTanh => v["hidden_activation"] = json!("gelu_pytorch_tanh"),
    }
    if let Some(w) = cfg.sliding_window {
        v["sliding_window"] = json!(w);
        v["use_sliding_window"] = json!(true);
    }
    if let Some(b) = cfg.bos_token_id {
        v["bos_token_id"] = json!(b);
    }
    if !eos_ids.is_empty() {
        v["eos_token_id"] = json!(eos_ids);
    }
    match &cfg.rope_scaling {
        None => {}
        Some(RopeScaling::Linear { factor }) => {
            v["rope_scaling"] = json!({"rope_type": "linear", "factor": factor});
        }
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => {
            v["rope_scaling"] = json!({
                "rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
                "high_freq_factor": high_freq_factor,
                "original_max_position_embeddings": original_max_position_embeddings,
            });
        }
    }
    if classifier {
        v["num_labels"] = json!(1);
    }
    Ok(v)
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_sibling(path);
    std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// `path` with `.tmp` appended to its file name.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces the directory `dir` by the fully written directory `tmp`.
pub fn replace_dir(tmp: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        let old = dir.with_file_name(format!(
            "{}.old",
            dir.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
        std::fs::rename(dir, &old).map_err(io_err(dir))?;
        std::fs::rename(tmp, dir).map_err(io_err(dir))?;
        std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
    } else {
        std::fs::rename(tmp, dir).map_err(io_err(dir))?;
    }
    Ok(())
}

impl TrainModel {
    /// Saves the model (adapters merged) as a Hugging Face directory at `dir`: a causal LM,
    /// or a `*ForSequenceClassification` reward model when it has a score head. The
    /// directory is written beside `dir` and renamed into place when complete.
    pub fn save_pretrained(&self, dir: &Path) -> Result<()> {
        let tmp = temp_sibling(dir);
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let classifier = self.score.is_some();
        let mut weights: HashMap<String, Tensor> = self.merged_weights()?.into_iter().collect();
        if classifier {
            weights.remove("lm_head.weight");
        }
        // GGUF stores Gemma's norm weights with the one added; config.json's gemma means offsets.
        if self.cfg.family == Family::Gemma && !self.cfg.norm_weight_offset {
            for (name, w) in weights.iter_mut() {
                if name.ends_with("norm.weight") {
                    *w = (&*w - 1.0)?;
                }
            }
        }
        let weights_path = tmp.join("model.safetensors");
        candle_core::safetensors::save(&weights, &weights_path)?;
        let cfg = config_json(&self.cfg, self.tokenizer.eos_ids(), classifier)?;
        let cfg_path = tmp.join("config.json");
        std::fs::write(
            &cfg_path,
            serde_json::to_vec_pretty(&cfg).unwrap_or_default(),
        )
        .map_err(io_err(&cfg_path))?;
        let tok_path = tmp.join("tokenizer.json");
        self.tokenizer
            .inner()
            .save(&tok_path, false)
            .map_err(|e| TrainError::Config(format!("{}: {e}", tok_path.display())))?;
        let mut tc = self.tokenizer_config.clone().unwrap_or_else(|| {
            json!({
                "bos_token": self.tokenizer.bos_token(),
                "eos_token": self.tokenizer.eos_token(),
            })
        });
        if let (Some(t), Some(obj)) = (&self.chat_template, tc.as_object_mut()) {
            obj.entry("chat_template")
                .or_insert_with(|| json!(t.source()));
        }
        let tc_path = tmp.join("tokenizer_config.json");
        std::fs::write(&tc_path, serde_json::to_vec_pretty(&tc).unwrap_or_default())
            .map_err(io_err(&tc_path))?;
        replace_dir(&tmp, dir)
    }
}
