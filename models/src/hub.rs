//! Hub downloads, for users with network access to the Hugging Face hub.

use std::path::PathBuf;

use crate::error::{ModelError, Result};

/// Downloads the files of a model repository and returns the local snapshot directory.
pub fn download(repo_id: &str) -> Result<PathBuf> {
    let api = hf_hub::api::sync::Api::new().map_err(|e| ModelError::Tokenizer(e.to_string()))?;
    let repo = api.model(repo_id.to_string());
    let fetch = |name: &str| repo.get(name);
    let config = fetch("config.json").map_err(|e| ModelError::MissingFile {
        path: PathBuf::from(repo_id),
        what: format!("config.json from the hub: {e}"),
    })?;
    for optional in [
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "model.safetensors",
    ] {
        let _ = fetch(optional);
    }
    if let Ok(index) = fetch("model.safetensors.index.json") {
        let text = std::fs::read_to_string(&index).map_err(|e| ModelError::bad_file(&index, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::bad_file(&index, e))?;
        if let Some(map) = v.get("weight_map").and_then(|m| m.as_object()) {
            let mut shards: Vec<&str> = map.values().filter_map(|f| f.as_str()).collect();
            shards.sort_unstable();
            shards.dedup();
            for s in shards {
                fetch(s).map_err(|e| ModelError::MissingFile {
                    path: PathBuf::from(s),
                    what: format!("weight shard from the hub: {e}"),
                })?;
            }
        }
    }
    config
        .parent()
        .map(|p| p.to_path_buf())
        .ok_or_else(|| ModelError::bad_file(&config, "no parent directory"))
}
