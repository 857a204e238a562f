//! PRO, Proximalized Preference Optimization, for binary, pairwise and scalar feedback.
//!
//! With `r = beta lr` and the hyper response `H` with `r_H = 0`, the proximal term is
//! `Reg(a, b) = -(1/2 ln sigmoid(r_a - r_b) + 1/2 ln sigmoid(r_b - r_a))`: it is symmetric,
//! smallest (`ln 2`) when `r_a = r_b`, and keeps the policy near the reference while the
//! linear term `-beta s logp` moves likelihood towards better responses.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor};

use super::pairwise::reward_metrics;
use super::stable::log_sigmoid;
use super::{
    LossOutput, PairLogps, check_flagged, mask, masked_mean, mean_value, non_negative, positive,
    scalar_value, vector_len,
};
use crate::error::{Result, TrainError};

/// `Reg(a, b)` elementwise from the scaled log-ratios `r_a` and `r_b`.
fn reg(ra: &Tensor, rb: &Tensor) -> Result<Tensor> {
    let d = (ra - rb)?;
    Ok(((log_sigmoid(&d)? + log_sigmoid(&d.neg()?)?)? * -0.5)?)
}

/// `Reg(a, H)` with `r_H = 0`.
fn reg_h(ra: &Tensor) -> Result<Tensor> {
    reg(ra, &ra.zeros_like()?)
}

/// Per-example weights that give the two classes equal total weight: a desired example
/// weighs `B / (2 n_desired)`, an undesired one `B / (2 n_undesired)`, so the weights
/// average 1. Where only one class is present every weight is 1.
pub fn binary_class_weights(desired: &[bool]) -> Vec<f32> {
    let b = desired.len();
    let n_d = desired.iter().filter(|&&d| d).count();
    let n_u = b - n_d;
    if n_d == 0 || n_u == 0 {
        return vec![1.0; b];
    }
    let w_d = b as f64 / (2.0 * n_d as f64);
    let w_u = b as f64 / (2.0 * n_u as f64);
    desired
        .iter()
        .map(|&d| if d { w_d as f32 } else { w_u as f32 })
        .collect()
}

/// PRO for binary feedback: per example `L = -beta s logp(y) + alpha Reg(y, H)` with
/// `s = +1/2` for desired and `-1/2` for undesired responses; the loss is the weighted mean
/// `sum(w L) / sum(w)` (pass [`binary_class_weights`] for imbalanced data, ones otherwise).
///
/// Metrics: `reg` (mean proximal term), `rewards/desired`, `rewards/undesired` (mean
/// `beta lr` per class where present), `logps/desired`, `logps/undesired`.
pub fn pro_binary(
    policy: &Tensor,
    reference: &Tensor,
    desired: &[bool],
    weights: &Tensor,
    beta: f64,
    alpha: f64,
) -> Result<LossOutput> {
    let b = check_flagged(policy, reference, desired, "desired")?;
    let nw = vector_len(weights, "weights")?;
    if nw != b {
        return Err(TrainError::Input(format!(
            "weights has {nw} entries but policy has {b}"
        )));
    }
    positive(beta, "beta")?;
    non_negative(alpha, "alpha")?;
    let w_min = scalar_value(&weights.min_all()?)?;
    let w_sum = scalar_value(&weights.sum_all()?)?;
    if !(w_min >= 0.0 && w_sum > 0.0 && w_sum.is_finite()) {
        return Err(TrainError::Input(format!(
            "weights must be non-negative with a positive finite sum (min {w_min}, sum {w_sum})"
        )));
    }
    let d = mask(desired, policy)?;
    let s = (&d - 0.5)?;
    let r = ((policy - reference)? * beta)?;
    let proximal = reg_h(&r)?;
    let linear = ((&s * policy)? * -beta)?;
    let per = (linear + (&proximal * alpha)?)?;
    let loss = ((per * weights.detach())?.sum_all()? / w_sum)?;
    let mut metrics = BTreeMap::from([("reg".to_string(), mean_value(&proximal)?)]);
    let u = (1.0 - &d)?;
    for (name, m) in [("desired", &d), ("undesired", &u)] {
        if let Some(v) = masked_mean(&r, m)? {
            metrics.insert(format!("rewards/{name}"), v);
        }
        if let Some(v) = masked_mean(policy, m)? {
            metrics.insert(format!("logps/{name}"), v);
        }
    }
    Ok(LossOutput { loss, metrics })
}

/// PRO for pairwise feedback, per pair
/// `L = -(beta/8)(logp(y_w) - logp(y_l)) + (alpha/9)(Reg(w,l) + Reg(w,H) + Reg(l,H))`,
/// averaged over the batch. Metrics: DPO's reward metrics plus `reg`.
pub fn pro_pairwise(p: &PairLogps, beta: f64, alpha: f64) -> Result<LossOutput> {
    p.batch_size()?;
    positive(beta, "beta")?;
    non_negative(alpha, "alpha")?;
    let rw = (p.chosen_ratio()? * beta)?;
    let rl = (p.rejected_ratio()? * beta)?;
    let proximal = ((reg(&rw, &rl)? + reg_h(&rw)?)? + reg_h(&rl)?)?;
    let linear = ((&p.policy_chosen - &p.policy_rejected)? * (-beta / 8.0))?;
    let loss = (linear + (&proximal * (alpha / 9.0))?)?.mean_all()?;
    let mut metrics = reward_metrics(p, beta)?;
    metrics.insert("reg".into(), mean_value(&proximal)? / 3.0);
    Ok(LossOutput { loss, metrics })
}

