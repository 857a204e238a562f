//! Reference log-probabilities, computed once with the initial model and cached on disk so a
//! resumed run (whose model has moved) reuses the original values.

use std::hash::{Hash, Hasher};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::model::save::write_atomic;

#[derive(Serialize, Deserialize)]
struct CacheFile {
    key: u64,
    values: Vec<f64>,
}

/// A stable fingerprint of the sequences the values belong to.
pub fn fingerprint(sequences: &[(Vec<u32>, usize)]) -> u64 {
    // SipHash with fixed keys: stable across processes.
    let mut h = std::hash::DefaultHasher::new();
    sequences.hash(&mut h);
    h.finish()
}

/// The cached values at `path` if they belong to `key`, else `compute()`'s, written to `path`.
pub fn cached(
    path: &Path,
    key: u64,
    compute: impl FnOnce() -> Result<Vec<f64>>,
) -> Result<Vec<f64>> {
    if let Ok(text) = std::fs::read_to_string(path)
        && let Ok(file) = serde_json::from_str::<CacheFile>(&text)
        && file.key == key
    {
        return Ok(file.values);
    }
    let values = compute()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let text = serde_json::to_vec(&CacheFile {
        key,
        values: values.clone(),
    })
    .map_err(|e| TrainError::Config(format!("serialising reference log-probs: {e}")))?;
    write_atomic(path, &text)?;
    Ok(values)
}
