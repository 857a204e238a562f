//! ArmoRM's multi-objective head (`LlamaForRewardModelWithGating`) on a tiny random Llama in
//! Hugging Face layout with a ChatML byte tokenizer: scores equal a hand computation of the
//! original modeling code (regression at the last token, reward transform, gating MLP on the
//! prompt's last token, temperature softmax times logit scale), and ignore batch mates.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use thresh_models::config::DecoderConfig;
use thresh_models::loader::safetensors_files;
use thresh_models::testing::{BYTE_TOKENIZER_VOCAB, TinySpec, write_byte_tokenizer};
use thresh_models::{ChatMessage, Decoder, Family, LoadOptions, WeightFile};
use thresh_reward::{ArmoReward, Prompt, RewardInput, load};

const K: usize = 5;
const GATING_DIM: usize = 16;
const N_HIDDEN: usize = 2;
const TEMPERATURE: f64 = 2.0;
const LOGIT_SCALE: f32 = 1.5;

fn write_tiny_armorm(dir: &Path) -> HashMap<String, Tensor> {
    let mut spec = TinySpec::new(Family::Llama);
    spec.vocab_size = BYTE_TOKENIZER_VOCAB;
    let h = spec.hidden_size;
    let mut cfg = spec.config_json();
    cfg["architectures"] = serde_json::json!(["LlamaForRewardModelWithGating"]);
    cfg["num_objectives"] = serde_json::json!(K);
    cfg["gating_hidden_dim"] = serde_json::json!(GATING_DIM);
    cfg["gating_n_hidden"] = serde_json::json!(N_HIDDEN);
    cfg["gating_temperature"] = serde_json::json!(TEMPERATURE);
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let mut w = spec.weights().unwrap();
    w.remove("lm_head.weight");
    let dev = Device::Cpu;
    let mut put = |name: String, shape: &[usize], std: f32| {
        w.insert(name, Tensor::randn(0f32, std, shape, &dev).unwrap());
    };
    put("regression_layer.weight".into(), &[K, h], 0.5);
    // Not the identity, so that the transform is seen to be applied.
    put("reward_transform_matrix".into(), &[K, K], 0.7);
    let mut inputs = h;
    for i in 0..=N_HIDDEN {
        let out = if i == N_HIDDEN { K } else { GATING_DIM };
        put(format!("gating.layers.{i}.weight"), &[out, inputs], 0.8);
        put(format!("gating.layers.{i}.bias"), &[out], 0.3);
        inputs = out;
    }
    w.insert(
        "gating.logit_scale".into(),
        Tensor::new(&[LOGIT_SCALE], &dev).unwrap(),
    );
    candle_core::safetensors::save(&w, dir.join("model.safetensors")).unwrap();
    write_byte_tokenizer(dir).unwrap();
    w
}

