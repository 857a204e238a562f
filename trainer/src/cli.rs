//! Command-line arguments of `thresh-train` (clap, with environment variables); a TOML file
//! (`--config`) stands in for them through [`thresh_settings::expand`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::optim::OptimKind;
use crate::schedule::ScheduleKind;

/// Offline alignment training for the models thresh serves.
#[derive(Parser, Debug)]
#[command(name = "thresh-train", version, about, args_override_self = true)]
pub struct Cli {
    /// TOML file of settings, keyed by the command's flags (`max_steps = 100`,
    /// `lora_rank = 8`); flags and the environment win over it (thresh-settings).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// What to train or evaluate.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Supervised fine-tuning on the desired responses (cross-entropy).
    Sft(SftArgs),
    /// A reward model (decoder + score head) with the Bradley-Terry loss on pairs.
    Reward(RewardArgs),
    /// DPO, IPO (pairs) or KTO (binary feedback) against a frozen reference.
    Dpo(DpoArgs),
    /// Proximalized Preference Optimization on pairwise, binary or scalar feedback.
    Pro(ProArgs),
    /// KLDO: Donsker-Varadhan KL between aligned and unaligned responses.
    Kldo(KldoArgs),
    /// RDRO: relative density ratio optimisation on binary feedback.
    Rdro(RdroArgs),
    /// An Aligner corrector: identity warm-up, then corrections.
    Aligner(AlignerArgs),
    /// Reward accuracy, chosen/rejected likelihoods and KLDO's separation metric.
    Eval(EvalArgs),
    /// Simulate how RLHF/DPO and NLHF serve a population of users in a tabular world:
    /// distortion against the best policy at the same KL budget, sweeps, and a search for
    /// worst cases.
    Distortion(thresh_distortion::cli::DistortionArgs),
    /// Online Nash learning from human feedback (Nash-MD, or online IPO) against a reward model.
    NashMd(NashMdArgs),
    /// Preference data from a running daemon: ranked Best-of-N / Speculative Rejection
    /// candidates or Aligner corrections, written in the trainer's schema.
    Collect(crate::collect::CollectArgs),
}

/// Settings every training command shares.
#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Model to start from: a Hugging Face directory or a GGUF file (dequantised to f32).
    #[arg(long, env = "THRESH_TRAIN_MODEL")]
    pub model: PathBuf,
    /// Training data (JSONL).
    #[arg(long, env = "THRESH_TRAIN_DATA")]
    pub data: PathBuf,
    /// Data layout: auto, thresh, hh-rlhf, ultra-feedback, pku-safe-rlhf, aligner, kldo,
    /// trl-unpaired.
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Output directory: `model/` (the trained model in Hugging Face layout), `checkpoint/`,
    /// `metrics.jsonl`, `reference-logps.json`.
    #[arg(long, env = "THRESH_TRAIN_OUT")]
    pub out: PathBuf,
    /// Optimiser steps (overrides --epochs).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Passes over the data when --max-steps is not given.
    #[arg(long, default_value_t = 1.0)]
    pub epochs: f64,
    /// LoRA rank on the attention and MLP projections; 0 trains every weight.
    #[arg(long, default_value_t = 0, env = "THRESH_TRAIN_LORA_RANK")]
    pub lora_rank: usize,
    /// LoRA scale numerator (the update is `alpha / rank * B A`).
    #[arg(long, default_value_t = 16.0)]
    pub lora_alpha: f64,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-5)]
    pub lr: f64,
    /// Fraction of the steps spent warming up linearly.
    #[arg(long, default_value_t = 0.1)]
    pub warmup: f64,
    /// Schedule after warm-up.
    #[arg(long, value_enum, default_value = "cosine")]
    pub schedule: ScheduleKind,
    /// Optimiser.
    #[arg(long, value_enum, default_value = "adamw")]
    pub optimizer: OptimKind,
    /// Decoupled weight decay.
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Examples per micro-batch (pairs for pairwise losses).
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Micro-batches per optimiser step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Global gradient-norm clip; 0 disables it.
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Longest sequence in tokens (prompts are cut from the front).
    #[arg(long, default_value_t = 512)]
    pub max_len: usize,
    /// Seed of the data order and of new parameters (LoRA A, score head).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Checkpoint every N steps (and at the end); 0 only at the end.
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: u64,
    /// Continue from `<out>/checkpoint`.
    #[arg(long)]
    pub resume: bool,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu", env = "THRESH_DEVICE")]
    pub device: String,
    /// Stop after this many steps as if interrupted (checkpoint kept, no model saved).
    #[arg(long, hide = true)]
    pub stop_after: Option<u64>,
}

/// `thresh-train sft`.
#[derive(Args, Debug, Clone)]
pub struct SftArgs {
    /// Shared settings.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `thresh-train reward`.
#[derive(Args, Debug, Clone)]
pub struct RewardArgs {
    /// Shared settings.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Pairwise and unpaired losses of `thresh-train dpo`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DpoLoss {
    /// `-log sigmoid(beta h)` with label smoothing.
    Dpo,
    /// `(h - 1/(2 beta))^2`.
    Ipo,
    /// KTO on binary feedback.
    Kto,
}

/// `thresh-train dpo`.
#[derive(Args, Debug, Clone)]
pub struct DpoArgs {
    /// Shared settings.
    #[command(flatten)]
    pub common: CommonArgs,
    /// The loss.
    #[arg(long, value_enum, default_value = "dpo")]
    pub loss: DpoLoss,
    /// beta.
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    /// DPO label smoothing epsilon.
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// KTO weight of desirable examples.
    #[arg(long, default_value_t = 1.0)]
    pub lambda_d: f64,
    /// KTO weight of undesirable examples.
    #[arg(long, default_value_t = 1.0)]
    pub lambda_u: f64,
}

/// Feedback kinds PRO trains on.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    /// Pairs if the data has them, else scalar scores, else binary labels.
    Auto,
    /// Chosen/rejected pairs.
    Pairwise,
    /// Desired/undesired labels.
    Binary,
    /// Several scored responses per prompt.
    Scalar,
}

