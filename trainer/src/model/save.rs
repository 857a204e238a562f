//! Writing a trained model as a Hugging Face directory that `thresh serve` loads as is:
//! `config.json`, `model.safetensors` (LoRA merged), `tokenizer.json` and
//! `tokenizer_config.json` (with the chat template where the source had one); and the
//! crash-safe file helpers the trainer's outputs go through ([`write_atomic`],
//! [`replace_dir`]): every file is synced before the rename that publishes it, and the
//! directory after, so neither a kill nor a power cut leaves a torn output in place.

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

/// Writes `bytes` to `path` and flushes them to the disk (`fsync`) before returning, so a
/// later rename of `path` can never publish a file whose data is still only in memory.
pub fn write_durable(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Flushes the data of the already written file `path` to the disk (`fsync`), e.g. one that
/// candle or tokenizers wrote.
pub fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))
}

/// Flushes the entries of directory `dir` (files created, renamed or removed in it) to the
/// disk. A rename is only durable once its directory is synced. A no-op where directories
/// cannot be opened as files (Windows).
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(io_err(dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Renames the complete, synced file `tmp` to `path` and syncs their directory, so `path`
/// is either its old content or the new one, also after a crash or a power cut.
pub fn rename_durable(tmp: &Path, path: &Path) -> Result<()> {
    sync_file(tmp)?;
    std::fs::rename(tmp, path).map_err(io_err(path))?;
    sync_dir(parent_of(path))
}

/// Writes `bytes` to `path` through a temporary file (synced), a rename and a sync of the
/// directory: readers, and a process resumed after a kill or a power cut, see the old
/// content or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_sibling(path);
    write_durable(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(parent_of(path))
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

/// `dir` with `.old` appended to its file name: where [`replace_dir`] moves the directory
/// it replaces while it swaps the new one in.
pub fn old_sibling(dir: &Path) -> PathBuf {
    let mut name = dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".old");
    dir.with_file_name(name)
}

/// Replaces the directory `dir` by the fully written directory `tmp` (whose files the
/// caller has synced): `tmp`'s entries are synced, `dir` moves to `dir.old`, `tmp` to
/// `dir`, the parent is synced and `dir.old` removed. At every moment one complete
/// directory exists under `dir` or, between the two renames, under `dir.old`; a reader
/// that finds `dir` missing takes `dir.old` (see `checkpoint::resume`). A `dir.old` left
/// by an interrupted swap is older than `tmp` and removed too.
pub fn replace_dir(tmp: &Path, dir: &Path) -> Result<()> {
    sync_dir(tmp)?;
    let parent = parent_of(dir);
    let old = old_sibling(dir);
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
        }
        std::fs::rename(dir, &old).map_err(io_err(dir))?;
    }
    std::fs::rename(tmp, dir).map_err(io_err(dir))?;
    sync_dir(parent)?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io_err(&old))?;
        sync_dir(parent)?;
    }
    Ok(())
}

impl TrainModel {
    /// Saves the model (adapters merged) as a Hugging Face directory at `dir`: a causal LM,
    /// or a `*ForSequenceClassification` reward model when it has a score head. The
    /// directory is written beside `dir` (`<dir>.tmp`), every file synced, and swapped into
    /// place by [`replace_dir`] when complete.
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
        sync_file(&weights_path)?;
        let cfg = config_json(&self.cfg, self.tokenizer.eos_ids(), classifier)?;
        let cfg_path = tmp.join("config.json");
        write_durable(
            &cfg_path,
            &serde_json::to_vec_pretty(&cfg).unwrap_or_default(),
        )?;
        let tok_path = tmp.join("tokenizer.json");
        self.tokenizer
            .inner()
            .ok_or_else(|| TrainError::Config("a remote tokenizer cannot be saved".into()))?
            .save(&tok_path, false)
            .map_err(|e| TrainError::Config(format!("{}: {e}", tok_path.display())))?;
        sync_file(&tok_path)?;
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
        write_durable(
            &tc_path,
            &serde_json::to_vec_pretty(&tc).unwrap_or_default(),
        )?;
        replace_dir(&tmp, dir)
    }
}
