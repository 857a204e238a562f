//! RDRO: preference learning as relative density-ratio estimation.

use std::collections::BTreeMap;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::stable::log_sigmoid;
use super::{LossOutput, check_flagged, mask, masked_mean, scalar_value};
use crate::error::{Result, TrainError};

/// How RDRO averages the per-example terms (`pooled` / `per-class` on the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RdroReduction {
    /// One mean over the whole batch (what the authors' code does).
    #[default]
    Pooled,
    /// The mean over the preferred rows plus the mean over the dispreferred rows, so each
    /// class's expectation is estimated separately and the optimum `lr` is exactly the log
    /// relative density ratio `ln p / (alpha p + (1 - alpha) q)`. A class absent from the
    /// batch contributes nothing.
    PerClass,
}

/// RDRO with `alpha` in `[0, 1]` (the fraction of preferred data; 0 is the plain density
/// ratio classifier): a preferred row costs `-ln sigmoid(lr) - alpha ln sigmoid(-lr)`, a
/// dispreferred row `-(1 - alpha) ln sigmoid(-lr)`, reduced by `reduction`.
///
/// Metrics: `lr/preferred`, `lr/dispreferred` (class means where present) and `accuracy`
/// (share of rows on the right side of 0: `lr > 0` for preferred, `< 0` for dispreferred).
pub fn rdro(
    policy: &Tensor,
    reference: &Tensor,
    preferred: &[bool],
    alpha: f64,
    reduction: RdroReduction,
) -> Result<LossOutput> {
    let b = check_flagged(policy, reference, preferred, "preferred")?;
    if !(0.0..=1.0).contains(&alpha) {
        return Err(TrainError::Input(format!(
            "RDRO's alpha must lie in [0, 1], got {alpha}"
        )));
    }
    let p = mask(preferred, policy)?;
    let d = (1.0 - &p)?;
    let lr = (policy - reference)?;
    let ls_pos = log_sigmoid(&lr)?;
    let ls_neg = log_sigmoid(&lr.neg()?)?;
    let pref = ((ls_pos + (&ls_neg * alpha)?)?.neg()? * &p)?;
    let disp = ((ls_neg * -(1.0 - alpha))? * &d)?;
    let loss = match reduction {
        RdroReduction::Pooled => ((pref + disp)?.sum_all()? / b as f64)?,
        RdroReduction::PerClass => {
            let n_p = preferred.iter().filter(|&&x| x).count();
            let n_d = b - n_p;
            let mut total = pref.sum_all()?.zeros_like()?;
            if n_p > 0 {
                total = (total + (pref.sum_all()? / n_p as f64)?)?;
            }
            if n_d > 0 {
                total = (total + (disp.sum_all()? / n_d as f64)?)?;
            }
            total
        }
    };
    let mut metrics = BTreeMap::new();
    if let Some(v) = masked_mean(&lr, &p)? {
        metrics.insert("lr/preferred".to_string(), v);
    }
    if let Some(v) = masked_mean(&lr, &d)? {
        metrics.insert("lr/dispreferred".to_string(), v);
    }
    let signed = (&lr * ((&p * 2.0)? - 1.0)?)?;
    let right = scalar_value(
        &signed
            .gt(0.0)?
            .to_dtype(candle_core::DType::F32)?
            .sum_all()?,
    )?;
    metrics.insert("accuracy".into(), right / b as f64);
    Ok(LossOutput { loss, metrics })
}
