//! Decoder sequence classifiers on tiny random models in Hugging Face layout.

use candle_core::{DType, Device, IndexOp, Tensor};
use thresh_models::config::DecoderConfig;
use thresh_models::loader::safetensors_files;
use thresh_models::testing::{TinySpec, write_tiny_classifier};
use thresh_models::{Decoder, Family, LoadOptions, WeightFile};
use thresh_reward::{DecoderClassifier, RewardError, RewardInput, RewardModel, load};

fn pairs() -> Vec<RewardInput> {
    vec![
        RewardInput::new("What is 2+2?", "4"),
        RewardInput::new(
            "Name a colour.",
            "Blue, like the sky on a clear summer day, or the sea.",
        ),
        RewardInput::new(
            "Hi",
            "Hello! How can I help you today? I can answer questions",
        ),
        RewardInput::new("Say nothing.", ""),
    ]
}

#[test]
fn scores_match_a_hand_computation_and_ignore_batch_mates() {
    for family in [Family::Llama, Family::Qwen2, Family::Qwen3] {
        let dir = tempfile::tempdir().unwrap();
        let score_w = write_tiny_classifier(&TinySpec::new(family), dir.path(), 1).unwrap();
        let rm = DecoderClassifier::load(dir.path(), &LoadOptions::default()).unwrap();
        let batch = rm.score(&pairs()).unwrap();

        // By hand: our decoder's final hidden state at the last token, dotted with score.weight.
        let cfg = DecoderConfig::from_hf_json(&dir.path().join("config.json")).unwrap();
        let mut w = WeightFile::safetensors(
            &safetensors_files(dir.path()).unwrap(),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        let dec = Decoder::load_backbone(&cfg, &mut w, DType::F32, &Device::Cpu, None).unwrap();
        for (i, p) in pairs().iter().enumerate() {
            let (ids, truncated) = rm.encode(p).unwrap();
            assert!(!truncated);
            assert_eq!(batch[i].tokens, ids.len());
            let x = Tensor::new(ids.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let h = dec
                .forward_hidden(&x, None)
                .unwrap()
                .i((0, ids.len() - 1))
                .unwrap();
            let expect = (h * score_w.i(0).unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                (batch[i].score - expect).abs() < 1e-4,
                "{family:?} pair {i}: {} vs {expect}",
                batch[i].score
            );
            // Alone, the pair gets the same score as in the mixed-length batch.
            let alone = rm.score(std::slice::from_ref(p)).unwrap()[0].score;
            // Bit for bit: attention never reads a row's padding and every op is row-wise.
            assert_eq!(alone, batch[i].score, "{family:?} pair {i}");
        }
        // A budget that forces one pair per batch changes nothing.
        let small = DecoderClassifier::load(dir.path(), &LoadOptions::default())
            .unwrap()
            .with_token_budget(1);
        for (a, b) in small.score(&pairs()).unwrap().iter().zip(&batch) {
            assert!((a.score - b.score).abs() < 1e-5);
        }
    }
}

#[test]
fn truncation_keeps_the_end_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_classifier(&TinySpec::new(Family::Llama), dir.path(), 1).unwrap();
    let rm = DecoderClassifier::load(dir.path(), &LoadOptions::default())
        .unwrap()
        .with_max_len(40);
    let long = RewardInput::new(
        "Tell me a story.",
        "Once upon a time ".repeat(10) + "THE END",
    );
    let (ids, truncated) = rm.encode(&long).unwrap();
    assert!(truncated);
    assert_eq!(ids.len(), 40);
    let full = DecoderClassifier::load(dir.path(), &LoadOptions::default()).unwrap();
    let (all, _) = full.encode(&long).unwrap();
    assert_eq!(ids, all[all.len() - 40..], "the end is kept");
    let s = rm.score(&[long]).unwrap()[0];
    assert!(s.truncated && s.tokens == 40);
}

#[test]
fn bad_models_and_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_classifier(&TinySpec::new(Family::Llama), dir.path(), 1).unwrap();
    let rm = load(dir.path(), None, &LoadOptions::default()).unwrap();
    let e = rm.score(&[]).unwrap_err();
    assert!(
        matches!(e, RewardError::InvalidInput(_)) && e.to_string().contains("empty"),
        "{e}"
    );
    let e = rm.score(&[RewardInput::new("  ", "x")]).unwrap_err();
    assert!(e.to_string().contains("empty prompt"), "{e}");

    // Missing score.weight.
    let mut w: std::collections::HashMap<String, Tensor> =
        candle_core::safetensors::load(dir.path().join("model.safetensors"), &Device::Cpu).unwrap();
    w.remove("score.weight");
    candle_core::safetensors::save(&w, dir.path().join("model.safetensors")).unwrap();
    let e = load(dir.path(), None, &LoadOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("score.weight"), "{e}");

    // Unsupported architecture.
    let cfg_path = dir.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["architectures"] = serde_json::json!(["GPT2ForSequenceClassification"]);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let e = load(dir.path(), None, &LoadOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(e, RewardError::UnsupportedArchitecture { .. }),
        "{e}"
    );
    assert!(
        e.to_string().contains("GPT2ForSequenceClassification"),
        "{e}"
    );
}
