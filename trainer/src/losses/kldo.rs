//! KLDO: a Donsker-Varadhan estimate of the KL divergence between aligned and unaligned
//! responses, maximised by minimising its negative.

use std::collections::BTreeMap;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::{LossOutput, check_flagged, mean_value, positive, scalar_value};
use crate::error::{Result, TrainError};

/// How KLDO estimates the unaligned term `log mean exp(T)`. Named `ma`, `biased` and
/// `f-div` on the command line and in configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
pub enum KldoEstimator {
    /// `ma`: forward value `log mean exp(T)`; gradient bias-corrected with a moving average
    /// of `mean exp(T)` across batches (each unaligned `T_j` gets `exp(T_j) / (N ema)`).
    #[default]
    #[serde(rename = "ma")]
    #[value(name = "ma")]
    MovingAverage,
    /// `biased`: plain log-mean-exp and its own (minibatch-biased) gradient.
    #[serde(rename = "biased")]
    #[value(name = "biased")]
    Biased,
    /// `f-div`: the f-divergence bound's `mean exp(T - 1)`.
    #[serde(rename = "f-div")]
    #[value(name = "f-div")]
    FDivergence,
}

/// KLDO's settings and its one piece of state, the moving average (saved in checkpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kldo {
    /// `T = beta lr`; 0.1 by default.
    pub beta: f64,
    /// The estimator of the unaligned term.
    pub estimator: KldoEstimator,
    /// Rescale the unaligned term by `min(A, U) / U` (batch counts, constants to autograd).
    pub normalize: bool,
    /// The moving average of `mean exp(T_unaligned)`; `None` until the first `ma` batch,
    /// which initialises it to that batch's value.
    pub ema: Option<f64>,
}

impl Default for Kldo {
    fn default() -> Self {
        Self {
            beta: 0.1,
            estimator: KldoEstimator::MovingAverage,
            normalize: false,
            ema: None,
        }
    }
}

/// Indices of the entries of `flags` equal to `want`, as a `u32` tensor on `like`'s device.
fn indices(flags: &[bool], want: bool, like: &Tensor) -> Result<Tensor> {
    let idx: Vec<u32> = flags
        .iter()
        .enumerate()
        .filter(|(_, f)| **f == want)
        .map(|(i, _)| i as u32)
        .collect();
    let n = idx.len();
    Ok(Tensor::from_vec(idx, n, like.device())?)
}

impl Kldo {
    /// `L = -mean_{aligned} T + c * U(T_unaligned)` with `T = beta (logp_policy - logp_ref)`,
    /// `U` the estimator's unaligned term and `c = min(A, U)/U` under `normalize` (else 1).
    /// With `ma` this first updates `ema <- 0.1 mean exp(T_u) + 0.9 ema` and then uses the
    /// updated value in the gradient. The batch must hold both aligned and unaligned rows.
    ///
    /// Metrics: `kl` (the estimate `mean_a T - U`, unnormalised), `t/aligned`,
    /// `t/unaligned` (means of `T`), and `ema` under `ma`.
    pub fn loss(
        &mut self,
        policy: &Tensor,
        reference: &Tensor,
        aligned: &[bool],
    ) -> Result<LossOutput> {
        check_flagged(policy, reference, aligned, "aligned")?;
        positive(self.beta, "beta")?;
        let n_a = aligned.iter().filter(|&&a| a).count();
        let n_u = aligned.len() - n_a;
        if n_a == 0 || n_u == 0 {
            return Err(TrainError::Input(format!(
                "a KLDO batch needs aligned and unaligned rows, got {n_a} aligned and {n_u} unaligned"
            )));
        }
        let t = ((policy - reference)? * self.beta)?;
        let t_a = t.index_select(&indices(aligned, true, policy)?, 0)?;
        let t_u = t.index_select(&indices(aligned, false, policy)?, 0)?;
        let aligned_term = t_a.mean_all()?;
        let mut metrics = BTreeMap::new();
        let unaligned_term = match self.estimator {
            KldoEstimator::FDivergence => (&t_u - 1.0)?.exp()?.mean_all()?,
            KldoEstimator::Biased => log_mean_exp(&t_u)?.0,
            KldoEstimator::MovingAverage => {
                let (forward, max) = log_mean_exp(&t_u)?;
                let batch = scalar_value(&forward)?.exp();
                let ema = match self.ema {
                    Some(prev) => 0.1 * batch + 0.9 * prev,
                    None => batch,
                };
                if !(ema.is_finite() && ema > 0.0) {
                    return Err(TrainError::Input(format!(
                        "KLDO's moving average of exp(T) is {ema}: the policy has drifted too far from the reference"
                    )));
                }
                self.ema = Some(ema);
                metrics.insert("ema".to_string(), ema);
                // surrogate = sum_j exp(T_j) / (N ema), computed as
                // sum_j exp(T_j - m) * exp(m - ln(N ema)) with m the detached maximum.
                let scale = (max - (n_u as f64 * ema).ln()).exp();
                let surrogate = ((&t_u - max)?.exp()?.sum_all()? * scale)?;
                (&surrogate + (forward - &surrogate)?.detach())?
            }
        };
        let unaligned_value = scalar_value(&unaligned_term)?;
        let scaled = if self.normalize {
            (unaligned_term * (n_a.min(n_u) as f64 / n_u as f64))?
        } else {
            unaligned_term
        };
        let loss = (scaled - aligned_term)?;
        let mean_a = mean_value(&t_a)?;
        metrics.insert("kl".into(), mean_a - unaligned_value);
        metrics.insert("t/aligned".into(), mean_a);
        metrics.insert("t/unaligned".into(), mean_value(&t_u)?);
        Ok(LossOutput { loss, metrics })
    }
}

/// `ln mean exp(x)` of a vector, stable (the detached maximum is subtracted), and that
/// maximum.
fn log_mean_exp(x: &Tensor) -> Result<(Tensor, f64)> {
    let n = x.dims1()?;
    let max = scalar_value(&x.max_all()?)?;
    let lme = (((x - max)?.exp()?.sum_all()? / n as f64)?.log()? + max)?;
    Ok((lme, max))
}