/// `thresh-train pro`.
#[derive(Args, Debug, Clone)]
pub struct ProArgs {
    /// Shared settings.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Which feedback to use.
    #[arg(long, value_enum, default_value = "auto")]
    pub feedback: Feedback,
    /// beta (0.003 was best for binary feedback in the paper; 0.1 is a safe start).
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    /// Weight of the proximal term.
    #[arg(long, default_value_t = 2.5)]
    pub alpha: f64,
}

/// KLDO estimators on the command line.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Estimator {
    /// Moving-average bias-corrected gradient.
    Ma,
    /// Plain log-mean-exp.
    Biased,
    /// `mean exp(T - 1)`.
    FDiv,
}

/// `thresh-train kldo`.
#[derive(Args, Debug, Clone)]
pub struct KldoArgs {
    /// Shared settings.
    #[command(flatten)]
    pub common: CommonArgs,
    /// beta (T = beta lr).
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    /// Estimator of the unaligned term.
    #[arg(long, value_enum, default_value = "ma")]
    pub estimator: Estimator,
    /// Rescale the unaligned term by min(A, U) / U.
    #[arg(long)]
    pub normalize: bool,
}

/// RDRO reductions on the command line.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    /// One mean over the batch (the authors' code).
    Pooled,
    /// Mean per class.
    PerClass,
}

/// `thresh-train rdro`.
#[derive(Args, Debug, Clone)]
pub struct RdroArgs {
    /// Shared settings.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Fraction of preferred data; by default measured on the data.
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Batch reduction.
    #[arg(long, value_enum, default_value = "pooled")]
    pub reduction: Reduction,
}

/// `thresh-train aligner`.
#[derive(Args, Debug, Clone)]
pub struct AlignerArgs {
    /// Shared settings.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Fraction of the examples first trained as identity corrections (target = the answer).
    #[arg(long, default_value_t = 0.2)]
    pub identity_fraction: f64,
    /// Aligner template: current, v1, or a custom string with {question} and {answer}.
    #[arg(long, default_value = "current")]
    pub template: String,
}

/// `thresh-train eval`.
#[derive(Args, Debug, Clone)]
pub struct EvalArgs {
    /// Model to evaluate (a policy, or a reward model for --data pairs' accuracy).
    #[arg(long, env = "THRESH_TRAIN_MODEL")]
    pub model: PathBuf,
    /// Held-out data: pairs give reward accuracy (reward models) or chosen/rejected
    /// log-likelihoods (policies).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Data layout (as for training).
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Reference policy for the likelihood tracking's log-ratios and reward margin.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Benign prompts (one per line, or JSONL with a `prompt` field) for the separation metric.
    #[arg(long, requires = "harmful")]
    pub benign: Option<PathBuf>,
    /// Harmful prompts, as --benign.
    #[arg(long, requires = "benign")]
    pub harmful: Option<PathBuf>,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Longest sequence in tokens.
    #[arg(long, default_value_t = 512)]
    pub max_len: usize,
    /// Device: cpu or cuda:N.
    #[arg(long, default_value = "cpu", env = "THRESH_DEVICE")]
    pub device: String,
}

/// Losses of `thresh-train nash-md`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum NashLoss {
    /// Nash-MD: REINFORCE on the policy sample against the mixture's, with a KL term.
    NashMd,
    /// Online IPO on the (policy, mixture) pair ordered by the preference model.
    OnlineIpo,
}

/// `thresh-train nash-md`.
#[derive(Args, Debug, Clone)]
pub struct NashMdArgs {
    /// Shared settings (`--data` supplies the prompts; its responses are not used).
    #[command(flatten)]
    pub common: CommonArgs,
    /// Reward model judging the pairs: a directory `thresh_reward::load` reads, or the URL
    /// of a remote reward server (`http://host/v1/rewards`, `/get_reward`, `/classify`).
    #[arg(long, env = "THRESH_TRAIN_REWARD")]
    pub reward: std::path::PathBuf,
    /// Head of a sentence-encoder reward: `relevance` or a linear head's safetensors file.
    #[arg(long)]
    pub reward_head: Option<String>,
    /// The loss.
    #[arg(long, value_enum, default_value = "nash-md")]
    pub loss: NashLoss,
    /// KL regularisation strength of Nash-MD.
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    /// Weight c of the reference in the mixture `log_softmax(c ref + (1 - c) policy)`: a
    /// number in [0, 1], or `A..B` for a linear schedule from A at the first step to B at
    /// the last.
    #[arg(long, default_value = "0.5")]
    pub mixture: String,
    /// Longest sampled response, in tokens.
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Sampling temperature of both samples.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Online IPO's regularisation (target margin `1/(2 tau)`).
    #[arg(long, default_value_t = 0.1)]
    pub tau: f64,
}
