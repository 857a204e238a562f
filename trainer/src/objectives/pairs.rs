//! Pairwise preference objectives (DPO, IPO, PRO-pairwise) on cached reference log-probs.

use crate::error::Result;
use crate::losses::{self, PairLogps};
use crate::model::TrainModel;
use crate::objectives::{Seq, gather, logps};
use crate::train::{Objective, StepLoss};

/// Which pairwise loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PairLoss {
    /// DPO with label smoothing.
    Dpo {
        /// Inverse temperature.
        beta: f64,
        /// Label smoothing epsilon.
        label_smoothing: f64,
    },
    /// IPO.
    Ipo {
        /// Regularisation strength.
        beta: f64,
    },
    /// PRO on pairs.
    Pro {
        /// Inverse temperature.
        beta: f64,
        /// Weight of the proximal term.
        alpha: f64,
    },
}

/// Chosen and rejected sequences with their reference log-probabilities.
pub struct Pairs {
    /// Sequences: chosen `i` is `seqs[2 i]`, rejected `seqs[2 i + 1]`.
    pub seqs: Vec<Seq>,
    /// Reference log-probabilities of `seqs`.
    pub reference: Vec<f64>,
    /// The loss.
    pub kind: PairLoss,
}

impl Pairs {
    /// Policy and reference log-probs of the pairs `batch`.
    pub fn pair_logps(&self, model: &TrainModel, batch: &[usize]) -> Result<(PairLogps, usize)> {
        let idx: Vec<usize> = batch
            .iter()
            .map(|&i| 2 * i)
            .chain(batch.iter().map(|&i| 2 * i + 1))
            .collect();
        let (lp, tokens) = logps(model, &self.seqs, &idx)?;
        let rf = gather(&self.reference, &idx, model)?;
        let n = batch.len();
        Ok((
            PairLogps {
                policy_chosen: lp.narrow(0, 0, n)?,
                policy_rejected: lp.narrow(0, n, n)?,
                ref_chosen: rf.narrow(0, 0, n)?,
                ref_rejected: rf.narrow(0, n, n)?,
            },
            tokens,
        ))
    }
}

impl Objective for Pairs {
    fn len(&self) -> usize {
        self.seqs.len() / 2
    }

    fn loss(&mut self, model: &TrainModel, batch: &[usize]) -> Result<StepLoss> {
        let (p, tokens) = self.pair_logps(model, batch)?;
        let out = match self.kind {
            PairLoss::Dpo {
                beta,
                label_smoothing,
            } => losses::dpo(&p, beta, label_smoothing)?,
            PairLoss::Ipo { beta } => losses::ipo(&p, beta)?,
            PairLoss::Pro { beta, alpha } => losses::pro_pairwise(&p, beta, alpha)?,
        };
        Ok(StepLoss {
            loss: out.loss,
            metrics: out.metrics,
            tokens,
        })
    }
}
