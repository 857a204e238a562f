//! Minibatches balanced between two classes (KLDO's half-aligned, half-unaligned batches).

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::error::{Result, TrainError};

/// One epoch of index batches, each half from the entries of `flags` that are `true` and
/// half from those that are `false`.
///
/// The larger class is covered exactly once, in an order shuffled by `seed`; the smaller
/// class is cycled (reshuffled on each pass) to fill its halves, so it is oversampled rather
/// than the larger one being cut. Every batch has `batch_size` entries except perhaps the
/// last, which is still balanced. Within a batch the `true` indices come first. The same
/// `seed` gives the same batches (use e.g. `seed + epoch` for a new order each epoch).
///
/// Errors when `batch_size` is odd or 0, or when either class is empty.
pub fn balanced_batches(flags: &[bool], batch_size: usize, seed: u64) -> Result<Vec<Vec<usize>>> {
    if batch_size == 0 || batch_size % 2 == 1 {
        return Err(TrainError::Config(format!(
            "a balanced batch size must be even and positive, got {batch_size}"
        )));
    }
    let yes: Vec<usize> = (0..flags.len()).filter(|&i| flags[i]).collect();
    let no: Vec<usize> = (0..flags.len()).filter(|&i| !flags[i]).collect();
    if yes.is_empty() || no.is_empty() {
        return Err(TrainError::NoExamples(format!(
            "balanced batches need both classes, got {} of one and {} of the other",
            yes.len(),
            no.len()
        )));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut large, small, large_first) = if yes.len() >= no.len() {
        (yes, no, true)
    } else {
        (no, yes, false)
    };
    large.shuffle(&mut rng);
    let half = batch_size / 2;
    let mut pool: Vec<usize> = Vec::new();
    let mut out = Vec::with_capacity(large.len().div_ceil(half));
    for chunk in large.chunks(half) {
        let mut others = Vec::with_capacity(chunk.len());
        while others.len() < chunk.len() {
            if pool.is_empty() {
                pool = small.clone();
                pool.shuffle(&mut rng);
            }
            others.extend(pool.pop());
        }
        let batch = if large_first {
            [chunk.to_vec(), others].concat()
        } else {
            [others, chunk.to_vec()].concat()
        };
        out.push(batch);
    }
    Ok(out)
}
