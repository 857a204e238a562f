//! `thresh-train collect`'s flags.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Where the preference data comes from.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// One aligned request per prompt with `return_candidates`; pairs from the ranked,
    /// scored candidates (West-of-N style).
    Candidates,
    /// One plain answer per prompt, corrected by the daemon's Aligner (`alignment.correct`);
    /// the correction is preferred over the answer.
    Corrections,
}

/// The aligned strategy that samples the candidates.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectStrategy {
    /// Best-of-N: every candidate is finished and scored.
    BestOfN,
    /// Speculative Rejection: only the rows that survive to the end carry a final reward, so
    /// pairs come from the survivors (pruned rows hold partial answers and are left out).
    SpeculativeRejection,
}

impl CollectStrategy {
    /// The name the daemon's `alignment.strategy` takes.
    pub fn wire_name(self) -> &'static str {
        match self {
            Self::BestOfN => "best_of_n",
            Self::SpeculativeRejection => "speculative_rejection",
        }
    }
}

/// Which pairs a prompt's ranked candidates give.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairMode {
    /// The best against the worst (one pair per prompt).
    BestWorst,
    /// Every pair whose reward margin exceeds `--min-margin`.
    All,
}

/// `thresh-train collect`: preference data from a running daemon.
#[derive(Args, Debug, Clone)]
pub struct CollectArgs {
    /// The daemon's base URL (`http://127.0.0.1:8080`; a trailing `/v1` is accepted).
    #[arg(long, env = "THRESH_COLLECT_URL")]
    pub url: String,
    /// Bearer token for a daemon started with `--api-key`.
    #[arg(long, env = "THRESH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Prompts: JSONL, one `{"prompt": "..."}` or `{"messages": [...]}` per line (other
    /// fields are ignored, so the bench's and the trainer's files work as they are).
    #[arg(long)]
    pub prompts: PathBuf,
    /// Output JSONL in the trainer's schema. An existing file is resumed: prompts already in
    /// it are skipped, and a torn last line (an interrupted write) is cut off.
    #[arg(long)]
    pub out: PathBuf,
    /// Where the pairs come from.
    #[arg(long, value_enum, default_value = "candidates")]
    pub source: Source,
    /// Strategy sampling the candidates (`--source candidates`).
    #[arg(long, value_enum, default_value = "best-of-n")]
    pub strategy: CollectStrategy,
    /// Candidates per prompt (`--source candidates`).
    #[arg(long, default_value_t = 8)]
    pub candidates: usize,
    /// Speculative Rejection's rejected fraction per decision (`--strategy
    /// speculative-rejection`): a number in [0, 1) or `auto`.
    #[arg(long)]
    pub alpha: Option<String>,
    /// Pairs per prompt from the ranked candidates.
    #[arg(long, value_enum, default_value = "best-worst")]
    pub pairs: PairMode,
    /// Smallest reward margin a pair needs (chosen minus rejected must exceed it); a prompt
    /// with no such pair is skipped and counted.
    #[arg(long, default_value_t = 0.0)]
    pub min_margin: f64,
    /// Keep a correction only where the reward model scores it above the answer
    /// (`--source corrections`).
    #[arg(long)]
    pub guarded: bool,
    /// New tokens per answer.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Base seed: prompt `i` (its line's index among the prompts) is sampled with `seed + i`,
    /// so a run and its resumption draw the same answers whatever the concurrency.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Model name to send (default: whatever the daemon serves).
    #[arg(long)]
    pub model: Option<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
    /// Stop after this many prompts (counted from the file's start).
    #[arg(long)]
    pub limit: Option<usize>,
    /// No progress bar on stderr.
    #[arg(long)]
    pub no_progress: bool,
}
