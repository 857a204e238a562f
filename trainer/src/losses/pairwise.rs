//! Pairwise losses: Bradley-Terry for reward models, DPO (with label smoothing) and IPO.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use super::stable::log_sigmoid;
use super::{LossOutput, PairLogps, mean_value, non_negative, positive, vector_len};
use crate::error::{Result, TrainError};

/// The share of entries of `x` that are `> 0`.
fn positive_share(x: &Tensor) -> Result<f64> {
    mean_value(&x.gt(0.0)?.to_dtype(DType::F32)?)
}

/// Bradley-Terry reward-model loss `mean(-ln sigmoid(r_w - r_l))`.
///
/// Metrics: `accuracy` (share with `r_w > r_l`), `margin`, `chosen`, `rejected` (means).
pub fn bradley_terry(r_chosen: &Tensor, r_rejected: &Tensor) -> Result<LossOutput> {
    let b = vector_len(r_chosen, "r_chosen")?;
    let n = vector_len(r_rejected, "r_rejected")?;
    if n != b {
        return Err(TrainError::Input(format!(
            "r_rejected has {n} entries but r_chosen has {b}"
        )));
    }
    let margin = (r_chosen - r_rejected)?;
    let loss = log_sigmoid(&margin)?.neg()?.mean_all()?;
    let metrics = BTreeMap::from([
        ("accuracy".to_string(), positive_share(&margin)?),
        ("margin".to_string(), mean_value(&margin)?),
        ("chosen".to_string(), mean_value(r_chosen)?),
        ("rejected".to_string(), mean_value(r_rejected)?),
    ]);
    Ok(LossOutput { loss, metrics })
}

/// The implicit-reward metrics DPO-style losses share: `rewards/chosen`
/// (`beta lr(y_w)`), `rewards/rejected`, `rewards/margin`, `rewards/accuracy` and
/// `logps/chosen`, `logps/rejected` (policy log-probabilities), all batch means.
pub(crate) fn reward_metrics(p: &PairLogps, beta: f64) -> Result<BTreeMap<String, f64>> {
    let chosen = (p.chosen_ratio()? * beta)?;
    let rejected = (p.rejected_ratio()? * beta)?;
    let margin = (&chosen - &rejected)?;
    Ok(BTreeMap::from([
        ("rewards/chosen".to_string(), mean_value(&chosen)?),
        ("rewards/rejected".to_string(), mean_value(&rejected)?),
        ("rewards/margin".to_string(), mean_value(&margin)?),
        ("rewards/accuracy".to_string(), positive_share(&margin)?),
        ("logps/chosen".to_string(), mean_value(&p.policy_chosen)?),
        (
            "logps/rejected".to_string(),
            mean_value(&p.policy_rejected)?,
        ),
    ]))
}

/// `h = lr(y_w) - lr(y_l)` per pair.
fn log_ratio_margin(p: &PairLogps) -> Result<Tensor> {
    Ok((p.chosen_ratio()? - p.rejected_ratio()?)?)
}

/// DPO: `mean(-(1-eps) ln sigmoid(beta h) - eps ln sigmoid(-beta h))` with
/// `h = lr(y_w) - lr(y_l)`; `eps = 0` is plain DPO, `eps > 0` the conservative (label
/// smoothed) variant. `label_smoothing` must lie in `[0, 0.5]`.
pub fn dpo(p: &PairLogps, beta: f64, label_smoothing: f64) -> Result<LossOutput> {
    p.batch_size()?;
    positive(beta, "beta")?;
    let eps = non_negative(label_smoothing, "label_smoothing")?;
    if eps > 0.5 {
        return Err(TrainError::Input(format!(
            "label_smoothing must be <= 0.5, got {eps}"
        )));
    }
    let z = (log_ratio_margin(p)? * beta)?;
    let mut per = (log_sigmoid(&z)? * -(1.0 - eps))?;
    if eps > 0.0 {
        per = (per - (log_sigmoid(&z.neg()?)? * eps)?)?;
    }
    let loss = per.mean_all()?;
    Ok(LossOutput {
        loss,
        metrics: reward_metrics(p, beta)?,
    })
}

/// IPO: `mean((h - 1/(2 beta))^2)` with `h = lr(y_w) - lr(y_l)`.
pub fn ipo(p: &PairLogps, beta: f64) -> Result<LossOutput> {
    p.batch_size()?;
    positive(beta, "beta")?;
    let h = log_ratio_margin(p)?;
    let loss = (h - 1.0 / (2.0 * beta))?.sqr()?.mean_all()?;
    Ok(LossOutput {
        loss,
        metrics: reward_metrics(p, beta)?,
    })
}
