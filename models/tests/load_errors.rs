//! Bad model files give errors that name the file and the tensor, never a panic.

use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use thresh_models::testing::TinySpec;
use thresh_models::{Family, LoadOptions, ModelError, load};

fn tiny_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    TinySpec::new(Family::Llama).write(dir.path()).unwrap();
    dir
}

fn load_dir(dir: &std::path::Path) -> Result<thresh_models::LoadedModel, ModelError> {
    load(dir.to_str().unwrap(), &LoadOptions::default())
}

#[test]
fn missing_path_and_missing_files_are_named() {
    let err = load("/nonexistent/model", &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/model"), "{err}");

    let dir = tiny_dir();
    // Weights load, but there is no tokenizer.json.
    let err = load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, ModelError::MissingFile { .. }), "{err}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");

    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = load_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn corrupt_files_are_named() {
    let dir = tiny_dir();
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"not safetensors at all",
    )
    .unwrap();
    let err = load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, ModelError::BadFile { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    std::fs::write(dir.path().join("config.json"), b"{ this is not json").unwrap();
    let err = load_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("config.json"), "{err}");

    let gguf = dir.path().join("broken.gguf");
    std::fs::write(&gguf, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    let err = load(gguf.to_str().unwrap(), &LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("broken.gguf"), "{err}");
}

#[test]
fn unsupported_architecture_is_named() {
    let dir = tiny_dir();
    let mut cfg = TinySpec::new(Family::Llama).config_json();
    cfg["model_type"] = "gpt_neox".into();
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let err = load_dir(dir.path()).unwrap_err();
    assert!(
        matches!(err, ModelError::UnsupportedArchitecture { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("gpt_neox"), "{err}");
}

#[test]
fn wrong_shape_and_missing_tensor_are_named() {
    let dir = tiny_dir();
    let spec = TinySpec::new(Family::Llama);
    let mut w: HashMap<String, Tensor> = spec.weights().unwrap();
    let name = "model.layers.1.mlp.up_proj.weight";
    w.insert(
        name.into(),
        Tensor::zeros((95, 64), DType::F32, &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&w, dir.path().join("model.safetensors")).unwrap();
    let err = load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, ModelError::ShapeMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(name) && msg.contains("model.safetensors") && msg.contains("[96, 64]"),
        "{msg}"
    );

    w.remove("model.layers.0.self_attn.k_proj.weight");
    candle_core::safetensors::save(&w, dir.path().join("model.safetensors")).unwrap();
    let err = load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, ModelError::MissingTensor { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("model.layers.0.self_attn.k_proj.weight"),
        "{err}"
    );
}

#[test]
fn inconsistent_config_is_rejected() {
    let dir = tiny_dir();
    let mut cfg = TinySpec::new(Family::Llama).config_json();
    cfg["num_key_value_heads"] = 3.into();
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    let err = load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, ModelError::InvalidConfig { .. }), "{err}");
}