/// Scores centred per prompt (row) and scaled so the largest magnitude is 1/2:
/// `s_i = (x_i - mean x) / (2 max_j |x_j - mean x|)`, all zeros for a row of equal scores.
/// Two responses scored `(1, 0)` get `(+1/2, -1/2)`, the binary feedback's `s`.
pub fn scaled_scores(scores: &[f64]) -> Vec<f64> {
    if scores.is_empty() {
        return Vec::new();
    }
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    let centred: Vec<f64> = scores.iter().map(|x| x - mean).collect();
    let max = centred.iter().fold(0.0f64, |m, c| m.max(c.abs()));
    if max == 0.0 {
        return vec![0.0; scores.len()];
    }
    centred.iter().map(|c| c / (2.0 * max)).collect()
}

/// PRO for scalar feedback: `P` prompts with `N >= 2` scored responses each, all tensors
/// `(P, N)`. Per prompt, with `s` = [`scaled_scores`] of the raw `scores`,
/// `L = -(beta/N) sum_i s_i logp(y_i) + 2 alpha/(N(N+1)) sum Reg` over the `N(N+1)/2`
/// unordered pairs of `{y_1..y_N, H}`; the loss is the mean over prompts.
///
/// Metrics: `reg` (mean proximal term per pair) and `logps/best` (mean log-probability of
/// each prompt's best-scored response).
pub fn pro_scalar(
    policy: &Tensor,
    reference: &Tensor,
    scores: &Tensor,
    beta: f64,
    alpha: f64,
) -> Result<LossOutput> {
    let (p, n) = policy.dims2().map_err(|_| {
        TrainError::Input(format!(
            "policy must be (P, N), got shape {:?}",
            policy.dims()
        ))
    })?;
    for (t, name) in [
        (policy, "policy"),
        (reference, "reference"),
        (scores, "scores"),
    ] {
        if t.dims() != [p, n] || t.dtype() != DType::F32 {
            return Err(TrainError::Input(format!(
                "{name} must be f32 of shape [{p}, {n}], got {:?} of shape {:?}",
                t.dtype(),
                t.dims()
            )));
        }
    }
    if p == 0 || n < 2 {
        return Err(TrainError::Input(format!(
            "PRO's scalar loss needs at least one prompt with at least 2 responses, got ({p}, {n})"
        )));
    }
    positive(beta, "beta")?;
    non_negative(alpha, "alpha")?;
    let raw = scores.to_vec2::<f32>()?;
    let mut s = Vec::with_capacity(p * n);
    let mut best = Vec::with_capacity(p);
    for row in &raw {
        let row: Vec<f64> = row.iter().map(|&x| f64::from(x)).collect();
        if row.iter().any(|x| !x.is_finite()) {
            return Err(TrainError::Input(format!(
                "scores must be finite, got {row:?}"
            )));
        }
        let (mut arg, mut top) = (0usize, f64::NEG_INFINITY);
        for (i, &x) in row.iter().enumerate() {
            if x > top {
                (arg, top) = (i, x);
            }
        }
        best.push(arg as u32);
        s.extend(scaled_scores(&row).into_iter().map(|x| x as f32));
    }
    let s = Tensor::from_vec(s, (p, n), policy.device())?;
    let linear = ((&s * policy)?.sum(1)? * (-beta / n as f64))?;
    let r = ((policy - reference)? * beta)?;
    // Reg over all ordered pairs i != j is twice the unordered sum (Reg is symmetric).
    let ri = r.unsqueeze(2)?.broadcast_as((p, n, n))?;
    let rj = r.unsqueeze(1)?.broadcast_as((p, n, n))?;
    let off_diagonal = (1.0 - Tensor::eye(n, DType::F32, policy.device())?)?;
    let pairs = (reg(&ri.contiguous()?, &rj.contiguous()?)?.broadcast_mul(&off_diagonal)?)
        .sum((1, 2))?
        * 0.5;
    let proximal = (pairs? + reg_h(&r)?.sum(1)?)?;
    let coeff = 2.0 * alpha / (n as f64 * (n as f64 + 1.0));
    let loss = (linear + (&proximal * coeff)?)?.mean_all()?;
    let best = Tensor::from_vec(best, (p, 1), policy.device())?;
    let best_logp = policy.gather(&best, 1)?;
    let metrics = BTreeMap::from([
        (
            "reg".to_string(),
            mean_value(&proximal)? * 2.0 / (n as f64 * (n as f64 + 1.0)),
        ),
        ("logps/best".to_string(), mean_value(&best_logp)?),
    ]);
    Ok(LossOutput { loss, metrics })
}
