//! Training losses, all on candle's autograd and all differentiable end to end.
//!
//! Conventions shared by every loss here:
//! - tensors are `f32`; a log-probability tensor (`policy`, `reference`, the fields of
//!   [`PairLogps`]) holds one summed log-probability of the response tokens per sequence,
//!   shape `(B,)`;
//! - `lr` is `logp_policy - logp_ref`;
//! - softplus, log-sigmoid and sigmoid are computed in stable forms (see [`stable`]) whose
//!   gradients are smooth everywhere, including at 0 where DPO-style losses start;
//! - the returned [`LossOutput::loss`] is a scalar mean over the batch, and
//!   [`LossOutput::metrics`] holds detached diagnostics for the metrics log.
//!
//! | method | function | input |
//! |---|---|---|
//! | SFT | [`sft`] (and [`sequence_logps`] for every `logp` below) | logits, targets, mask |
//! | reward model | [`bradley_terry`] | scores of chosen and rejected |
//! | DPO, IPO | [`dpo`], [`ipo`] | [`PairLogps`] |
//! | KTO | [`kto`] with [`kto_z0`] | unpaired `logp`s and desirability |
//! | PRO | [`pro_binary`] (with [`binary_class_weights`]), [`pro_pairwise`], [`pro_scalar`] | labels, pairs or `(P, N)` scores |
//! | KLDO | [`Kldo::loss`] (holds the `ma` state) | `logp`s and alignment flags |
//! | RDRO | [`rdro`] | `logp`s and preference flags |
//! | Nash-MD, online IPO | [`nash_md`], [`online_ipo`] | per-token `logp`s and preferences of sampled pairs |

mod kldo;
mod kto;
mod nash;
mod pairwise;
mod pro;
mod rdro;
mod sft;
pub mod stable;

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use crate::error::{Result, TrainError};

pub use kldo::{Kldo, KldoEstimator};
pub use kto::{kto, kto_z0};
pub use nash::{nash_md, online_ipo};
pub use pairwise::{bradley_terry, dpo, ipo};
pub use pro::{binary_class_weights, pro_binary, pro_pairwise, pro_scalar, scaled_scores};
pub use rdro::{RdroReduction, rdro};
pub use sft::{sequence_logps, sft, token_logps};

/// A scalar loss to call `backward` on, and detached diagnostics for the metrics log.
#[derive(Debug, Clone)]
pub struct LossOutput {
    /// The scalar loss (rank 0, `f32`).
    pub loss: Tensor,
    /// Diagnostics by name (reward margins, accuracies, mean log-probabilities...).
    pub metrics: BTreeMap<String, f64>,
}

/// Summed response log-probabilities of a batch of preference pairs, each `(B,)`.
#[derive(Debug, Clone)]
pub struct PairLogps {
    /// `logp_policy(y_w | x)`.
    pub policy_chosen: Tensor,
    /// `logp_policy(y_l | x)`.
    pub policy_rejected: Tensor,
    /// `logp_ref(y_w | x)`.
    pub ref_chosen: Tensor,
    /// `logp_ref(y_l | x)`.
    pub ref_rejected: Tensor,
}

impl PairLogps {
    /// Checks that the four tensors are `f32` vectors of one non-zero length; returns it.
    pub fn batch_size(&self) -> Result<usize> {
        let b = vector_len(&self.policy_chosen, "policy_chosen")?;
        for (t, name) in [
            (&self.policy_rejected, "policy_rejected"),
            (&self.ref_chosen, "ref_chosen"),
            (&self.ref_rejected, "ref_rejected"),
        ] {
            let n = vector_len(t, name)?;
            if n != b {
                return Err(TrainError::Input(format!(
                    "{name} has {n} entries but policy_chosen has {b}"
                )));
            }
        }
        Ok(b)
    }

    /// `lr(y_w) = policy_chosen - ref_chosen`.
    pub fn chosen_ratio(&self) -> Result<Tensor> {
        Ok((&self.policy_chosen - &self.ref_chosen)?)
    }

    /// `lr(y_l) = policy_rejected - ref_rejected`.
    pub fn rejected_ratio(&self) -> Result<Tensor> {
        Ok((&self.policy_rejected - &self.ref_rejected)?)
    }
}

/// The length of a non-empty rank-1 `f32` tensor, or an error naming it.
pub(crate) fn vector_len(t: &Tensor, name: &str) -> Result<usize> {
    if t.dtype() != DType::F32 {
        return Err(TrainError::Input(format!(
            "{name} must be f32, got {:?}",
            t.dtype()
        )));
    }
    match t.dims() {
        [n] if *n > 0 => Ok(*n),
        dims => Err(TrainError::Input(format!(
            "{name} must be a non-empty vector (B,), got shape {dims:?}"
        ))),
    }
}

/// Checks that `policy` and `reference` are `(B,)` vectors and `flags` has `B` entries.
pub(crate) fn check_flagged(
    policy: &Tensor,
    reference: &Tensor,
    flags: &[bool],
    flag_name: &str,
) -> Result<usize> {
    let b = vector_len(policy, "policy")?;
    let r = vector_len(reference, "reference")?;
    if r != b {
        return Err(TrainError::Input(format!(
            "reference has {r} entries but policy has {b}"
        )));
    }
    if flags.len() != b {
        return Err(TrainError::Input(format!(
            "{flag_name} has {} entries but policy has {b}",
            flags.len()
        )));
    }
    Ok(b)
}

/// A finite, positive hyper-parameter, or an error naming it.
pub(crate) fn positive(value: f64, name: &str) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(TrainError::Input(format!(
            "{name} must be finite and > 0, got {value}"
        )))
    }
}

/// A finite, non-negative hyper-parameter, or an error naming it.
pub(crate) fn non_negative(value: f64, name: &str) -> Result<f64> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(TrainError::Input(format!(
            "{name} must be finite and >= 0, got {value}"
        )))
    }
}

/// `1.0` where `flags` is true, `0.0` elsewhere, as an `f32` vector on `like`'s device.
pub(crate) fn mask(flags: &[bool], like: &Tensor) -> Result<Tensor> {
    let v: Vec<f32> = flags.iter().map(|&f| if f { 1.0 } else { 0.0 }).collect();
    Ok(Tensor::from_vec(v, flags.len(), like.device())?)
}

/// The value of a tensor's mean, detached, as `f64`.
pub(crate) fn mean_value(t: &Tensor) -> Result<f64> {
    Ok(f64::from(t.mean_all()?.to_scalar::<f32>()?))
}

/// The value of a scalar tensor as `f64`.
pub(crate) fn scalar_value(t: &Tensor) -> Result<f64> {
    Ok(f64::from(t.to_scalar::<f32>()?))
}

/// The mean of `values` over the entries where `mask` is 1, or `None` where it has none.
pub(crate) fn masked_mean(values: &Tensor, mask: &Tensor) -> Result<Option<f64>> {
    let n = scalar_value(&mask.sum_all()?)?;
    if n == 0.0 {
        return Ok(None);
    }
    Ok(Some(scalar_value(&(values * mask)?.sum_all()?)? / n))
}
