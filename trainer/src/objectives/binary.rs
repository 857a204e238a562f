//! Objectives on binary feedback (one response, desired or not): KTO, PRO-binary, RDRO and
//! KLDO (whose batches are half aligned, half unaligned).

use crate::error::Result;
use crate::losses::{self, Kldo, RdroReduction};
use crate::model::TrainModel;
use crate::objectives::{Seq, gather, logps};
use crate::train::{Objective, StepLoss};

/// Which binary-feedback loss.
#[derive(Debug, Clone)]
pub enum BinaryLoss {
    /// KTO; `z0` from mismatched (prompt, other response) pairs of the same batch.
    Kto {
        /// Inverse temperature.
        beta: f64,
        /// Weight of desirable examples.
        lambda_d: f64,
        /// Weight of undesirable examples.
        lambda_u: f64,
    },
    /// PRO on binary feedback with an effective 1:1 class ratio.
    Pro {
        /// Inverse temperature.
        beta: f64,
        /// Weight of the proximal term.
        alpha: f64,
    },
    /// Relative density ratio optimisation.
    Rdro {
        /// Fraction of preferred data.
        alpha: f64,
        /// How the batch mean is taken.
        reduction: RdroReduction,
    },
    /// KLDO with its moving-average state.
    Kldo(Kldo),
}

/// Responses labelled desired/undesired, with cached reference log-probabilities.
pub struct Binary {
    /// Prompt + response sequences.
    pub seqs: Vec<Seq>,
    /// Whether each is desired (aligned, preferred).
    pub desired: Vec<bool>,
    /// Reference log-probabilities of `seqs`.
    pub reference: Vec<f64>,
    /// KTO: sequence `i`'s prompt with another example's response, and their reference
    /// log-probabilities; empty for the other losses.
    pub mismatched: Vec<Seq>,
    /// Reference log-probabilities of `mismatched`.
    pub mismatched_reference: Vec<f64>,
    /// The loss.
    pub kind: BinaryLoss,
    class_weights: Vec<f32>,
    positives: Vec<usize>,
    negatives: Vec<usize>,
}

impl Binary {
    /// Builds the objective; class weights for PRO come from the whole data set.
    pub fn new(seqs: Vec<Seq>, desired: Vec<bool>, reference: Vec<f64>, kind: BinaryLoss) -> Self {
        let class_weights = losses::binary_class_weights(&desired);
        let positives = (0..desired.len()).filter(|&i| desired[i]).collect();
        let negatives = (0..desired.len()).filter(|&i| !desired[i]).collect();
        Self {
            seqs,
            desired,
            reference,
            mismatched: Vec::new(),
            mismatched_reference: Vec::new(),
            kind,
            class_weights,
            positives,
            negatives,
        }
    }

    fn balanced(&self) -> bool {
        matches!(self.kind, BinaryLoss::Kldo(_))
    }

    fn rows(&self, batch: &[usize]) -> Vec<usize> {
        if self.balanced() && !self.positives.is_empty() && !self.negatives.is_empty() {
            let (a, u) = (&self.positives, &self.negatives);
            batch
                .iter()
                .map(|&i| a[i % a.len()])
                .chain(batch.iter().map(|&i| u[i % u.len()]))
                .collect()
        } else {
            batch.to_vec()
        }
    }
}

impl Objective for Binary {
    fn len(&self) -> usize {
        if self.balanced() {
            self.positives.len().max(self.negatives.len())
        } else {
            self.seqs.len()
        }
    }

    fn loss(&mut self, model: &TrainModel, batch: &[usize]) -> Result<StepLoss> {
        let idx = self.rows(batch);
        let flags: Vec<bool> = idx.iter().map(|&i| self.desired[i]).collect();
        let (policy, mut tokens) = logps(model, &self.seqs, &idx)?;
        let reference = gather(&self.reference, &idx, model)?;
        let out = match &mut self.kind {
            BinaryLoss::Kto {
                beta,
                lambda_d,
                lambda_u,
            } => {
                let (pm, t) = logps(model, &self.mismatched, &idx)?;
                tokens += t;
                let rm = gather(&self.mismatched_reference, &idx, model)?;
                let z0 = losses::kto_z0(&pm.detach(), &rm)?;
                let mut out =
                    losses::kto(&policy, &reference, &flags, z0, *beta, *lambda_d, *lambda_u)?;
                out.metrics.insert("z0".into(), z0);
                out
            }
            BinaryLoss::Pro { beta, alpha } => {
                let w: Vec<f32> = idx.iter().map(|&i| self.class_weights[i]).collect();
                let w = candle_core::Tensor::from_vec(w, idx.len(), model.device())?;
                losses::pro_binary(&policy, &reference, &flags, &w, *beta, *alpha)?
            }
            BinaryLoss::Rdro { alpha, reduction } => {
                losses::rdro(&policy, &reference, &flags, *alpha, *reduction)?
            }
            BinaryLoss::Kldo(k) => k.loss(&policy, &reference, &flags)?,
        };
        Ok(StepLoss {
            loss: out.loss,
            metrics: out.metrics,
            tokens,
        })
    }

    fn state(&self) -> serde_json::Value {
        match &self.kind {
            BinaryLoss::Kldo(k) => serde_json::to_value(k).unwrap_or_default(),
            _ => serde_json::Value::Null,
        }
    }

    fn restore(&mut self, state: &serde_json::Value) -> Result<()> {
        if let BinaryLoss::Kldo(k) = &mut self.kind {
            // A KLDO run without its moving average would resume on a different loss.
            let saved = serde_json::from_value::<Kldo>(state.clone()).map_err(|e| {
                crate::error::TrainError::Config(format!(
                    "--resume: the checkpoint's loss state {state} is not KLDO's ({e}; not a kldo run?)"
                ))
            })?;
            k.ema = saved.ema;
        }
        Ok(())
    }
}
