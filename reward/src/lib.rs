//! thresh's reward models.
//!
//! One trait, [`RewardModel`], scores batches of (prompt, possibly partial response) pairs.
//! Text is the interface: each model renders the pair with its own tokenizer and chat
//! template, since policy and reward tokenizers differ. Families:
//! - [`DecoderClassifier`]: `*ForSequenceClassification` decoders (Llama, Mistral, Qwen2,
//!   Qwen3) with a `score` head, read at each row's last real token;
//! - [`ArmoReward`]: ArmoRM's multi-objective head with gating (`LlamaForRewardModelWithGating`);
//! - [`BertClassifier`]: `BertForSequenceClassification` encoders;
//! - [`DebertaClassifier`]: `DebertaV2ForSequenceClassification` encoders (DeBERTa-v2/v3);
//! - [`RelevanceReward`] and [`LinearReward`]: sentence embeddings (all-MiniLM-L6-v2);
//! - [`RemoteReward`]: a reward model served elsewhere, over HTTP (thresh's `/v1/rewards`,
//!   OpenRLHF's `/get_reward`, vLLM's `/classify`).
//!
//! Batches are formed under a token budget with right padding, and a pair's score never
//! depends on which other pairs share its batch.

pub mod armorm;
pub mod batching;
mod bert_files;
pub mod classifier;
pub mod deberta_classifier;
pub mod embedding;
pub mod encoder_classifier;
mod encoder_pairs;
pub mod error;
pub mod input;
pub mod remote;

use std::path::Path;

pub use armorm::ArmoReward;
pub use classifier::DecoderClassifier;
pub use deberta_classifier::DebertaClassifier;
pub use embedding::{LinearReward, RelevanceReward, SentenceEmbedder};
pub use encoder_classifier::BertClassifier;
pub use error::{Result, RewardError};
pub use input::{Prompt, RewardInput, Scored};
pub use remote::{ApiKey, RemoteFormat, RemoteReward};
use thresh_models::LoadOptions;
use thresh_models::config::read_json_value;

/// Scores (prompt, response) pairs.
pub trait RewardModel: Send + Sync {
    /// A name for logs and responses.
    fn name(&self) -> &str;

    /// One score per pair, in input order. Errors on an empty batch or an empty prompt.
    fn score(&self, inputs: &[RewardInput]) -> Result<Vec<Scored>>;
}

/// Families [`load`] recognises, for error messages.
pub const SUPPORTED: &str = "LlamaForSequenceClassification, MistralForSequenceClassification, Qwen2ForSequenceClassification, Qwen3ForSequenceClassification, LlamaForRewardModelWithGating (ArmoRM), BertForSequenceClassification, DebertaV2ForSequenceClassification, and BERT sentence encoders (BertModel) with the relevance or linear head";

/// Loads a reward model from a Hugging Face directory, detecting its family from
/// `config.json`'s `architectures`. `head` picks the head of sentence encoders: `None` or
/// `relevance` for cosine relevance, or a path to a linear head's safetensors file.
///
/// A "directory" starting with `http://` or `https://` is a remote reward server instead,
/// whose wire format the URL's path names (`/v1/rewards`, `/get_reward`, `/classify`; see
/// [`remote`]); use [`RemoteReward::from_spec`] to name the format explicitly.
pub fn load(dir: &Path, head: Option<&str>, opts: &LoadOptions) -> Result<Box<dyn RewardModel>> {
    if let Some(url) = remote_url(dir) {
        return Ok(Box::new(RemoteReward::from_spec(url, None)?));
    }
    let cfg_path = dir.join("config.json");
    let cfg = read_json_value(&cfg_path)?;
    let arch = cfg
        .get("architectures")
        .and_then(|a| a.as_array())
        .and_then(|a| a.first())
        .and_then(|a| a.as_str())
        .unwrap_or_default()
        .to_string();
    let unsupported = || RewardError::UnsupportedArchitecture {
        arch: arch.clone(),
        path: cfg_path.clone(),
        supported: SUPPORTED,
    };
    match arch.as_str() {
        "LlamaForSequenceClassification"
        | "MistralForSequenceClassification"
        | "Qwen2ForSequenceClassification"
        | "Qwen3ForSequenceClassification" => Ok(Box::new(DecoderClassifier::load(dir, opts)?)),
        "LlamaForRewardModelWithGating" => Ok(Box::new(ArmoReward::load(dir, opts)?)),
        "BertForSequenceClassification" => Ok(Box::new(BertClassifier::load(dir, &opts.device)?)),
        "DebertaV2ForSequenceClassification" => {
            Ok(Box::new(DebertaClassifier::load(dir, &opts.device)?))
        }
        "BertModel" => match head {
            None | Some("relevance") => Ok(Box::new(RelevanceReward::load(dir, &opts.device)?)),
            Some(path) => Ok(Box::new(LinearReward::load(
                dir,
                Path::new(path),
                &opts.device,
            )?)),
        },
        _ => Err(unsupported()),
    }
}

/// The URL in a reward "path" that names a remote server (`http://...` or `https://...`).
pub fn remote_url(path: &Path) -> Option<&str> {
    path.to_str()
        .filter(|s| s.starts_with("http://") || s.starts_with("https://"))
}
