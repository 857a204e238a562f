//! Sampling as tensor ops on the logits' device: penalties, temperature, top-k, top-p, min-p,
//! greedy and an inverse-CDF draw, so that only the sampled ids and their log-probabilities
//! come back to the host (two vectors of `rows` values a step, instead of `rows x vocab`
//! logits).
//!
//! The draw is the host [`Sampler`](crate::Sampler)'s, computed with tensors: the same
//! uniform per row and step (drawn on the host from the row's own seeded generator, one small
//! copy), the same order of candidates (token order without filters, probability order with
//! them) and the same "first candidate whose running sum reaches `u` times the mass" rule. Only
//! the order of float summation differs (a blocked prefix sum here, a running one on the
//! host), so a draw that lands within rounding of a boundary may pick the neighbour; the tests
//! count how often. Logits must be finite (penalties that overflow them, which the host
//! sampler survives, are not handled here).
//!
//! Per-row state (token counts for the penalties) stays on the device and follows the rows
//! through [`DeviceSampler::retain_rows`].

use candle_core::{D, DType, Device, Tensor};

use crate::error::{DecodeError, Result};
use crate::sampling::SamplingParams;

/// Width of the blocks of the prefix sum: a `BLOCK x BLOCK` triangular matmul inside each
/// block, then one over the block totals (a plain triangular matmul over a 50k vocabulary
/// would be 50k x 50k).
const BLOCK: usize = 256;

/// A batch's sampler on the device.
pub struct DeviceSampler {
    params: SamplingParams,
    vocab: usize,
    device: Device,
    /// Prompt plus output occurrences per row and token, for the repetition penalty.
    history: Option<Tensor>,
    /// Output occurrences per row and token, for the frequency and presence penalties.
    counts: Option<Tensor>,
    /// 1 at the EOS ids, `(1, vocab)`.
    eos: Tensor,
    /// Inclusive upper-triangular ones, `(BLOCK, BLOCK)`.
    triu_block: Tensor,
}

impl DeviceSampler {
    /// A sampler for `rows` rows continuing `prompt`, with `params` (which must hold no
    /// grammar: masks are computed on the host), on `device`.
    pub fn new(
        params: &SamplingParams,
        prompt: &[u32],
        rows: usize,
        vocab: usize,
        eos: &[u32],
        device: &Device,
    ) -> Result<Self> {
        params.validate()?;
        if params.constraint.is_some() {
            return Err(DecodeError::InvalidParameter(
                "a grammar's masks are computed on the host: sample constrained rows there".into(),
            ));
        }
        let row_counts = |ids: &[u32]| -> Result<Tensor> {
            let mut c = vec![0f32; vocab];
            for &t in ids {
                if let Some(x) = c.get_mut(t as usize) {
                    *x += 1.0;
                }
            }
            Ok(Tensor::from_vec(c, (1, vocab), device)?.repeat((rows, 1))?)
        };
        let history = (params.repetition_penalty != 1.0)
            .then(|| row_counts(prompt))
            .transpose()?;
        let counts = (params.frequency_penalty != 0.0 || params.presence_penalty != 0.0)
            .then(|| row_counts(&[]))
            .transpose()?;
        let mut onehot = vec![0f32; vocab];
        for &t in eos {
            if let Some(x) = onehot.get_mut(t as usize) {
                *x = 1.0;
            }
        }
        Ok(Self {
            params: params.clone(),
            vocab,
            device: device.clone(),
            history,
            counts,
            eos: Tensor::from_vec(onehot, (1, vocab), device)?,
            triu_block: Tensor::triu2(BLOCK, DType::F32, device)?,
        })
    }

    /// Whether a draw needs a uniform (every sampled, non-greedy step).
    pub fn needs_uniforms(&self) -> bool {
        self.params.temperature != 0.0
    }

