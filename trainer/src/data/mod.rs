//! Training data: one JSONL schema for every kind of feedback, adapters for the public
//! formats, and the views the commands train on.
//!
//! The schema (`Format::Thresh`, documented with examples in `data/README.md`) holds one
//! prompt (text or chat messages) per line with any number of responses, each optionally
//! labelled (desired / undesired), scored and typed (`kind`, e.g. `compliance` or
//! `refusal`), preference `pairs` of response indices, and an optional correction (an
//! answer and its corrected version, for Aligner training).
//!
//! Loading never drops anything silently: every non-blank line becomes one [`Example`] or
//! the load fails with an error naming the file and the one-based line.

mod batches;
mod detect;
mod public;
mod thresh;
mod views;

use std::path::Path;

use serde::{Deserialize, Serialize};
use thresh_models::ChatMessage;

use crate::error::{Result, TrainError};

pub use batches::balanced_batches;
pub use detect::detect;
pub use views::{
    BinaryRecord, CorrectionRecord, PairRecord, ScalarRecord, binary, corrections, pairs, scalar,
};

/// A prompt: plain text, or chat messages for the model's chat template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Prompt {
    /// A single user turn.
    Text(String),
    /// A conversation; the response continues it as the assistant.
    Messages(Vec<ChatMessage>),
}

impl Prompt {
    /// The prompt as chat messages (a text prompt is one `user` message).
    pub fn messages(&self) -> Vec<ChatMessage> {
        match self {
            Prompt::Text(t) => vec![ChatMessage::new("user", t.clone())],
            Prompt::Messages(m) => m.clone(),
        }
    }

    /// The text of the last user turn (the whole text for a text prompt; empty when a
    /// conversation has no user turn).
    pub fn last_user_text(&self) -> &str {
        match self {
            Prompt::Text(t) => t,
            Prompt::Messages(m) => m
                .iter()
                .rev()
                .find(|m| m.role == "user")
                .map_or("", |m| m.content.as_str()),
        }
    }
}

/// One response to a prompt and what is known about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The response text.
    pub text: String,
    /// Binary feedback: `true` desired (aligned), `false` undesired.
    pub label: Option<bool>,
    /// Scalar feedback, any finite number (higher is better).
    pub score: Option<f64>,
    /// Free-form type, e.g. `compliance` or `refusal` for KLDO's rows.
    pub kind: Option<String>,
}

impl Response {
    /// A response with just its text.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            label: None,
            score: None,
            kind: None,
        }
    }
}

/// An answer and its corrected version (Aligner training).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correction {
    /// The original (upstream model's) answer.
    pub answer: String,
    /// The corrected answer.
    pub corrected: String,
}

/// One line of data: a prompt with its responses and feedback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// The prompt.
    pub prompt: Prompt,
    /// Responses to it.
    pub responses: Vec<Response>,
    /// Preferences as `(chosen, rejected)` indices into `responses`.
    pub pairs: Vec<(usize, usize)>,
    /// An answer and its correction.
    pub correction: Option<Correction>,
}

impl Example {
    /// This example as one line of the thresh schema (`Format::Thresh` reads it back to an
    /// equal example), e.g. to convert a public data set once and train from the result.
    pub fn to_thresh_json(&self) -> serde_json::Value {
        thresh::to_json(self)
    }
}

/// The layout of a data file. On the command line and in configs: `auto`, `thresh`,
/// `hh-rlhf`, `ultra-feedback`, `pku-safe-rlhf`, `aligner`, `kldo`, `trl-unpaired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Detect from the first non-blank line (see [`detect`]).
    #[default]
    Auto,
    /// thresh's own schema (`data/README.md`).
    Thresh,
    /// Anthropic HH-RLHF: `chosen` and `rejected` transcripts.
    HhRlhf,
    /// HuggingFaceH4/ultrafeedback_binarized: `chosen` and `rejected` message lists with
    /// `score_chosen` and `score_rejected`.
    UltraFeedback,
    /// PKU-Alignment/PKU-SafeRLHF: `prompt`, `response_0`, `response_1`, safety labels and
    /// `safer_response_id`.
    PkuSafeRlhf,
    /// Aligner triples: `question`, `answer`, `correction`.
    Aligner,
    /// KLDO's compliance / refusal rows: `safety`, `prompt`, `acc_responses`,
    /// `rej_responses`.
    Kldo,
    /// TRL's unpaired preference rows: `prompt`, `completion`, `label`.
    TrlUnpaired,
}

impl Format {
    /// The format's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Thresh => "thresh",
            Format::HhRlhf => "HH-RLHF",
            Format::UltraFeedback => "UltraFeedback",
            Format::PkuSafeRlhf => "PKU-SafeRLHF",
            Format::Aligner => "Aligner",
            Format::Kldo => "KLDO",
            Format::TrlUnpaired => "TRL unpaired",
        }
    }
}

/// Parses one JSON object (a line of a file in `format`, never `Auto`) into an example.
/// The error is a message without the file and line, which [`load`] adds.
pub fn parse_value(
    value: serde_json::Value,
    format: Format,
) -> std::result::Result<Example, String> {
    match format {
        Format::Auto => Err("the format must be resolved before parsing".into()),
        Format::Thresh => thresh::parse(value),
        Format::HhRlhf => public::hh_rlhf(value),
        Format::UltraFeedback => public::ultrafeedback(value),
        Format::PkuSafeRlhf => public::pku_safe_rlhf(value),
        Format::Aligner => public::aligner(value),
        Format::Kldo => public::kldo(value),
        Format::TrlUnpaired => public::trl_unpaired(value),
    }
}

/// Loads a JSONL file (UTF-8, a leading byte-order mark allowed): one example per
/// non-blank line. `Format::Auto` detects the layout
/// from the first non-blank line; every other line must then have the same layout. A line
/// that is not valid JSON or not valid in the format is an error naming the file and the
/// one-based line; so is a file with no examples (reported as line 0).
pub fn load(path: &Path, format: Format) -> Result<Vec<Example>> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_jsonl(&text, path, format)
}

/// Parses the text of a JSONL file as [`load`] does (`path` names the file in errors): the
/// byte-level entry point of the data readers.
pub fn parse_jsonl(text: &str, path: &Path, format: Format) -> Result<Vec<Example>> {
    let err = |line: usize, message: String| TrainError::Data {
        path: path.to_path_buf(),
        line,
        message,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut format = format;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| err(line_no, format!("invalid JSON: {e}")))?;
        if format == Format::Auto {
            format = detect(&value).map_err(|m| err(line_no, m))?;
        }
        let example = parse_value(value, format)
            .map_err(|m| err(line_no, format!("not a valid {} row: {m}", format.name())))?;
        out.push(example);
    }
    if out.is_empty() {
        return Err(err(0, "the file holds no examples".into()));
    }
    Ok(out)
}

/// Deserialises `value` into `T`, naming the offending field path in the error.
pub(crate) fn from_value<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        }
    })
}
