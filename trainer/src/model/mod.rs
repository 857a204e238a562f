//! The differentiable decoder the trainer optimises.
//!
//! It reads any model `thresh_models` loads ([`load::read_source`]) and rebuilds the same
//! Llama-family network (Llama, Mistral, Qwen2, Qwen3, Gemma switches of
//! [`thresh_models::DecoderConfig`]) from differentiable operations ([`ops`]). Weights are
//! either all trainable ([`Tuning::Full`]) or frozen with LoRA adapters on the attention and
//! MLP projections ([`Tuning::Lora`]). An optional `score` head turns it into a reward model
//! in the `*ForSequenceClassification` layout.

pub mod batch;
pub mod forward;
pub mod frozen;
pub mod load;
pub mod ops;
pub mod save;

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use thresh_models::{ChatTemplate, DecoderConfig, Tokenizer};

use crate::error::{Result, TrainError};
pub use batch::Batch;
pub use load::Source;

/// The projections LoRA adapts, as suffixes of the layer's weight names.
pub const LORA_TARGETS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// Which parameters train.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tuning {
    /// Every weight is a trainable variable.
    Full,
    /// Nothing trains (evaluation, reference models).
    Frozen,
    /// Base weights frozen; rank-`rank` adapters `W + (alpha / rank) B A` on the
    /// [`LORA_TARGETS`], with `B` zero-initialised so training starts at the base model.
    Lora {
        /// Adapter rank (positive).
        rank: usize,
        /// Scale numerator.
        alpha: f64,
    },
}

impl Tuning {
    /// `--lora-rank 0` means full fine-tuning.
    pub fn from_rank(rank: usize, alpha: f64) -> Self {
        if rank == 0 {
            Tuning::Full
        } else {
            Tuning::Lora { rank, alpha }
        }
    }
}

/// A LoRA adapter of one projection.
#[derive(Debug, Clone)]
pub struct LoraAdapter {
    /// `(rank, in)`.
    pub a: Tensor,
    /// `(out, rank)`, zero at initialisation.
    pub b: Tensor,
}

/// A trainable decoder with its tokenizer.
pub struct TrainModel {
    cfg: DecoderConfig,
    /// Base weights by Hugging Face name; trainable ones share storage with their variable.
    weights: BTreeMap<String, Tensor>,
    /// Trainable variables in a fixed order (checkpoint and optimiser state follow it).
    vars: Vec<(String, Var)>,
    /// Adapters by the base weight's name (`model.layers.0.self_attn.q_proj.weight`).
    lora: BTreeMap<String, LoraAdapter>,
    lora_scale: f64,
    tuning: Tuning,
    score: Option<Tensor>,
    cos: Tensor,
    sin: Tensor,
    tokenizer: Tokenizer,
    chat_template: Option<ChatTemplate>,
    tokenizer_config: Option<serde_json::Value>,
    device: Device,
}

impl TrainModel {
    /// Loads a model (Hugging Face directory or GGUF) for training. `score_head` adds (or,
    /// from a sequence classifier, keeps) a `score.weight` head for reward modelling; a new
    /// head starts from `N(0, 1/hidden)` values drawn from `seed`.
    pub fn load(
        path: &Path,
        tuning: Tuning,
        score_head: bool,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        let source = load::read_source(path, device)?;
        Self::from_source(source, tuning, score_head, seed)
    }

