//! Checkpoints: trainable weights, optimiser state, step, data position and loss state,
//! written to a temporary directory and renamed into place.
//!
//! Layout of `<out>/checkpoint/`: `tensors.safetensors` (`param/<name>`, `adam_m/<name>`,
//! `sq_avg/<name>`) and `state.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::model::TrainModel;
use crate::model::save::{replace_dir, temp_sibling};
use crate::optim::Optimizer;
use crate::train::cursor::Cursor;

/// Everything but the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Optimiser steps completed.
    pub step: u64,
    /// Data position after the last completed step.
    pub cursor: Cursor,
    /// State a loss carries between steps (KLDO's moving average), as JSON.
    pub loss_state: serde_json::Value,
    /// Names of the trainable variables, in order, to catch a mismatched resume.
    pub vars: Vec<String>,
}

/// The checkpoint directory of a run's output directory.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a checkpoint of `model` and `opt` at `dir` atomically.
pub fn save(
    dir: &Path,
    model: &TrainModel,
    opt: &Optimizer,
    state: &CheckpointState,
) -> Result<()> {
    let tmp = temp_sibling(dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for (i, (name, var)) in model.vars().iter().enumerate() {
        tensors.insert(format!("param/{name}"), var.as_tensor().detach());
        if let Some(m) = opt.m.get(i) {
            tensors.insert(format!("adam_m/{name}"), m.clone());
        }
        if let Some(v) = opt.v.get(i) {
            tensors.insert(format!("sq_avg/{name}"), v.clone());
        }
    }
    candle_core::safetensors::save(&tensors, tmp.join("tensors.safetensors"))?;
    let state_path = tmp.join("state.json");
    let mut state = state.clone();
    state.vars = model.vars().iter().map(|(n, _)| n.clone()).collect();
    let json = serde_json::json!({ "state": state, "optimizer_step": opt.step });
    std::fs::write(
        &state_path,
        serde_json::to_vec_pretty(&json).unwrap_or_default(),
    )
    .map_err(io(&state_path))?;
    replace_dir(&tmp, dir)
}

/// The checkpoint to resume from: `dir`, or the previous one left by an interrupted swap.
pub fn find(dir: &Path) -> Option<PathBuf> {
    if dir.join("state.json").exists() {
        return Some(dir.to_path_buf());
    }
    let old = dir.with_file_name(format!(
        "{}.old",
        dir.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    old.join("state.json").exists().then_some(old)
}

/// Restores weights and optimiser state from the checkpoint at `dir` into `model` and `opt`.
pub fn load(dir: &Path, model: &TrainModel, opt: &mut Optimizer) -> Result<CheckpointState> {
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
    let bad = |e: String| TrainError::Config(format!("{}: {e}", state_path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let state: CheckpointState =
        serde_json::from_value(json["state"].clone()).map_err(|e| bad(e.to_string()))?;
    let names: Vec<String> = model.vars().iter().map(|(n, _)| n.clone()).collect();
    if state.vars != names {
        return Err(bad(
            "the checkpoint's trainable variables differ from this run's (model, --lora-rank or command changed?)".into(),
        ));
    }
    let device: &Device = model.device();
    let tensors = candle_core::safetensors::load(dir.join("tensors.safetensors"), device)?;
    let get = |key: String| {
        tensors
            .get(&key)
            .cloned()
            .ok_or_else(|| bad(format!("tensor {key} missing from tensors.safetensors")))
    };
    for (i, (name, var)) in model.vars().iter().enumerate() {
        var.set(&get(format!("param/{name}"))?)?;
        if i < opt.m.len() {
            opt.m[i] = get(format!("adam_m/{name}"))?;
        }
        if i < opt.v.len() {
            opt.v[i] = get(format!("sq_avg/{name}"))?;
        }
    }
    opt.step = json["optimizer_step"].as_u64().unwrap_or(state.step);
    Ok(state)
}
