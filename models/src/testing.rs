//! Tiny random models in Hugging Face layout, written on the fly for tests and examples.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::json;

use crate::config::Family;
use crate::error::{ModelError, Result};

/// Shape and switches of a tiny model.
#[derive(Debug, Clone)]
pub struct TinySpec {
    /// Family, written as `model_type`.
    pub family: Family,
    /// Residual width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Number of blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Context length.
    pub max_position_embeddings: usize,
    /// Reuse the embedding as LM head.
    pub tie_word_embeddings: bool,
    /// Llama 3 rotary scaling.
    pub llama3_rope: bool,
    /// Standard deviation of the random weights.
    pub std: f32,
    /// Draws the weights from this seed (the same weights on every run); `None` draws them
    /// from candle's unseeded generator.
    pub seed: Option<u64>,
}

impl TinySpec {
    /// A small grouped-query model of the given family.
    pub fn new(family: Family) -> Self {
        Self {
            family,
            hidden_size: 64,
            intermediate_size: 96,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            vocab_size: 128,
            max_position_embeddings: 128,
            tie_word_embeddings: false,
            llama3_rope: false,
            std: 0.15,
            seed: None,
        }
    }

    fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// The `config.json` of this model.
    pub fn config_json(&self) -> serde_json::Value {
        let model_type = self.family.traits().model_type;
        let mut cfg = json!({
            "model_type": model_type,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim(),
            "vocab_size": self.vocab_size,
            "max_position_embeddings": self.max_position_embeddings,
            "max_window_layers": self.num_layers,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": false,
            "use_sliding_window": false,
            "sliding_window": 4096,
            "hidden_act": "silu",
            "bos_token_id": 1,
            "eos_token_id": 2,
        });
        if self.family == Family::Gemma {
            cfg["hidden_act"] = serde_json::Value::Null;
            cfg["hidden_activation"] = json!("gelu_pytorch_tanh");
        }
        if self.llama3_rope {
            cfg["rope_scaling"] = json!({
                "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 16
            });
        }
        cfg
    }

    /// Random weights with Hugging Face names.
    pub fn weights(&self) -> Result<HashMap<String, Tensor>> {
        let dev = Device::Cpu;
        let (h, i, v, hd) = (
            self.hidden_size,
            self.intermediate_size,
            self.vocab_size,
            self.head_dim(),
        );
        let (qd, kvd) = (self.num_heads * hd, self.num_kv_heads * hd);
        let mut w = HashMap::new();
        let mut rng = self.seed.map(SplitMix64);
        let mut draw = |std: f32, shape: &[usize]| -> Result<Tensor> {
            Ok(match rng.as_mut() {
                Some(r) => {
                    let n = shape.iter().product();
                    let v: Vec<f32> = (0..n).map(|_| std * r.normal()).collect();
                    Tensor::from_vec(v, shape, &dev)?
                }
                None => Tensor::randn(0f32, std, shape, &dev)?,
            })
        };
        let mut put = |name: String, shape: &[usize]| -> Result<()> {
            let t = draw(self.std, shape)?;
            w.insert(name, t);
            Ok(())
        };
        put("model.embed_tokens.weight".into(), &[v, h])?;
        if !self.tie_word_embeddings {
            put("lm_head.weight".into(), &[v, h])?;
        }
        for l in 0..self.num_layers {
            let p = format!("model.layers.{l}.");
            put(format!("{p}self_attn.q_proj.weight"), &[qd, h])?;
            put(format!("{p}self_attn.k_proj.weight"), &[kvd, h])?;
            put(format!("{p}self_attn.v_proj.weight"), &[kvd, h])?;
            put(format!("{p}self_attn.o_proj.weight"), &[h, qd])?;
            if self.family == Family::Qwen2 {
                put(format!("{p}self_attn.q_proj.bias"), &[qd])?;
                put(format!("{p}self_attn.k_proj.bias"), &[kvd])?;
                put(format!("{p}self_attn.v_proj.bias"), &[kvd])?;
            }
            put(format!("{p}mlp.gate_proj.weight"), &[i, h])?;
            put(format!("{p}mlp.up_proj.weight"), &[i, h])?;
            put(format!("{p}mlp.down_proj.weight"), &[h, i])?;
        }
        // Norm weights near one, as trained models have them.
        let mut ones = |name: String, n: usize| -> Result<()> {
            let t = (draw(0.1, &[n])? + 1.0)?;
            w.insert(name, t);
            Ok(())
        };
        for l in 0..self.num_layers {
            let p = format!("model.layers.{l}.");
            ones(format!("{p}input_layernorm.weight"), h)?;
            ones(format!("{p}post_attention_layernorm.weight"), h)?;
            if self.family == Family::Qwen3 {
                ones(format!("{p}self_attn.q_norm.weight"), hd)?;
                ones(format!("{p}self_attn.k_norm.weight"), hd)?;
            }
        }
        ones("model.norm.weight".into(), h)?;
        Ok(w)
    }