    /// Builds the trainable model from weights already read.
    pub fn from_source(src: Source, tuning: Tuning, score_head: bool, seed: u64) -> Result<Self> {
        let device = src
            .weights
            .values()
            .next()
            .map(|t| t.device().clone())
            .unwrap_or(Device::Cpu);
        let mut rng = StdRng::seed_from_u64(seed);
        let cfg = src.cfg;
        let mut weights = src.weights;
        let mut vars = Vec::new();
        let mut lora = BTreeMap::new();
        let mut lora_scale = 0.0;
        match tuning {
            Tuning::Frozen => {}
            Tuning::Full => {
                for (name, t) in weights.iter_mut() {
                    let v = Var::from_tensor(t)?;
                    *t = v.as_tensor().clone();
                    vars.push((name.clone(), v));
                }
            }
            Tuning::Lora { rank, alpha } => {
                if rank == 0 {
                    return Err(TrainError::Config("LoRA rank must be positive".into()));
                }
                lora_scale = alpha / rank as f64;
                for l in 0..cfg.num_layers {
                    for target in LORA_TARGETS {
                        let name = format!("model.layers.{l}.{target}.weight");
                        let (out, inp) = weights
                            .get(&name)
                            .ok_or_else(|| TrainError::Config(format!("missing weight {name}")))?
                            .dims2()?;
                        // PEFT's default: A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0.
                        let bound = 1.0 / (inp as f64).sqrt();
                        let a: Vec<f32> = (0..rank * inp)
                            .map(|_| rng.random_range(-bound..bound) as f32)
                            .collect();
                        let a = Var::from_tensor(&Tensor::from_vec(a, (rank, inp), &device)?)?;
                        let b = Var::zeros((out, rank), DType::F32, &device)?;
                        let stem = format!("model.layers.{l}.{target}");
                        lora.insert(
                            name,
                            LoraAdapter {
                                a: a.as_tensor().clone(),
                                b: b.as_tensor().clone(),
                            },
                        );
                        vars.push((format!("{stem}.lora_A.weight"), a));
                        vars.push((format!("{stem}.lora_B.weight"), b));
                    }
                }
            }
        }
        let score = match (score_head, src.score) {
            (false, _) => None,
            (true, existing) => {
                let init = match existing {
                    Some(s) => s,
                    None => {
                        let std = (1.0 / cfg.hidden_size as f64).sqrt();
                        let w: Vec<f32> = (0..cfg.hidden_size)
                            .map(|_| (std * normal(&mut rng)) as f32)
                            .collect();
                        Tensor::from_vec(w, (1, cfg.hidden_size), &device)?
                    }
                };
                let v = Var::from_tensor(&init)?;
                let t = v.as_tensor().clone();
                vars.push(("score.weight".into(), v));
                Some(t)
            }
        };
        if !score_head && !cfg.tie_word_embeddings && !weights.contains_key("lm_head.weight") {
            return Err(TrainError::Config(format!(
                "{} has no LM head (a sequence classifier?): it can only train as a reward model",
                src.path.display()
            )));
        }
        let (cos, sin) = thresh_models::rope::tables(&cfg, DType::F32, &device)?;
        let (cos, sin) = ops::full_tables(&cos, &sin)?;
        Ok(Self {
            cfg,
            weights,
            vars,
            lora,
            lora_scale,
            tuning,
            score,
            cos,
            sin,
            tokenizer: src.tokenizer,
            chat_template: src.chat_template,
            tokenizer_config: src.tokenizer_config,
            device,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template, where the source had one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// The device of every tensor.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// How the model trains.
    pub fn tuning(&self) -> Tuning {
        self.tuning
    }

    /// Whether the model has a reward (`score`) head.
    pub fn has_score_head(&self) -> bool {
        self.score.is_some()
    }

    /// The trainable variables, in checkpoint order.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Number of trainable scalars.
    pub fn trainable_parameters(&self) -> usize {
        self.vars.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// The weights as they would be saved: base weights with every adapter merged
    /// (`W + (alpha / rank) B A`), plus `score.weight` for reward models.
    pub fn merged_weights(&self) -> Result<BTreeMap<String, Tensor>> {
        let mut out = BTreeMap::new();
        for (name, w) in &self.weights {
            let merged = match self.lora.get(name) {
                Some(ad) => (w + (ad.b.matmul(&ad.a)? * self.lora_scale)?)?,
                None => w.clone(),
            };
            out.insert(name.clone(), merged.detach());
        }
        if let Some(s) = &self.score {
            out.insert("score.weight".into(), s.detach());
        }
        Ok(out)
    }
}

/// One standard normal draw (Box-Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}
