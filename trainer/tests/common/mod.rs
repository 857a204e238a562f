//! Shared test helpers: tiny random models in Hugging Face layout with a byte tokenizer.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use thresh_models::Family;
use thresh_models::testing::{BYTE_TOKENIZER_VOCAB, TinySpec, write_byte_tokenizer};
use thresh_trainer::model::{Batch, TrainModel, Tuning};

/// Writes a tiny random model of `family` with the byte tokenizer into `dir/name`.
pub fn tiny_model(dir: &Path, name: &str, family: Family) -> PathBuf {
    tiny_model_seeded(dir, name, family, None)
}

/// As [`tiny_model`], with the weights drawn from `seed` (the same model on every run).
pub fn tiny_model_seeded(dir: &Path, name: &str, family: Family, seed: Option<u64>) -> PathBuf {
    let mut spec = TinySpec::new(family);
    spec.seed = seed;
    spec.vocab_size = BYTE_TOKENIZER_VOCAB;
    spec.hidden_size = 32;
    spec.intermediate_size = 48;
    let path = dir.join(name);
    spec.write(&path).unwrap();
    write_byte_tokenizer(&path).unwrap();
    path
}

/// Loads a trainable model.
pub fn load(path: &Path, tuning: Tuning, score: bool) -> TrainModel {
    TrainModel::load(path, tuning, score, 7, &Device::Cpu).unwrap()
}

/// A right-padded batch of byte rows with their prompt lengths.
pub fn batch(rows: &[(&str, usize)]) -> Batch {
    let rows: Vec<(Vec<u32>, usize)> = rows
        .iter()
        .map(|(s, p)| (s.bytes().map(u32::from).collect(), *p))
        .collect();
    Batch::new(&rows, &Device::Cpu).unwrap()
}

/// Largest absolute difference of two tensors.
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    thresh_models::testing::max_abs_diff(a, b).unwrap()
}

/// Sum of squares of a tensor.
pub fn sq_norm(t: &Tensor) -> f32 {
    t.sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
