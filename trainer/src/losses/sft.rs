//! Token cross-entropy (SFT) and the per-sequence response log-probabilities the preference
//! losses consume.

use std::collections::BTreeMap;

use candle_core::{D, DType, Tensor};

use super::{LossOutput, scalar_value};
use crate::error::{Result, TrainError};

/// Checks `logits (B,T,V)`, `targets (B,T) u32` and `mask (B,T) f32`; returns `(B, T, V)`.
fn check(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<(usize, usize, usize)> {
    let (b, t, v) = logits.dims3().map_err(|_| {
        TrainError::Input(format!(
            "logits must be (B, T, V), got shape {:?}",
            logits.dims()
        ))
    })?;
    if logits.dtype() != DType::F32 {
        return Err(TrainError::Input(format!(
            "logits must be f32, got {:?}",
            logits.dtype()
        )));
    }
    if targets.dims() != [b, t] || targets.dtype() != DType::U32 {
        return Err(TrainError::Input(format!(
            "targets must be u32 of shape [{b}, {t}], got {:?} of shape {:?}",
            targets.dtype(),
            targets.dims()
        )));
    }
    if mask.dims() != [b, t] || mask.dtype() != DType::F32 {
        return Err(TrainError::Input(format!(
            "mask must be f32 of shape [{b}, {t}], got {:?} of shape {:?}",
            mask.dtype(),
            mask.dims()
        )));
    }
    if b * t > 0 {
        let max = targets.max_all()?.to_scalar::<u32>()? as usize;
        if max >= v {
            return Err(TrainError::Input(format!(
                "target token id {max} is outside the vocabulary of {v} logits"
            )));
        }
    }
    Ok((b, t, v))
}

/// `log softmax(logits)[b, t, targets[b, t]]`, shape `(B, T)`, unmasked.
///
/// `logits[b, t]` is the prediction for `targets[b, t]`: the caller shifts (logits of
/// positions `0..T-1` against the tokens `1..T`). The log-sum-exp subtracts the detached
/// row maximum, so it is stable and its gradient is the softmax.
pub fn token_logps(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (b, t, _) = logits.dims3()?;
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let picked = shifted.gather(&targets.reshape((b, t, 1))?.contiguous()?, D::Minus1)?;
    Ok((picked - lse)?.reshape((b, t))?)
}

/// Summed log-probability of the masked tokens of each sequence, shape `(B,)`: the `logp`
/// every preference loss takes (mask 1 on response tokens, 0 on prompt and padding).
pub fn sequence_logps(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<Tensor> {
    check(logits, targets, mask)?;
    Ok((token_logps(logits, targets)? * mask)?.sum(1)?)
}

/// Token cross-entropy averaged over the masked (response) tokens of the whole batch.
///
/// Metrics: `tokens` (masked token count), `accuracy` (share of masked tokens whose argmax
/// is the target) and `perplexity` (`exp(loss)`).
pub fn sft(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<LossOutput> {
    check(logits, targets, mask)?;
    let n = scalar_value(&mask.sum_all()?)?;
    if n <= 0.0 {
        return Err(TrainError::Input(
            "the mask selects no tokens: every response is empty".into(),
        ));
    }
    let logp = token_logps(logits, targets)?;
    let loss = ((logp * mask)?.sum_all()?.neg()? / n)?;
    let hits = logits
        .argmax(D::Minus1)?
        .eq(targets)?
        .to_dtype(DType::F32)?;
    let accuracy = scalar_value(&(hits * mask)?.sum_all()?)? / n;
    let value = scalar_value(&loss)?;
    let metrics = BTreeMap::from([
        ("tokens".to_string(), n),
        ("accuracy".to_string(), accuracy),
        ("perplexity".to_string(), value.exp()),
    ]);
    Ok(LossOutput { loss, metrics })
}
