//! PRO with scalar feedback: N scored responses per prompt.

use crate::error::{Result, TrainError};
use crate::losses;
use crate::model::TrainModel;
use crate::objectives::{Seq, gather, logps};
use crate::train::{Objective, StepLoss};

/// Prompts with `n` scored responses each.
pub struct ScalarPro {
    /// Sequences: response `j` of prompt `i` is `seqs[i n + j]`.
    pub seqs: Vec<Seq>,
    /// Raw scores, same layout.
    pub scores: Vec<f64>,
    /// Reference log-probabilities, same layout.
    pub reference: Vec<f64>,
    /// Responses per prompt.
    pub n: usize,
    /// Inverse temperature.
    pub beta: f64,
    /// Weight of the proximal term.
    pub alpha: f64,
}

impl Objective for ScalarPro {
    fn len(&self) -> usize {
        self.seqs.len() / self.n.max(1)
    }

    fn loss(&mut self, model: &TrainModel, batch: &[usize]) -> Result<StepLoss> {
        if self.n < 2 {
            return Err(TrainError::Config(
                "scalar feedback needs at least two responses per prompt".into(),
            ));
        }
        let n = self.n;
        let idx: Vec<usize> = batch
            .iter()
            .flat_map(|&i| (0..n).map(move |j| i * n + j))
            .collect();
        let (lp, tokens) = logps(model, &self.seqs, &idx)?;
        let shape = (batch.len(), self.n);
        let rf = gather(&self.reference, &idx, model)?.reshape(shape)?;
        let sc = gather(&self.scores, &idx, model)?.reshape(shape)?;
        let out = losses::pro_scalar(&lp.reshape(shape)?, &rf, &sc, self.beta, self.alpha)?;
        Ok(StepLoss {
            loss: out.loss,
            metrics: out.metrics,
            tokens,
        })
    }
}
