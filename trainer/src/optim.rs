//! Optimisers with inspectable state (AdamW, RMSprop) and global-norm gradient clipping.

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// Which update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimKind {
    /// Adam with decoupled weight decay.
    Adamw,
    /// RMSprop (no momentum), with decoupled weight decay.
    Rmsprop,
}

/// Hyper-parameters of the optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    /// Update rule.
    pub kind: OptimKind,
    /// Decoupled weight decay (`p -= lr * wd * p`).
    pub weight_decay: f64,
    /// AdamW's first-moment decay.
    pub beta1: f64,
    /// AdamW's second-moment decay; RMSprop's smoothing constant.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            kind: OptimKind::Adamw,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// An optimiser over a fixed, ordered list of variables. Its state (`step`, first and
/// second moments) is public so checkpoints can save and restore it exactly.
#[derive(Debug)]
pub struct Optimizer {
    /// Hyper-parameters.
    pub config: OptimConfig,
    /// Updates applied so far.
    pub step: u64,
    /// First moments (AdamW; empty for RMSprop), one per variable.
    pub m: Vec<Tensor>,
    /// Second moments (squared-gradient averages), one per variable.
    pub v: Vec<Tensor>,
}

impl Optimizer {
    /// A fresh optimiser for `vars`, moments at zero.
    pub fn new(config: OptimConfig, vars: &[(String, Var)]) -> Result<Self> {
        let zeros = || -> Result<Vec<Tensor>> {
            vars.iter()
                .map(|(_, v)| Ok(v.as_tensor().zeros_like()?))
                .collect()
        };
        Ok(Self {
            config,
            step: 0,
            m: if config.kind == OptimKind::Adamw {
                zeros()?
            } else {
                Vec::new()
            },
            v: zeros()?,
        })
    }

    /// Applies one update with learning rate `lr` and gradients `grads` (one per variable,
    /// in the same order).
    pub fn apply(&mut self, vars: &[(String, Var)], grads: &[Tensor], lr: f64) -> Result<()> {
        if grads.len() != vars.len() || self.v.len() != vars.len() {
            return Err(TrainError::Config(format!(
                "optimiser holds state for {} variables, got {} variables and {} gradients",
                self.v.len(),
                vars.len(),
                grads.len()
            )));
        }
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        for (i, ((_, var), g)) in vars.iter().zip(grads).enumerate() {
            let p = var.as_tensor();
            let decayed = if c.weight_decay > 0.0 {
                (p * (1.0 - lr * c.weight_decay))?
            } else {
                p.clone()
            };
            let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let update = match c.kind {
                OptimKind::Adamw => {
                    let m = ((&self.m[i] * c.beta1)? + (g * (1.0 - c.beta1))?)?;
                    let m_hat = (&m / (1.0 - c.beta1.powi(t)))?;
                    let v_hat = (&v / (1.0 - c.beta2.powi(t)))?;
                    let u = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
                    self.m[i] = m;
                    u
                }
                OptimKind::Rmsprop => (g / (v.sqrt()? + c.eps)?)?,
            };
            self.v[i] = v;
            var.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(())
    }
}

/// The global L2 norm of `grads`.
pub fn global_norm(grads: &[Tensor]) -> Result<f64> {
    let mut total = 0f64;
    for g in grads {
        total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
    }
    Ok(total.sqrt())
}

/// Scales `grads` so their global norm is at most `max_norm`; returns the norm before.
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> Result<f64> {
    let norm = global_norm(grads)?;
    if norm > max_norm && norm > 0.0 {
        let s = max_norm / (norm + 1e-6);
        for g in grads.iter_mut() {
            *g = (&*g * s)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn adamw_matches_a_hand_computed_step() {
        let var = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let vars = vec![("w".to_string(), var.clone())];
        let cfg = OptimConfig {
            weight_decay: 0.1,
            ..Default::default()
        };
        let mut opt = Optimizer::new(cfg, &vars).unwrap();
        let g = Tensor::new(&[0.5f32, -1.0], &Device::Cpu).unwrap();
        opt.apply(&vars, std::slice::from_ref(&g), 0.01).unwrap();
        opt.apply(&vars, &[g], 0.01).unwrap();
        // Two steps with a constant gradient: m_hat = g, v_hat = g^2, update = sign(g).
        let mut want = [1.0f64, -2.0];
        for _ in 0..2 {
            for (w, s) in want.iter_mut().zip([1.0, -1.0]) {
                *w = *w * (1.0 - 0.01 * 0.1) - 0.01 * s;
            }
        }
        let got = var.as_tensor().to_vec1::<f32>().unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{g} vs {w}");
        }
        assert_eq!(opt.step, 2);
    }

    #[test]
    fn rmsprop_matches_a_hand_computed_step() {
        let var = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let vars = vec![("w".to_string(), var.clone())];
        let cfg = OptimConfig {
            kind: OptimKind::Rmsprop,
            beta2: 0.99,
            ..Default::default()
        };
        let mut opt = Optimizer::new(cfg, &vars).unwrap();
        opt.apply(&vars, &[Tensor::new(&[2.0f32], &Device::Cpu).unwrap()], 0.1)
            .unwrap();
        // v = 0.01 * 4 = 0.04, update = 2 / 0.2 = 10.
        let got = var.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((got - (1.0 - 0.1 * 10.0)).abs() < 1e-5, "{got}");
    }

    #[test]
    fn clipping_scales_to_the_global_norm() {
        let mut g = vec![
            Tensor::new(&[3.0f32], &Device::Cpu).unwrap(),
            Tensor::new(&[4.0f32], &Device::Cpu).unwrap(),
        ];
        let before = clip_grad_norm(&mut g, 1.0).unwrap();
        assert!((before - 5.0).abs() < 1e-6);
        assert!((global_norm(&g).unwrap() - 1.0).abs() < 1e-5);
    }
}
