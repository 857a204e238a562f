//! The Hugging Face and GGUF readers agree on what each family fixes.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::{GgmlDType, gguf_file};

use super::{Activation, DecoderConfig, Family};
use crate::error::ModelError;
use crate::testing::TinySpec;
use crate::weights::gguf_name;

/// The metadata and tensor list llama.cpp's converter would write for `spec` (no data).
fn gguf_of(spec: &TinySpec) -> gguf_file::Content {
    use gguf_file::Value;
    let arch = spec.family.traits().model_type;
    let mut metadata = HashMap::from([
        (
            "general.architecture".to_string(),
            Value::String(arch.into()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
    ]);
    let head_dim = spec.hidden_size / spec.num_heads;
    for (key, v) in [
        ("embedding_length", spec.hidden_size),
        ("feed_forward_length", spec.intermediate_size),
        ("block_count", spec.num_layers),
        ("attention.head_count", spec.num_heads),
        ("attention.head_count_kv", spec.num_kv_heads),
        ("attention.key_length", head_dim),
        ("context_length", spec.max_position_embeddings),
    ] {
        metadata.insert(format!("{arch}.{key}"), Value::U32(v as u32));
    }
    metadata.insert(
        format!("{arch}.attention.layer_norm_rms_epsilon"),
        Value::F32(1e-5),
    );
    metadata.insert(format!("{arch}.rope.freq_base"), Value::F32(10_000.0));
    let tensor_infos = spec
        .weights()
        .unwrap()
        .into_iter()
        .map(|(name, t)| {
            let info = gguf_file::TensorInfo {
                ggml_dtype: GgmlDType::F32,
                shape: t.shape().clone(),
                offset: 0,
            };
            (gguf_name(&name).unwrap(), info)
        })
        .collect();
    gguf_file::Content {
        magic: gguf_file::VersionedMagic::GgufV3,
        metadata,
        tensor_infos,
        tensor_data_offset: 0,
    }
}

/// `spec` read through both paths: (Hugging Face, GGUF).
fn both(spec: &TinySpec) -> (DecoderConfig, DecoderConfig) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, spec.config_json().to_string()).unwrap();
    let hf = DecoderConfig::from_hf_json(&path).unwrap();
    let gguf = DecoderConfig::from_gguf(&gguf_of(spec), Path::new("tiny.gguf")).unwrap();
    (hf, gguf)
}

#[test]
fn hf_and_gguf_read_the_same_model_alike() {
    for family in Family::ALL {
        let (hf, gguf) = both(&TinySpec::new(family));
        // The formats differ in three places only: GGUF stores epsilon as f32, offset norm
        // weights with the one added, and no sliding window this runtime reads.
        assert!(
            (gguf.rms_norm_eps - hf.rms_norm_eps).abs() < 1e-10,
            "{family:?}"
        );
        let expected = DecoderConfig {
            rms_norm_eps: gguf.rms_norm_eps,
            norm_weight_offset: false,
            sliding_window: None,
            ..hf.clone()
        };
        assert_eq!(gguf, expected, "{family:?}");
        assert_eq!(hf.norm_weight_offset, family == Family::Gemma, "{family:?}");
        // TinySpec writes sliding_window 4096 with use_sliding_window false.
        let window = (family == Family::Mistral).then_some(4096);
        assert_eq!(hf.sliding_window, window, "{family:?}");
    }
}

#[test]
fn both_readers_take_the_family_decisions_from_one_table() {
    for family in Family::ALL {
        let traits = family.traits();
        let (hf, gguf) = both(&TinySpec::new(family));
        for cfg in [&hf, &gguf] {
            assert_eq!(cfg.family, family);
            assert_eq!(cfg.activation, traits.activation, "{family:?}");
            assert_eq!(cfg.scale_embeddings, traits.scale_embeddings, "{family:?}");
            assert_eq!(cfg.qk_norm, traits.qk_norm, "{family:?}");
            let bias = traits.attention_bias.unwrap_or((false, false));
            assert_eq!((cfg.qkv_bias, cfg.o_bias), bias, "{family:?}");
        }
        assert_eq!(hf.norm_weight_offset, traits.norm_weight_offset);
    }
}

#[test]
fn the_table_holds_each_familys_known_switches() {
    let gemma = Family::Gemma.traits();
    assert_eq!(gemma.activation, Activation::GeluTanh);
    assert!(gemma.scale_embeddings && gemma.norm_weight_offset && gemma.tie_word_embeddings);
    assert_eq!(Family::Qwen2.traits().attention_bias, Some((true, false)));
    assert!(Family::Qwen3.traits().qk_norm);
    for family in [Family::Llama, Family::Mistral, Family::Qwen2, Family::Qwen3] {
        let t = family.traits();
        assert_eq!(t.activation, Activation::Silu, "{family:?}");
        assert!(!t.scale_embeddings && !t.norm_weight_offset && !t.tie_word_embeddings);
    }
}

#[test]
fn a_config_silent_on_tying_gets_the_familys_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    for (family, tied) in [(Family::Gemma, true), (Family::Llama, false)] {
        let mut json = TinySpec::new(family).config_json();
        json.as_object_mut().unwrap().remove("tie_word_embeddings");
        std::fs::write(&path, json.to_string()).unwrap();
        let cfg = DecoderConfig::from_hf_json(&path).unwrap();
        assert_eq!(cfg.tie_word_embeddings, tied, "{family:?}");
    }
}

#[test]
fn qwen_windows_apply_only_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    for (enabled, window) in [(false, None), (true, Some(4096))] {
        let mut json = TinySpec::new(Family::Qwen2).config_json();
        json["use_sliding_window"] = enabled.into();
        std::fs::write(&path, json.to_string()).unwrap();
        let cfg = DecoderConfig::from_hf_json(&path).unwrap();
        assert_eq!(cfg.sliding_window, window);
    }
}

#[test]
fn an_unknown_activation_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    let mut json = TinySpec::new(Family::Llama).config_json();
    json["hidden_act"] = "relu".into();
    std::fs::write(&path, json.to_string()).unwrap();
    let err = DecoderConfig::from_hf_json(&path).unwrap_err();
    assert!(err.to_string().contains("\"relu\""), "{err}");
}

#[test]
fn an_unknown_gguf_architecture_is_refused() {
    let mut content = gguf_of(&TinySpec::new(Family::Llama));
    content.metadata.insert(
        "general.architecture".into(),
        gguf_file::Value::String("phi3".into()),
    );
    let err = DecoderConfig::from_gguf(&content, Path::new("m.gguf")).unwrap_err();
    assert!(
        matches!(&err, ModelError::UnsupportedArchitecture { arch, .. } if arch == "phi3"),
        "{err}"
    );
}

#[test]
fn a_gguf_without_a_shape_key_names_it() {
    let mut content = gguf_of(&TinySpec::new(Family::Qwen3));
    content.metadata.remove("qwen3.block_count");
    let err = DecoderConfig::from_gguf(&content, Path::new("m.gguf")).unwrap_err();
    assert!(err.to_string().contains("qwen3.block_count"), "{err}");
}