    /// Samples one token per row of `logits` (`(rows, vocab)`, f32) with `uniforms[r]` in
    /// `[0, 1)` (ignored when greedy); `ban_eos[r]` keeps row `r` from sampling EOS. Returns each
    /// row's token and its log-probability under the unmodified logits.
    pub fn sample(
        &mut self,
        logits: &Tensor,
        uniforms: &[f32],
        ban_eos: &[bool],
    ) -> Result<Vec<(u32, f32)>> {
        let (rows, vocab) = logits.dims2()?;
        if vocab != self.vocab || ban_eos.len() != rows {
            return Err(DecodeError::InvalidParameter(format!(
                "device sampler for {} tokens got logits of {rows} x {vocab} and {} EOS flags",
                self.vocab,
                ban_eos.len()
            )));
        }
        let raw = logits.to_dtype(DType::F32)?;
        let p = &self.params;
        let mut l = raw.clone();
        if let Some(h) = &self.history {
            let r = p.repetition_penalty as f64;
            let penalised = l.gt(0.0)?.where_cond(&(&l / r)?, &(&l * r)?)?;
            l = h.gt(0.0)?.where_cond(&penalised, &l)?;
        }
        if let Some(c) = &self.counts {
            let seen = c.gt(0.0)?.to_dtype(DType::F32)?;
            l = ((l - (c * p.frequency_penalty as f64)?)? - (seen * p.presence_penalty as f64)?)?;
        }
        if ban_eos.iter().any(|&b| b) {
            let flags: Vec<f32> = ban_eos.iter().map(|&b| f32::from(u8::from(b))).collect();
            let flags = Tensor::from_vec(flags, (rows, 1), &self.device)?;
            let banned = flags.broadcast_mul(&self.eos)?.gt(0.0)?;
            let minus_inf = Tensor::full(f32::NEG_INFINITY, (rows, vocab), &self.device)?;
            l = banned.where_cond(&minus_inf, &l)?;
        }
        let tokens = if p.temperature == 0.0 {
            l.argmax_keepdim(D::Minus1)?
        } else {
            if uniforms.len() != rows {
                return Err(DecodeError::InvalidParameter(format!(
                    "{rows} rows need {rows} uniforms, got {}",
                    uniforms.len()
                )));
            }
            let u = Tensor::from_slice(uniforms, (rows, 1), &self.device)?;
            let max = l.max_keepdim(D::Minus1)?;
            let w = (l.broadcast_sub(&max)? * (1.0 / p.temperature as f64))?.exp()?;
            let restricted = p.top_k > 0 || p.top_p < 1.0 || p.min_p > 0.0;
            if restricted {
                self.draw_sorted(&w, &u)?
            } else {
                let cs = self.prefix_sum(&w)?;
                let total = cs.narrow(1, vocab - 1, 1)?;
                first_reaching(&cs, &total.broadcast_mul(&u)?, vocab)?
            }
        };
        // Log-probabilities under the model, as the host reports them.
        let lse = raw.log_sum_exp(D::Minus1)?.unsqueeze(1)?;
        let lp = raw.gather(&tokens, 1)?.broadcast_sub(&lse)?;
        let tokens = tokens.flatten_all()?.to_vec1::<u32>()?;
        let lp = lp.flatten_all()?.to_vec1::<f32>()?;
        Ok(tokens.into_iter().zip(lp).collect())
    }