fn pairs() -> Vec<RewardInput> {
    vec![
        RewardInput::new("What is 2+2?", "4"),
        RewardInput::new(
            "Name a colour.",
            "Blue, like the sky on a clear summer day.",
        ),
        RewardInput {
            prompt: Prompt::Messages(vec![
                ChatMessage::new("system", "Be brief."),
                ChatMessage::new("user", "Hi"),
                ChatMessage::new("assistant", "Hello."),
                ChatMessage::new("user", "How are you?"),
            ]),
            response: "Fine, thanks".into(),
        },
    ]
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn matvec(w: &[Vec<f32>], x: &[f32]) -> Vec<f32> {
    w.iter()
        .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
        .collect()
}

/// The original modeling code, by hand on plain vectors.
fn hand_score(w: &HashMap<String, Tensor>, last: &[f32], prompt: &[f32]) -> f32 {
    let rewards = matvec(&rows(&w["regression_layer.weight"]), last);
    let m = rows(&w["reward_transform_matrix"]);
    let adjusted: Vec<f32> = (0..K)
        .map(|j| (0..K).map(|i| rewards[i] * m[i][j]).sum())
        .collect();
    let mut x = prompt.to_vec();
    for i in 0..=N_HIDDEN {
        let b = w[&format!("gating.layers.{i}.bias")]
            .to_vec1::<f32>()
            .unwrap();
        x = matvec(&rows(&w[&format!("gating.layers.{i}.weight")]), &x)
            .iter()
            .zip(&b)
            .map(|(a, b)| a + b)
            .collect();
        if i < N_HIDDEN {
            x.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
    let scaled: Vec<f64> = x.iter().map(|&v| v as f64 / TEMPERATURE).collect();
    let max = scaled.iter().cloned().fold(f64::MIN, f64::max);
    let exps: Vec<f64> = scaled.iter().map(|v| (v - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.iter()
        .zip(&adjusted)
        .map(|(e, r)| (e / total) as f32 * LOGIT_SCALE * r)
        .sum()
}

/// The original's gating position: the token before the last assistant header.
fn gating_position(ids: &[u32], header: &[u32]) -> usize {
    (0..=ids.len() - header.len())
        .rev()
        .find(|&j| ids[j..j + header.len()] == *header)
        .expect("assistant header in the pair")
        - 1
}

#[test]
fn armorm_scores_match_the_modeling_code_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let w = write_tiny_armorm(dir.path());
    let rm = load(dir.path(), None, &LoadOptions::default()).unwrap();
    let pairs = pairs();
    let batch = rm.score(&pairs).unwrap();

    let cfg = DecoderConfig::from_hf_json(&dir.path().join("config.json")).unwrap();
    let mut wf = WeightFile::safetensors(
        &safetensors_files(dir.path()).unwrap(),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    let dec = Decoder::load_backbone(&cfg, &mut wf, DType::F32, &Device::Cpu, None).unwrap();
    let tok = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    let header = tok
        .encode("<|im_start|>assistant\n", false)
        .unwrap()
        .get_ids()
        .to_vec();
    let concrete = ArmoReward::load(dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!(concrete.num_objectives(), K);
    let objectives = concrete.objectives(&pairs).unwrap();
    for (i, p) in pairs.iter().enumerate() {
        let (ids, gate, truncated) = concrete.encode(p).unwrap();
        assert!(!truncated);
        assert_eq!(gate, gating_position(&ids, &header), "pair {i}");
        let x = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let hidden = dec.forward_hidden(&x, None).unwrap();
        let at = |pos: usize| hidden.i((0, pos)).unwrap().to_vec1::<f32>().unwrap();
        let expect = hand_score(&w, &at(ids.len() - 1), &at(gate));
        assert!(
            (batch[i].score - expect).abs() < 1e-4,
            "pair {i}: {} vs {expect}",
            batch[i].score
        );
        // The objectives and gating weights give the score; the weights sum to the scale.
        let (rewards, gating) = &objectives[i];
        assert_eq!((rewards.len(), gating.len()), (K, K));
        let dot: f32 = rewards.iter().zip(gating).map(|(r, g)| r * g).sum();
        assert!((dot - batch[i].score).abs() < 1e-5);
        assert!((gating.iter().sum::<f32>() - LOGIT_SCALE).abs() < 1e-5);
        // Alone, the pair gets its batched score.
        let alone = rm.score(std::slice::from_ref(p)).unwrap()[0].score;
        assert!(
            (alone - batch[i].score).abs() < 1e-5,
            "pair {i}: alone {alone} vs batched {}",
            batch[i].score
        );
    }
    // Scores depend on the input.
    assert!((batch[0].score - batch[1].score).abs() > 1e-5);
    assert!((batch[1].score - batch[2].score).abs() > 1e-5);
}

#[test]
fn missing_armorm_tensors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = write_tiny_armorm(dir.path());
    w.remove("reward_transform_matrix");
    candle_core::safetensors::save(&w, dir.path().join("model.safetensors")).unwrap();
    let err = ArmoReward::load(dir.path(), &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("reward_transform_matrix"), "{err}");
}
