//! Reward modelling: Bradley-Terry on the score head's values for chosen and rejected.

use candle_core::Tensor;

use crate::error::Result;
use crate::losses;
use crate::model::{Batch, TrainModel};
use crate::train::{Objective, StepLoss};

/// Pairs of (chosen, rejected) reward-model inputs.
pub struct Reward {
    /// Token ids of each pair's chosen and rejected rendering.
    pub pairs: Vec<(Vec<u32>, Vec<u32>)>,
}

/// Scores `(chosen, rejected)` of the pairs `idx` in one forward pass.
pub fn score_pairs(
    model: &TrainModel,
    pairs: &[(Vec<u32>, Vec<u32>)],
    idx: &[usize],
) -> Result<(Tensor, Tensor, usize)> {
    let mut rows = Vec::with_capacity(2 * idx.len());
    rows.extend(idx.iter().map(|&i| (pairs[i].0.clone(), 0)));
    rows.extend(idx.iter().map(|&i| (pairs[i].1.clone(), 0)));
    let b = Batch::new(&rows, model.device())?;
    let r = model.rewards(&b)?;
    let n = idx.len();
    Ok((
        r.narrow(0, 0, n)?,
        r.narrow(0, n, n)?,
        b.lengths.iter().sum(),
    ))
}

impl Objective for Reward {
    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn loss(&mut self, model: &TrainModel, batch: &[usize]) -> Result<StepLoss> {
        let (rc, rr, tokens) = score_pairs(model, &self.pairs, batch)?;
        let out = losses::bradley_terry(&rc, &rr)?;
        Ok(StepLoss {
            loss: out.loss,
            metrics: out.metrics,
            tokens,
        })
    }
}
