//! Online Nash learning from human feedback: Nash-MD's REINFORCE loss on a policy sample
//! judged against a sample of the geometric mixture, and online IPO on the same pair.

use std::collections::BTreeMap;

use candle_core::{D, DType, Tensor};

use super::{LossOutput, PairLogps, mean_value, positive, vector_len};
use crate::error::{Result, TrainError};

/// `(B, T)` shape of a per-token tensor, or an error naming it.
fn matrix(t: &Tensor, name: &str) -> Result<(usize, usize)> {
    if t.dtype() != DType::F32 {
        return Err(TrainError::Input(format!(
            "{name} must be f32, got {:?}",
            t.dtype()
        )));
    }
    t.dims2().map_err(|_| {
        TrainError::Input(format!(
            "{name} must be (B, T) per-token values, got shape {:?}",
            t.dims()
        ))
    })
}

/// Nash-MD's per-example loss, averaged over the batch:
///
/// `beta * sum_t sg(logp_policy - logp_ref)(y_t) * logp_policy(y_t)
///  - (p - 1/2) * sum_t logp_policy(y_t)`
///
/// over the response tokens of `y` (a sample of the current policy); `p = P(y > y')` is the
/// preference of `y` over the mixture's sample `y'`. The first term's gradient is the
/// REINFORCE estimate of `beta * KL(policy || ref)`'s, the second's the estimate of the
/// preference's with 1/2 as baseline.
///
/// `policy` and `reference` are per-token log-probabilities `(B, T)` of `y`'s tokens (only
/// `policy` carries gradients; `reference` is treated as a constant), `mask` `(B, T)` is 1 on
/// response tokens, `preference` `(B,)` holds `p` in `[0, 1]`.
///
/// Metrics: `kl` (mean of `sum_t (logp_policy - logp_ref)`, a single-sample KL estimate),
/// `preference` (mean `p`), `logps/policy` (mean summed log-probability of `y`).
pub fn nash_md(
    policy: &Tensor,
    reference: &Tensor,
    mask: &Tensor,
    preference: &Tensor,
    beta: f64,
) -> Result<LossOutput> {
    let (b, t) = matrix(policy, "policy")?;
    for (x, name) in [(reference, "reference"), (mask, "mask")] {
        if matrix(x, name)? != (b, t) {
            return Err(TrainError::Input(format!(
                "{name} has shape {:?} but policy has [{b}, {t}]",
                x.dims()
            )));
        }
    }
    let n = vector_len(preference, "preference")?;
    if n != b {
        return Err(TrainError::Input(format!(
            "preference has {n} entries but policy has {b} rows"
        )));
    }
    let pv = preference.to_vec1::<f32>()?;
    if let Some(p) = pv.iter().find(|p| !(0.0..=1.0).contains(*p)) {
        return Err(TrainError::Input(format!(
            "a preference must lie in [0, 1], got {p}"
        )));
    }
    if !beta.is_finite() || beta < 0.0 {
        return Err(TrainError::Input(format!(
            "beta must be finite and >= 0, got {beta}"
        )));
    }
    let policy = (policy * mask)?;
    let ratio = ((&policy - reference)? * mask)?.detach();
    let kl_term = (&ratio * &policy)?.sum(D::Minus1)?;
    let logp = policy.sum(D::Minus1)?;
    let advantage = (preference.detach() - 0.5)?;
    let per = ((kl_term * beta)? - (&advantage * &logp)?)?;
    let loss = per.mean_all()?;
    let metrics = BTreeMap::from([
        ("kl".to_string(), mean_value(&ratio.sum(D::Minus1)?)?),
        ("preference".to_string(), mean_value(preference)?),
        ("logps/policy".to_string(), mean_value(&logp)?),
    ]);
    Ok(LossOutput { loss, metrics })
}

/// Online IPO: IPO's `(h - 1/(2 tau))^2` on on-policy pairs ordered by the preference model,
/// `h = lr(y_w) - lr(y_l)` with `lr = logp_policy - logp_ref` (summed over the response).
///
/// `first` holds the log-probabilities of one sample of each pair and `second` of the other
/// (their `policy_chosen`/`ref_chosen` and `policy_rejected`/`ref_rejected` fields), and
/// `preference[i]` the probability that `first` beats `second`: where it is above 1/2 the
/// first sample is the winner, below 1/2 the second; exact ties carry no label and are left
/// out of the mean (a batch of ties gives a zero loss).
///
/// Metrics: `margin` (mean `h` over labelled pairs), `labelled` (share of pairs with a label).
pub fn online_ipo(first: &PairLogps, preference: &Tensor, tau: f64) -> Result<LossOutput> {
    let b = first.batch_size()?;
    positive(tau, "tau")?;
    let n = vector_len(preference, "preference")?;
    if n != b {
        return Err(TrainError::Input(format!(
            "preference has {n} entries but there are {b} pairs"
        )));
    }
    let pv = preference.to_vec1::<f32>()?;
    if let Some(p) = pv.iter().find(|p| !(0.0..=1.0).contains(*p)) {
        return Err(TrainError::Input(format!(
            "a preference must lie in [0, 1], got {p}"
        )));
    }
    // +1 where the first sample wins, -1 where the second does, 0 on ties.
    let sign: Vec<f32> = pv
        .iter()
        .map(|&p| match p.partial_cmp(&0.5) {
            Some(std::cmp::Ordering::Greater) => 1.0,
            Some(std::cmp::Ordering::Less) => -1.0,
            _ => 0.0,
        })
        .collect();
    let labelled = sign.iter().filter(|s| **s != 0.0).count();
    let sign = Tensor::from_vec(sign, b, first.policy_chosen.device())?;
    let weight = sign.abs()?;
    let h = ((first.chosen_ratio()? - first.rejected_ratio()?)? * &sign)?;
    let per = ((&h - 1.0 / (2.0 * tau))?.sqr()? * &weight)?;
    let loss = (per.sum_all()? / labelled.max(1) as f64)?;
    let margin = if labelled > 0 {
        f64::from((h * &weight)?.sum_all()?.to_scalar::<f32>()?) / labelled as f64
    } else {
        0.0
    };
    let metrics = BTreeMap::from([
        ("margin".to_string(), margin),
        ("labelled".to_string(), labelled as f64 / b as f64),
    ]);
    Ok(LossOutput { loss, metrics })
}
