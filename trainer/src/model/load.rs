//! Reading a model's weights, configuration and tokenizer from anything `thresh_models` loads:
//! a Hugging Face directory (causal LM or `*ForSequenceClassification`) or a GGUF file, whose
//! weights are dequantised to f32.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use thresh_models::config::{DecoderConfig, read_json_value};
use thresh_models::loader::{GgufModel, load_hf_tokenizer, open_gguf, safetensors_files};
use thresh_models::{ChatTemplate, ModelError, Tokenizer, WeightFile};

use crate::error::{Result, TrainError};

/// Everything read from a model source, weights in f32 under Hugging Face names.
pub struct Source {
    /// The normalised configuration.
    pub cfg: DecoderConfig,
    /// Every decoder weight (`model.*`, and `lm_head.weight` unless tied), f32.
    pub weights: BTreeMap<String, Tensor>,
    /// `score.weight` `(1, hidden)` of a sequence classifier, when the source is one.
    pub score: Option<Tensor>,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The chat template, where the source has one.
    pub chat_template: Option<ChatTemplate>,
    /// `tokenizer_config.json` of a Hugging Face source, copied to the output as written.
    pub tokenizer_config: Option<serde_json::Value>,
    /// Where it came from.
    pub path: PathBuf,
}

/// Names and shapes of the decoder weights a configuration needs, in Hugging Face layout.
pub fn weight_shapes(cfg: &DecoderConfig, lm_head: bool) -> Vec<(String, Vec<usize>)> {
    let (h, hd, i) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
    let (qd, kvd) = (cfg.num_heads * hd, cfg.num_kv_heads * hd);
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![cfg.vocab_size, h],
    )];
    for l in 0..cfg.num_layers {
        let p = format!("model.layers.{l}.");
        let mut put = |n: &str, s: &[usize]| out.push((format!("{p}{n}"), s.to_vec()));
        put("input_layernorm.weight", &[h]);
        put("self_attn.q_proj.weight", &[qd, h]);
        put("self_attn.k_proj.weight", &[kvd, h]);
        put("self_attn.v_proj.weight", &[kvd, h]);
        put("self_attn.o_proj.weight", &[h, qd]);
        if cfg.qkv_bias {
            put("self_attn.q_proj.bias", &[qd]);
            put("self_attn.k_proj.bias", &[kvd]);
            put("self_attn.v_proj.bias", &[kvd]);
        }
        if cfg.o_bias {
            put("self_attn.o_proj.bias", &[h]);
        }
        if cfg.qk_norm {
            put("self_attn.q_norm.weight", &[hd]);
            put("self_attn.k_norm.weight", &[hd]);
        }
        put("post_attention_layernorm.weight", &[h]);
        put("mlp.gate_proj.weight", &[i, h]);
        put("mlp.up_proj.weight", &[i, h]);
        put("mlp.down_proj.weight", &[h, i]);
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if lm_head && !cfg.tie_word_embeddings {
        out.push(("lm_head.weight".to_string(), vec![cfg.vocab_size, h]));
    }
    out
}

fn read_weights(
    cfg: &DecoderConfig,
    file: &mut WeightFile,
    lm_head: bool,
) -> Result<BTreeMap<String, Tensor>> {
    // Some classifier checkpoints drop the `model.` prefix.
    let bare = !file.contains("model.embed_tokens.weight") && file.contains("embed_tokens.weight");
    let mut out = BTreeMap::new();
    for (name, shape) in weight_shapes(cfg, lm_head) {
        let stored = match name.strip_prefix("model.") {
            Some(rest) if bare => rest.to_string(),
            _ => name.clone(),
        };
        let t = file.get(&stored, &shape)?.to_dtype(DType::F32)?;
        out.insert(name, t);
    }
    Ok(out)
}

/// Reads a model from a Hugging Face directory or a `.gguf` file onto `device`.
pub fn read_source(spec: &Path, device: &Device) -> Result<Source> {
    if spec.is_dir() {
        read_hf_dir(spec, device)
    } else if spec
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        read_gguf(spec, device)
    } else if !spec.exists() {
        Err(ModelError::MissingFile {
            path: spec.to_path_buf(),
            what: "a model directory or .gguf file".into(),
        }
        .into())
    } else {
        Err(ModelError::bad_file(
            spec,
            "expected a Hugging Face model directory or a .gguf file",
        )
        .into())
    }
}

fn read_hf_dir(dir: &Path, device: &Device) -> Result<Source> {
    let cfg_path = dir.join("config.json");
    let cfg = DecoderConfig::from_hf_json(&cfg_path)?;
    let raw = read_json_value(&cfg_path)?;
    let classifier = raw
        .get("architectures")
        .and_then(|a| a.as_array())
        .and_then(|a| a.first())
        .and_then(|a| a.as_str())
        .is_some_and(|a| a.ends_with("ForSequenceClassification"));
    let mut file = WeightFile::safetensors(&safetensors_files(dir)?, DType::F32, device)?;
    let weights = read_weights(&cfg, &mut file, !classifier)?;
    let score = if classifier {
        let labels = raw.get("num_labels").and_then(|v| v.as_u64()).unwrap_or(1) as usize;
        if labels != 1 {
            return Err(TrainError::Config(format!(
                "{}: the classifier has {labels} labels; reward training needs one",
                cfg_path.display()
            )));
        }
        Some(
            file.get("score.weight", &[1, cfg.hidden_size])?
                .to_dtype(DType::F32)?,
        )
    } else {
        None
    };
    let (tokenizer, chat_template) = load_hf_tokenizer(dir, &cfg.eos_token_ids)?;
    let tc_path = dir.join("tokenizer_config.json");
    let tokenizer_config = if tc_path.exists() {
        Some(read_json_value(&tc_path)?)
    } else {
        None
    };
    Ok(Source {
        cfg,
        weights,
        score,
        tokenizer,
        chat_template,
        tokenizer_config,
        path: dir.to_path_buf(),
    })
}

fn read_gguf(path: &Path, device: &Device) -> Result<Source> {
    let GgufModel {
        cfg,
        tokenizer,
        chat_template,
        weights: mut file,
    } = open_gguf(path, DType::F32, device)?;
    let weights = read_weights(&cfg, &mut file, true)?;
    Ok(Source {
        cfg,
        weights,
        score: None,
        tokenizer,
        chat_template,
        tokenizer_config: None,
        path: path.to_path_buf(),
    })
}
