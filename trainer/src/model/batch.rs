//! Right-padded token batches with their prompt/response split.

use candle_core::{Device, Tensor};

use crate::error::{Result, TrainError};

/// A right-padded batch: `ids` `(B, T)` u32, each row's real length and the length of its
/// prompt (tokens before the response; 0 for plain language modelling on every token).
#[derive(Debug, Clone)]
pub struct Batch {
    /// Token ids, padded with 0 after each row's real tokens.
    pub ids: Tensor,
    /// Real tokens per row.
    pub lengths: Vec<usize>,
    /// Prompt tokens per row; the response is `prompt_lengths[b]..lengths[b]`.
    pub prompt_lengths: Vec<usize>,
    host: Vec<Vec<u32>>,
}

impl Batch {
    /// Pads `(tokens, prompt_length)` rows to the longest.
    pub fn new(rows: &[(Vec<u32>, usize)], device: &Device) -> Result<Self> {
        if rows.is_empty() {
            return Err(TrainError::Config("empty batch".into()));
        }
        let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        if width == 0 {
            return Err(TrainError::Config("batch of empty sequences".into()));
        }
        for (ids, prompt) in rows {
            if *prompt > ids.len() {
                return Err(TrainError::Config(format!(
                    "prompt of {prompt} tokens is longer than its sequence of {}",
                    ids.len()
                )));
            }
        }
        let mut flat = Vec::with_capacity(rows.len() * width);
        for (ids, _) in rows {
            flat.extend_from_slice(ids);
            flat.extend(std::iter::repeat_n(0u32, width - ids.len()));
        }
        Ok(Self {
            ids: Tensor::from_vec(flat, (rows.len(), width), device)?,
            lengths: rows.iter().map(|r| r.0.len()).collect(),
            prompt_lengths: rows.iter().map(|r| r.1).collect(),
            host: rows.iter().map(|r| r.0.clone()).collect(),
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// Whether the batch has no rows (never true for a constructed batch).
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// Padded width `T`.
    pub fn width(&self) -> usize {
        self.host.iter().map(Vec::len).max().unwrap_or(0)
    }

    /// Number of response tokens (the tokens a loss is computed on).
    pub fn response_tokens(&self) -> usize {
        self.lengths
            .iter()
            .zip(&self.prompt_lengths)
            .map(|(l, p)| l - (*p).max(1))
            .sum()
    }

    /// Next-token targets aligned with the logits, `(B, T)` u32 (`targets[t] = ids[t + 1]`),
    /// and the response mask `(B, T)` f32: 1 where the target is a response token.
    pub fn targets(&self) -> Result<(Tensor, Tensor)> {
        let (b, t) = (self.len(), self.width());
        let mut targets = vec![0u32; b * t];
        let mut mask = vec![0f32; b * t];
        for (r, ids) in self.host.iter().enumerate() {
            for pos in 0..ids.len().saturating_sub(1) {
                targets[r * t + pos] = ids[pos + 1];
                if pos + 1 >= self.prompt_lengths[r] {
                    mask[r * t + pos] = 1.0;
                }
            }
        }
        let dev = self.ids.device();
        Ok((
            Tensor::from_vec(targets, (b, t), dev)?,
            Tensor::from_vec(mask, (b, t), dev)?,
        ))
    }
}
