//! `DebertaV2ForSequenceClassification` reward models on a tiny random DeBERTa-v3-shaped
//! model (relative attention with position buckets, shared attention keys, no absolute
//! positions) in Hugging Face layout, with the real MiniLM WordPiece tokenizer standing in
//! for DeBERTa's own.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::debertav2::{Config, DebertaV2Model};
use thresh_models::LoadOptions;
use thresh_reward::{DebertaClassifier, RewardInput, load};

const H: usize = 32;
const I: usize = 64;
const LAYERS: usize = 2;
const VOCAB: usize = 30522;
const BUCKETS: usize = 16;

/// Writes the model and returns its weights. The configuration leaves out `id2label` and the
/// pooler fields, which Hugging Face defaults.
fn write_tiny_deberta(dir: &Path) -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    let cfg = serde_json::json!({
        "architectures": ["DebertaV2ForSequenceClassification"], "model_type": "deberta-v2",
        "vocab_size": VOCAB, "hidden_size": H, "num_hidden_layers": LAYERS, "num_attention_heads": 4,
        "intermediate_size": I, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512,
        "type_vocab_size": 0, "initializer_range": 0.02, "layer_norm_eps": 1e-7,
        "relative_attention": true, "max_relative_positions": -1,
        "position_buckets": BUCKETS, "norm_rel_ebd": "layer_norm", "share_att_key": true,
        "pos_att_type": ["p2c", "c2p"], "position_biased_input": false, "pad_token_id": 0,
        "num_labels": 1
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let mut w = HashMap::new();
    let mut put = |name: &str, shape: &[usize], std: f32, mean: f64| {
        w.insert(
            name.to_string(),
            (Tensor::randn(0f32, std, shape, &dev).unwrap() + mean).unwrap(),
        );
    };
    put(
        "deberta.embeddings.word_embeddings.weight",
        &[VOCAB, H],
        0.5,
        0.0,
    );
    put("deberta.embeddings.LayerNorm.weight", &[H], 0.1, 1.0);
    put("deberta.embeddings.LayerNorm.bias", &[H], 0.1, 0.0);
    put(
        "deberta.encoder.rel_embeddings.weight",
        &[2 * BUCKETS, H],
        0.5,
        0.0,
    );
    put("deberta.encoder.LayerNorm.weight", &[H], 0.1, 1.0);
    put("deberta.encoder.LayerNorm.bias", &[H], 0.1, 0.0);
    for l in 0..LAYERS {
        let p = format!("deberta.encoder.layer.{l}.");
        for m in [
            "attention.self.query_proj",
            "attention.self.key_proj",
            "attention.self.value_proj",
            "attention.output.dense",
        ] {
            put(&format!("{p}{m}.weight"), &[H, H], 0.2, 0.0);
            put(&format!("{p}{m}.bias"), &[H], 0.1, 0.0);
        }
        put(&format!("{p}intermediate.dense.weight"), &[I, H], 0.2, 0.0);
        put(&format!("{p}intermediate.dense.bias"), &[I], 0.1, 0.0);
        put(&format!("{p}output.dense.weight"), &[H, I], 0.2, 0.0);
        put(&format!("{p}output.dense.bias"), &[H], 0.1, 0.0);
        for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
            put(&format!("{p}{n}.weight"), &[H], 0.1, 1.0);
            put(&format!("{p}{n}.bias"), &[H], 0.1, 0.0);
        }
    }
    put("pooler.dense.weight", &[H, H], 0.3, 0.0);
    put("pooler.dense.bias", &[H], 0.1, 0.0);
    put("classifier.weight", &[1, H], 0.5, 0.0);
    put("classifier.bias", &[1], 0.1, 0.0);
    candle_core::safetensors::save(&w, dir.join("model.safetensors")).unwrap();
    std::fs::copy(
        thresh_models::testing::minilm_dir().join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    w
}

fn pairs() -> Vec<RewardInput> {
    vec![
        RewardInput::new("What is the capital of France?", "Paris."),
        RewardInput::new(
            "Tell me a joke.",
            "Why did the chicken cross the road? To get to the other side, of course. \
             It had heard that the other side had better grain, and fewer foxes.",
        ),
        RewardInput::new("Hi", "Hello there!"),
        RewardInput::new("What is the capital of France?", "Lyon."),
    ]
}

#[test]
fn deberta_scores_are_batch_invariant_and_follow_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let w = write_tiny_deberta(dir.path());
    let rm = load(dir.path(), None, &LoadOptions::default()).unwrap();
    let pairs = pairs();
    let batch = rm.score(&pairs).unwrap();

    // By hand: candle's DeBERTa-v2 encoder on the pair alone, then the context pooler
    // (GELU of a dense layer on the first token) and row 0 of the classifier.
    let cfg: Config =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.path().join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
        .unwrap()
    };
    let encoder = DebertaV2Model::load(vb.pp("deberta"), &cfg).unwrap();
    let concrete = DebertaClassifier::load(dir.path(), &Device::Cpu).unwrap();
    for (i, p) in pairs.iter().enumerate() {
        let (ids, _, truncated) = concrete.encode(p).unwrap();
        assert!(!truncated);
        assert_eq!(batch[i].tokens, ids.len());
        let x = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let h0 = encoder.forward(&x, None, None).unwrap().i((0, 0)).unwrap();
        let pooled = (w["pooler.dense.weight"]
            .matmul(&h0.unsqueeze(1).unwrap())
            .unwrap()
            .squeeze(1)
            .unwrap()
            + &w["pooler.dense.bias"])
            .unwrap()
            .gelu_erf()
            .unwrap();
        let expect = ((pooled * w["classifier.weight"].i(0).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap())
            + w["classifier.bias"].to_vec1::<f32>().unwrap()[0];
        assert!(
            (batch[i].score - expect).abs() < 1e-4,
            "pair {i}: {} vs {expect}",
            batch[i].score
        );
        // Scoring a pair alone gives its batched score, whatever padding it got.
        let alone = rm.score(std::slice::from_ref(p)).unwrap()[0].score;
        assert!(
            (alone - batch[i].score).abs() < 1e-5,
            "pair {i}: alone {alone} vs batched {}",
            batch[i].score
        );
    }
    // Scores depend on the input: every pair scores differently, including two answers to
    // the same question.
    for a in 0..pairs.len() {
        for b in a + 1..pairs.len() {
            assert!(
                (batch[a].score - batch[b].score).abs() > 1e-4,
                "pairs {a} and {b} score alike: {}",
                batch[a].score
            );
        }
    }
    // Truncation keeps [CLS] and the end of the response.
    let short = DebertaClassifier::load(dir.path(), &Device::Cpu)
        .unwrap()
        .with_max_len(8);
    let (ids, _, truncated) = short.encode(&pairs[1]).unwrap();
    let (full, _, _) = concrete.encode(&pairs[1]).unwrap();
    assert!(truncated);
    assert_eq!(ids.len(), 8);
    assert_eq!(ids[0], full[0]);
    assert_eq!(ids[1..], full[full.len() - 7..]);
}

#[test]
fn missing_deberta_weights_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = write_tiny_deberta(dir.path());
    w.remove("pooler.dense.weight");
    candle_core::safetensors::save(&w, dir.path().join("model.safetensors")).unwrap();
    let err = DebertaClassifier::load(dir.path(), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("pooler.dense.weight"), "{err}");
}
