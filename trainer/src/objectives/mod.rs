//! The training objectives behind the commands: which sequences a batch runs, which loss of
//! [`crate::losses`] it feeds, and the cached reference log-probabilities.

pub mod binary;
pub mod pairs;
pub mod reward;
pub mod scalar;
pub mod sft;

use std::path::Path;

use candle_core::Tensor;

use crate::error::Result;
use crate::model::{Batch, TrainModel};
use crate::train::reference;

/// A tokenised sequence and the length of its prompt.
pub type Seq = (Vec<u32>, usize);

/// Runs `seqs` (by index) through the model as one batch and returns their response
/// log-probabilities `(B,)` and the number of tokens processed.
pub fn logps(model: &TrainModel, seqs: &[Seq], idx: &[usize]) -> Result<(Tensor, usize)> {
    let rows: Vec<Seq> = idx.iter().map(|&i| seqs[i].clone()).collect();
    let batch = Batch::new(&rows, model.device())?;
    let tokens = batch.lengths.iter().sum();
    Ok((model.sequence_logps(&batch)?, tokens))
}

/// Reference log-probabilities of every sequence under `model` as it is now (before
/// training), cached in `cache` (recomputed when the sequences differ from the cached ones).
pub fn reference_logps(
    model: &TrainModel,
    seqs: &[Seq],
    batch_size: usize,
    cache: &Path,
) -> Result<Vec<f64>> {
    reference::cached(cache, reference::fingerprint(seqs), || {
        tracing::info!(
            sequences = seqs.len(),
            "computing reference log-probabilities"
        );
        // Drawn only when stderr is a terminal.
        let bar = crate::train::metrics::progress_bar(seqs.len() as u64, 0, true);
        let mut out = Vec::with_capacity(seqs.len());
        let idx: Vec<usize> = (0..seqs.len()).collect();
        for chunk in idx.chunks(batch_size.max(1)) {
            let (lp, _) = logps(model, seqs, chunk)?;
            out.extend(lp.detach().to_vec1::<f32>()?.into_iter().map(f64::from));
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok(out)
    })
}

/// The cached values of `idx` as a `(B,)` tensor on the model's device.
pub fn gather(values: &[f64], idx: &[usize], model: &TrainModel) -> Result<Tensor> {
    let v: Vec<f32> = idx.iter().map(|&i| values[i] as f32).collect();
    Ok(Tensor::from_vec(v, idx.len(), model.device())?)
}
