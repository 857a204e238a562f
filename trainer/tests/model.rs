//! The trainer's differentiable decoder against the inference decoder, gradients through
//! every trainable variable, and LoRA at initialisation.

mod common;

use candle_core::{IndexOp, Tensor};
use common::{batch, load, max_diff, sq_norm, tiny_model};
use thresh_models::{Family, LoadOptions};
use thresh_trainer::model::Tuning;

const ROWS: [(&str, usize); 3] = [
    ("the quick brown fox", 4),
    ("jumps", 2),
    ("over the lazy dog!", 9),
];

#[test]
fn logits_match_the_inference_decoder_for_every_family() {
    let dir = tempfile::tempdir().unwrap();
    for family in [
        Family::Llama,
        Family::Mistral,
        Family::Qwen2,
        Family::Qwen3,
        Family::Gemma,
    ] {
        let path = tiny_model(dir.path(), &format!("{family:?}"), family);
        let model = load(&path, Tuning::Full, false);
        let reference =
            thresh_models::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
        let b = batch(&ROWS);
        let logits = model.logits(&b).unwrap();
        for (r, (text, _)) in ROWS.iter().enumerate() {
            let ids: Vec<u32> = text.bytes().map(u32::from).collect();
            let n = ids.len();
            let ids = Tensor::from_vec(ids, (1, n), &candle_core::Device::Cpu).unwrap();
            let want = reference
                .decoder
                .forward_all(&ids, None)
                .unwrap()
                .i(0)
                .unwrap();
            let got = logits.i(r).unwrap().narrow(0, 0, n).unwrap();
            let d = max_diff(&got, &want);
            assert!(d < 1e-4, "{family:?} row {r}: max logit difference {d}");
        }
    }
}

#[test]
fn response_logps_mask_prompt_and_padding() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model(dir.path(), "llama", Family::Llama);
    let model = load(&path, Tuning::Full, false);
    let b = batch(&ROWS);
    let logps = model.sequence_logps(&b).unwrap().to_vec1::<f32>().unwrap();
    // By hand from the logits: log-softmax of each response token.
    let logits = model.logits(&b).unwrap();
    let lsm = candle_nn::ops::log_softmax(&logits, candle_core::D::Minus1).unwrap();
    for (r, (text, prompt)) in ROWS.iter().enumerate() {
        let ids: Vec<u32> = text.bytes().map(u32::from).collect();
        let mut want = 0f32;
        for (pos, &id) in ids.iter().enumerate().skip(*prompt) {
            want += lsm
                .i((r, pos - 1, id as usize))
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
        }
        assert!(
            (logps[r] - want).abs() < 1e-4,
            "row {r}: {} vs {want}",
            logps[r]
        );
        assert!(logps[r] < 0.0);
    }
}

fn grads_all_nonzero(model: &thresh_trainer::model::TrainModel, loss: &Tensor) -> Vec<String> {
    let grads = loss.backward().unwrap();
    model
        .vars()
        .iter()
        .filter(|(_, v)| grads.get(v.as_tensor()).map(sq_norm).unwrap_or(0.0) == 0.0)
        .map(|(n, _)| n.clone())
        .collect()
}

#[test]
fn every_trainable_variable_gets_a_gradient_in_full_fine_tuning() {
    let dir = tempfile::tempdir().unwrap();
    for family in [Family::Llama, Family::Qwen2, Family::Qwen3, Family::Gemma] {
        let path = tiny_model(dir.path(), &format!("{family:?}"), family);
        let model = load(&path, Tuning::Full, false);
        let loss = model
            .sequence_logps(&batch(&ROWS))
            .unwrap()
            .sum_all()
            .unwrap();
        let missing = grads_all_nonzero(&model, &loss);
        assert!(
            missing.is_empty(),
            "{family:?}: no gradient for {missing:?}"
        );
        assert!(model.vars().len() > 10);
    }
}

#[test]
fn reward_head_and_backbone_get_gradients() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model(dir.path(), "llama", Family::Llama);
    let model = load(&path, Tuning::Full, true);
    let loss = model.rewards(&batch(&ROWS)).unwrap().sum_all().unwrap();
    let missing = grads_all_nonzero(&model, &loss);
    // The LM head is not on the reward path.
    assert_eq!(missing, vec!["lm_head.weight".to_string()]);
}

#[test]
fn lora_starts_at_the_base_model_and_every_adapter_trains() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model(dir.path(), "qwen2", Family::Qwen2);
    let base = load(&path, Tuning::Full, false);
    let lora = load(
        &path,
        Tuning::Lora {
            rank: 4,
            alpha: 8.0,
        },
        false,
    );
    assert_eq!(lora.vars().len(), 2 * 7 * 2);
    let b = batch(&ROWS);
    let d = max_diff(&base.logits(&b).unwrap(), &lora.logits(&b).unwrap());
    assert_eq!(d, 0.0, "LoRA with B = 0 must equal the base model");
    // With B = 0 only B receives gradient (dL/dA = scale B^T ...); every B does.
    let loss = lora.sequence_logps(&b).unwrap().sum_all().unwrap();
    let missing = grads_all_nonzero(&lora, &loss);
    assert!(
        missing.iter().all(|n| n.ends_with("lora_A.weight")),
        "{missing:?}"
    );
    assert!(
        lora.vars()
            .iter()
            .filter(|(n, _)| n.ends_with("lora_B.weight"))
            .all(|(n, _)| !missing.contains(n))
    );
    // Once B moves off zero, A receives gradient too.
    for (name, v) in lora.vars() {
        if name.ends_with("lora_B.weight") {
            v.set(&Tensor::randn(0f32, 0.05, v.shape(), v.device()).unwrap())
                .unwrap();
        }
    }
    let loss = lora.sequence_logps(&b).unwrap().sum_all().unwrap();
    let missing = grads_all_nonzero(&lora, &loss);
    assert!(missing.is_empty(), "no gradient for {missing:?}");
    // Merged weights reproduce the adapted model.
    let merged = lora.merged_weights().unwrap();
    let q = "model.layers.0.self_attn.q_proj.weight";
    assert!(max_diff(&merged[q], &base.merged_weights().unwrap()[q]) > 0.0);
}