    /// Writes `config.json` and `model.safetensors` (f32) into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::bad_file(dir, e))?;
        let cfg_path = dir.join("config.json");
        std::fs::write(&cfg_path, self.config_json().to_string())
            .map_err(|e| ModelError::bad_file(&cfg_path, e))?;
        let weights: HashMap<String, Tensor> = self
            .weights()?
            .into_iter()
            .map(|(k, t)| Ok((k, t.to_dtype(DType::F32)?)))
            .collect::<Result<_>>()?;
        candle_core::safetensors::save(&weights, dir.join("model.safetensors"))?;
        Ok(())
    }
}

/// The GPT-2 byte-to-character map of byte-level BPE.
fn bytes_to_unicode() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    let mut map = vec!['\0'; 256];
    for (b, c) in printable.iter().zip(chars) {
        map[*b as usize] = char::from_u32(c).unwrap_or('?');
    }
    map
}

/// Number of ids of [`write_byte_tokenizer`]'s tokenizer: 256 bytes, then `<|im_start|>`
/// (256) and `<|im_end|>` (257).
pub const BYTE_TOKENIZER_VOCAB: usize = 258;

/// Writes a byte-level tokenizer (one token per byte, no merges) with ChatML special tokens
/// and template: `tokenizer.json` and `tokenizer_config.json`. Tiny models with
/// `vocab_size = BYTE_TOKENIZER_VOCAB` then load as complete Hugging Face directories.
pub fn write_byte_tokenizer(dir: &Path) -> Result<()> {
    let vocab: serde_json::Map<String, serde_json::Value> = bytes_to_unicode()
        .into_iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), json!(i)))
        .collect();
    let special = |id: usize, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let tok = json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(256, "<|im_start|>"), special(257, "<|im_end|>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": []}
    });
    let cfg = json!({
        "bos_token": null,
        "eos_token": "<|im_end|>",
        "chat_template": "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    });
    for (name, value) in [("tokenizer.json", tok), ("tokenizer_config.json", cfg)] {
        let path = dir.join(name);
        std::fs::write(&path, value.to_string()).map_err(|e| ModelError::bad_file(&path, e))?;
    }
    Ok(())
}

/// Writes a complete tiny `LlamaForSequenceClassification`-style reward model (decoder
/// without LM head, `score.weight` of shape `(num_labels, hidden)`, byte tokenizer, vocabulary
/// `max(spec.vocab_size, BYTE_TOKENIZER_VOCAB)`) into `dir` and returns the score weight.
pub fn write_tiny_classifier(spec: &TinySpec, dir: &Path, num_labels: usize) -> Result<Tensor> {
    let mut spec = spec.clone();
    // At least the byte tokenizer's ids; a larger vocabulary is kept, for callers that put a
    // real tokenizer.json in place afterwards.
    spec.vocab_size = spec.vocab_size.max(BYTE_TOKENIZER_VOCAB);
    spec.tie_word_embeddings = true;
    std::fs::create_dir_all(dir).map_err(|e| ModelError::bad_file(dir, e))?;
    let arch = format!(
        "{}ForSequenceClassification",
        spec.family.traits().architecture_stem
    );
    let mut cfg = spec.config_json();
    cfg["architectures"] = json!([arch]);
    cfg["num_labels"] = json!(num_labels);
    cfg["tie_word_embeddings"] = json!(false);
    let cfg_path = dir.join("config.json");
    std::fs::write(&cfg_path, cfg.to_string()).map_err(|e| ModelError::bad_file(&cfg_path, e))?;
    let mut weights = spec.weights()?;
    weights.remove("lm_head.weight");
    let score = Tensor::randn(0f32, 1.0, (num_labels, spec.hidden_size), &Device::Cpu)?;
    weights.insert("score.weight".into(), score.clone());
    candle_core::safetensors::save(&weights, dir.join("model.safetensors"))?;
    write_byte_tokenizer(dir)?;
    Ok(score)
}

/// Where `scripts/fetch-models.sh` puts the demo models: `$THRESH_MODELS`, or the
/// workspace's `models/`.
pub fn demo_models_dir() -> PathBuf {
    std::env::var_os("THRESH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"))
}

fn demo_model(rel: &str) -> PathBuf {
    let p = demo_models_dir().join(rel);
    assert!(
        p.exists(),
        "{} missing: run scripts/fetch-models.sh",
        p.display()
    );
    p
}

/// The demo policy, SmolLM2-135M-Instruct (Q4_1 GGUF); panics with the fix if it is missing.
pub fn smollm2_gguf() -> PathBuf {
    demo_model("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The demo reward encoder, all-MiniLM-L6-v2; panics with the fix if it is missing.
pub fn minilm_dir() -> PathBuf {
    demo_model("all-minilm-l6-v2")
}

/// A small deterministic generator for seeded test weights (SplitMix64, Box-Muller).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// A standard normal draw.
    fn normal(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

/// The largest absolute difference between two tensors of one shape, as f32.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok((a - b)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(DType::F32)?
        .to_scalar::<f32>()?)
}
