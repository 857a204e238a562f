//! KTO: Kahneman-Tversky optimisation on unpaired desirable / undesirable responses.

use std::collections::BTreeMap;

use candle_core::Tensor;

use super::stable::sigmoid;
use super::{
    LossOutput, check_flagged, mask, masked_mean, mean_value, non_negative, positive, vector_len,
};
use crate::error::{Result, TrainError};

/// KTO's reference point `z0 = max(0, mean lr)` over mismatched `(x, y')` pairs (responses
/// scored under prompts they do not answer), as a detached number.
pub fn kto_z0(policy_mismatched: &Tensor, ref_mismatched: &Tensor) -> Result<f64> {
    let b = vector_len(policy_mismatched, "policy_mismatched")?;
    let r = vector_len(ref_mismatched, "ref_mismatched")?;
    if r != b {
        return Err(TrainError::Input(format!(
            "ref_mismatched has {r} entries but policy_mismatched has {b}"
        )));
    }
    let kl = mean_value(&(policy_mismatched - ref_mismatched)?)?;
    if !kl.is_finite() {
        return Err(TrainError::Input(format!("KTO's KL estimate is {kl}")));
    }
    Ok(kl.max(0.0))
}

/// KTO: desirable rows cost `lambda_d (1 - sigmoid(beta (lr - z0)))`, undesirable rows
/// `lambda_u (1 - sigmoid(beta (z0 - lr)))`; the loss is their batch mean. `z0` comes from
/// [`kto_z0`] and is a constant here.
///
/// Metrics: `kl` (`z0`), `rewards/desirable` and `rewards/undesirable` (mean `beta lr` of
/// each class, absent when the batch has none of it).
pub fn kto(
    policy: &Tensor,
    reference: &Tensor,
    desirable: &[bool],
    z0: f64,
    beta: f64,
    lambda_d: f64,
    lambda_u: f64,
) -> Result<LossOutput> {
    check_flagged(policy, reference, desirable, "desirable")?;
    positive(beta, "beta")?;
    non_negative(lambda_d, "lambda_d")?;
    non_negative(lambda_u, "lambda_u")?;
    if !z0.is_finite() {
        return Err(TrainError::Input(format!("z0 must be finite, got {z0}")));
    }
    let d = mask(desirable, policy)?;
    let lr = (policy - reference)?;
    // 1 - sigmoid(x) = sigmoid(-x).
    let des = (sigmoid(&((&lr - z0)? * -beta)?)? * lambda_d)?;
    let und = (sigmoid(&((&lr - z0)? * beta)?)? * lambda_u)?;
    let per = ((&des * &d)? + (&und * (1.0 - &d)?)?)?;
    let loss = per.mean_all()?;
    let rewards = (&lr * beta)?;
    let mut metrics = BTreeMap::from([("kl".to_string(), z0)]);
    if let Some(v) = masked_mean(&rewards, &d)? {
        metrics.insert("rewards/desirable".into(), v);
    }
    if let Some(v) = masked_mean(&rewards, &(1.0 - &d)?)? {
        metrics.insert("rewards/undesirable".into(), v);
    }
    Ok(LossOutput { loss, metrics })
}
