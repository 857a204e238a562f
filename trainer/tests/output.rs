//! Saved models load with the loaders `thresh serve` uses and give the trainer's numbers:
//! policies through `thresh_models::load`, reward models through `thresh_reward::load`.

mod common;

use candle_core::{IndexOp, Tensor};
use common::{load, max_diff, tiny_model};
use thresh_models::{Family, LoadOptions};
use thresh_reward::RewardInput;
use thresh_trainer::model::{TrainModel, Tuning};

fn perturb(model: &TrainModel) {
    // Stand-in for training: move every trainable variable off its initial value.
    for (_, v) in model.vars() {
        let noise = Tensor::randn(0f32, 0.02, v.shape(), v.device()).unwrap();
        v.set(&(v.as_tensor() + noise).unwrap()).unwrap();
    }
}

fn assert_served_logits_match(model: &TrainModel, out: &std::path::Path, tol: f32) {
    model.save_pretrained(out).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let tc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert!(
        tc["chat_template"].is_string(),
        "chat template not carried over"
    );
    let served = thresh_models::load(out.to_str().unwrap(), &LoadOptions::default()).unwrap();
    assert!(served.chat_template.is_some());
    let text = "It is a truth universally acknowledged";
    let ids: Vec<u32> = served.tokenizer.encode(text, false).unwrap();
    let n = ids.len();
    let t = Tensor::from_vec(ids.clone(), (1, n), &candle_core::Device::Cpu).unwrap();
    let want = served.decoder.forward_all(&t, None).unwrap().i(0).unwrap();
    let b = thresh_trainer::model::Batch::new(&[(ids, 0)], &candle_core::Device::Cpu).unwrap();
    let got = model.logits(&b).unwrap().i(0).unwrap();
    let d = max_diff(&got, &want);
    assert!(d < tol, "served logits differ from the trainer's by {d}");
}

#[test]
fn trained_policies_load_in_serve_with_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    for (family, tuning) in [
        (Family::Llama, Tuning::Full),
        (
            Family::Qwen2,
            Tuning::Lora {
                rank: 4,
                alpha: 8.0,
            },
        ),
        (
            Family::Gemma,
            Tuning::Lora {
                rank: 2,
                alpha: 2.0,
            },
        ),
    ] {
        let src = tiny_model(dir.path(), &format!("{family:?}"), family);
        let model = load(&src, tuning, false);
        perturb(&model);
        assert_served_logits_match(&model, &dir.path().join(format!("{family:?}-out")), 1e-4);
    }
}

#[test]
fn a_gguf_model_trains_and_saves_as_a_hugging_face_directory() {
    let gguf = thresh_models::testing::smollm2_gguf();
    let model = TrainModel::load(
        &gguf,
        Tuning::Lora {
            rank: 2,
            alpha: 4.0,
        },
        false,
        1,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    perturb(&model);
    let dir = tempfile::tempdir().unwrap();
    // 30 layers and logits of magnitude ~20 in f32: summation order alone moves them ~1e-4.
    assert_served_logits_match(&model, &dir.path().join("smol"), 1e-3);
}

#[test]
fn trained_reward_models_load_in_the_reward_crate_with_the_same_scores() {
    let dir = tempfile::tempdir().unwrap();
    let src = tiny_model(dir.path(), "llama", Family::Llama);
    let model = load(
        &src,
        Tuning::Lora {
            rank: 2,
            alpha: 4.0,
        },
        true,
    );
    perturb(&model);
    let out = dir.path().join("rm");
    model.save_pretrained(&out).unwrap();
    let served = thresh_reward::load(&out, None, &LoadOptions::default()).unwrap();
    let inputs = [
        RewardInput::new("Who wrote Emma?", "Jane Austen."),
        RewardInput::new("Hi", "Hello there, friend"),
    ];
    let scores: Vec<f32> = served
        .score(&inputs)
        .unwrap()
        .iter()
        .map(|s| s.score)
        .collect();
    // The trainer scores the same token ids the reward crate renders.
    let rm = thresh_reward::DecoderClassifier::load(&out, &LoadOptions::default()).unwrap();
    let rows: Vec<(Vec<u32>, usize)> = inputs
        .iter()
        .map(|i| (rm.encode(i).unwrap().0, 0))
        .collect();
    let b = thresh_trainer::model::Batch::new(&rows, &candle_core::Device::Cpu).unwrap();
    let mine = model.rewards(&b).unwrap().to_vec1::<f32>().unwrap();
    for (a, b) in scores.iter().zip(&mine) {
        assert!((a - b).abs() < 1e-4, "served {a} vs trainer {b}");
    }
    // And the saved classifier reloads into the trainer with its head.
    let again = load(&out, Tuning::Full, true);
    let d = max_diff(&again.rewards(&b).unwrap(), &model.rewards(&b).unwrap());
    assert!(d < 1e-4);
}