    /// Top-k, top-p and min-p over the candidates in order of probability, then the draw
    /// among those kept.
    fn draw_sorted(&self, w: &Tensor, u: &Tensor) -> Result<Tensor> {
        let (rows, vocab) = w.dims2()?;
        let p = &self.params;
        let order = w.arg_sort_last_dim(false)?;
        let sorted = w.gather(&order, 1)?;
        let cs = self.prefix_sum(&sorted)?;
        let total = cs.narrow(1, vocab - 1, 1)?;
        let positive = sorted.gt(0.0)?.to_dtype(DType::F32)?.sum_keepdim(1)?;
        let mut keep = if p.top_k > 0 {
            positive.clamp(0.0, p.top_k as f64)?
        } else {
            positive
        };
        if p.top_p < 1.0 {
            let nucleus = cs
                .broadcast_lt(&(&total * p.top_p as f64)?)?
                .to_dtype(DType::F32)?
                .sum_keepdim(1)?;
            keep = keep.minimum(&(nucleus + 1.0)?)?;
        }
        if p.min_p > 0.0 {
            let floor = (sorted.narrow(1, 0, 1)? * p.min_p as f64)?;
            let above = sorted
                .broadcast_ge(&floor)?
                .to_dtype(DType::F32)?
                .sum_keepdim(1)?;
            keep = keep.minimum(&above.clamp(1.0, f64::INFINITY)?)?;
        }
        let keep = keep.clamp(1.0, vocab as f64)?;
        let last = (keep - 1.0)?.to_dtype(DType::U32)?;
        let mass = cs.gather(&last, 1)?;
        let target = mass.broadcast_mul(u)?;
        // The first kept candidate whose running sum reaches the target.
        let below = cs
            .broadcast_lt(&target)?
            .to_dtype(DType::F32)?
            .sum_keepdim(1)?;
        let pos = below
            .minimum(&last.to_dtype(DType::F32)?)?
            .to_dtype(DType::U32)?;
        let _ = rows;
        Ok(order.gather(&pos, 1)?)
    }

    /// Inclusive prefix sums along each row, blockwise.
    fn prefix_sum(&self, x: &Tensor) -> Result<Tensor> {
        let (rows, vocab) = x.dims2()?;
        let blocks = vocab.div_ceil(BLOCK);
        let padded = x.pad_with_zeros(1, 0, blocks * BLOCK - vocab)?;
        let within = padded
            .reshape((rows * blocks, BLOCK))?
            .matmul(&self.triu_block)?
            .reshape((rows, blocks, BLOCK))?;
        let totals = within.narrow(2, BLOCK - 1, 1)?.squeeze(2)?;
        let triu = Tensor::triu2(blocks, DType::F32, &self.device)?;
        let before = (totals.matmul(&triu)? - &totals)?;
        let out = within.broadcast_add(&before.unsqueeze(2)?)?;
        Ok(out
            .reshape((rows, blocks * BLOCK))?
            .narrow(1, 0, vocab)?
            .contiguous()?)
    }

    /// Records each row's sampled token (rows in the order of the last [`Self::sample`]).
    pub fn observe(&mut self, tokens: &[u32]) -> Result<()> {
        if self.history.is_none() && self.counts.is_none() {
            return Ok(());
        }
        let ids = Tensor::from_slice(tokens, (tokens.len(), 1), &self.device)?;
        let ones = Tensor::ones((tokens.len(), 1), DType::F32, &self.device)?;
        for t in [&mut self.history, &mut self.counts].into_iter().flatten() {
            *t = t.scatter_add(&ids, &ones, 1)?;
        }
        Ok(())
    }

    /// Keeps the rows at `slots` (in that order), as the batch's cache does.
    pub fn retain_rows(&mut self, slots: &[usize]) -> Result<()> {
        if self.history.is_none() && self.counts.is_none() {
            return Ok(());
        }
        let idx: Vec<u32> = slots.iter().map(|&s| s as u32).collect();
        let idx = Tensor::from_vec(idx, slots.len(), &self.device)?;
        for t in [&mut self.history, &mut self.counts].into_iter().flatten() {
            *t = t.index_select(&idx, 0)?;
        }
        Ok(())
    }
}

/// Per row, the index of the first entry of `cs` (non-decreasing) that reaches `target`,
/// at most `len - 1`.
fn first_reaching(cs: &Tensor, target: &Tensor, len: usize) -> Result<Tensor> {
    let below = cs
        .broadcast_lt(target)?
        .to_dtype(DType::F32)?
        .sum_keepdim(1)?;
    Ok(below.clamp(0.0, (len - 1) as f64)?.to_dtype(DType::U32)?)
}
