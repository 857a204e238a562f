//! Supervised fine-tuning: token cross-entropy on the responses (also the Aligner's
//! correction training).

use crate::error::Result;
use crate::losses;
use crate::model::{Batch, TrainModel};
use crate::objectives::Seq;
use crate::train::{Objective, StepLoss};

/// Cross-entropy of each sequence's response given its prompt.
pub struct Sft {
    /// The sequences, in the order the cursor addresses them.
    pub seqs: Vec<Seq>,
}

impl Objective for Sft {
    fn len(&self) -> usize {
        self.seqs.len()
    }

    fn loss(&mut self, model: &TrainModel, batch: &[usize]) -> Result<StepLoss> {
        let rows: Vec<Seq> = batch.iter().map(|&i| self.seqs[i].clone()).collect();
        let b = Batch::new(&rows, model.device())?;
        let logits = model.logits(&b)?;
        let (targets, mask) = b.targets()?;
        let out = losses::sft(&logits, &targets, &mask)?;
        Ok(StepLoss {
            loss: out.loss,
            metrics: out.metrics,
            tokens: b.lengths.iter().sum(),
        })
    }
}
