//! Plain generation: `n` independent samples of one prompt.

use thresh_models::{Decoder, Tokenizer};

use crate::batch::{BatchStats, DecodeBatch, Row, StopConditions};
use crate::error::Result;
use crate::sampling::SamplingParams;

/// The samples of one prompt with the batch's statistics.
#[derive(Debug, Clone)]
pub struct Generation {
    /// One finished row per sample, in row order.
    pub rows: Vec<Row>,
    /// Counters and timings.
    pub stats: BatchStats,
}

/// Samples `n` continuations of `prompt` in one batch.
pub fn generate(
    decoder: &Decoder,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    n: usize,
    params: &SamplingParams,
    stop: &StopConditions,
) -> Result<Generation> {
    let mut batch = DecodeBatch::new(decoder, tokenizer, prompt, n, params, stop)?;
    batch.run_to_end()?;
    let (rows, stats) = batch.into_parts();
    Ok(Generation { rows, stats })
}
