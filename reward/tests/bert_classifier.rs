//! `BertForSequenceClassification` reward models on a tiny random BERT in Hugging Face
//! layout with the real MiniLM WordPiece tokenizer.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use thresh_models::LoadOptions;
use thresh_reward::{BertClassifier, RewardInput, load};

const H: usize = 32;
const I: usize = 64;
const LAYERS: usize = 2;
const VOCAB: usize = 30522;

fn write_tiny_bert(dir: &Path) -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    let cfg = serde_json::json!({
        "architectures": ["BertForSequenceClassification"], "model_type": "bert",
        "vocab_size": VOCAB, "hidden_size": H, "num_hidden_layers": LAYERS, "num_attention_heads": 4,
        "intermediate_size": I, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "max_position_embeddings": 128, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0, "num_labels": 1
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let mut w = HashMap::new();
    let mut put = |name: String, shape: &[usize], std: f32, mean: f64| {
        w.insert(
            name,
            (Tensor::randn(0f32, std, shape, &dev).unwrap() + mean).unwrap(),
        );
    };
    put(
        "bert.embeddings.word_embeddings.weight".into(),
        &[VOCAB, H],
        0.5,
        0.0,
    );
    put(
        "bert.embeddings.position_embeddings.weight".into(),
        &[128, H],
        0.5,
        0.0,
    );
    put(
        "bert.embeddings.token_type_embeddings.weight".into(),
        &[2, H],
        0.5,
        0.0,
    );
    put("bert.embeddings.LayerNorm.weight".into(), &[H], 0.1, 1.0);
    put("bert.embeddings.LayerNorm.bias".into(), &[H], 0.1, 0.0);
    for l in 0..LAYERS {
        let p = format!("bert.encoder.layer.{l}.");
        for m in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ] {
            put(format!("{p}{m}.weight"), &[H, H], 0.2, 0.0);
            put(format!("{p}{m}.bias"), &[H], 0.1, 0.0);
        }
        put(format!("{p}intermediate.dense.weight"), &[I, H], 0.2, 0.0);
        put(format!("{p}intermediate.dense.bias"), &[I], 0.1, 0.0);
        put(format!("{p}output.dense.weight"), &[H, I], 0.2, 0.0);
        put(format!("{p}output.dense.bias"), &[H], 0.1, 0.0);
        for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
            put(format!("{p}{n}.weight"), &[H], 0.1, 1.0);
            put(format!("{p}{n}.bias"), &[H], 0.1, 0.0);
        }
    }
    put("bert.pooler.dense.weight".into(), &[H, H], 0.3, 0.0);
    put("bert.pooler.dense.bias".into(), &[H], 0.1, 0.0);
    put("classifier.weight".into(), &[1, H], 0.5, 0.0);
    put("classifier.bias".into(), &[1], 0.1, 0.0);
    candle_core::safetensors::save(&w, dir.join("model.safetensors")).unwrap();
    std::fs::copy(
        thresh_models::testing::minilm_dir().join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    w
}

#[test]
fn bert_classifier_scores_the_pooled_first_token() {
    let dir = tempfile::tempdir().unwrap();
    let w = write_tiny_bert(dir.path());
    let rm = load(dir.path(), None, &LoadOptions::default()).unwrap();
    let pairs = [
        RewardInput::new("What is the capital of France?", "Paris."),
        RewardInput::new(
            "Tell me a joke.",
            "Why did the chicken cross the road? To get to the other side, of course.",
        ),
        RewardInput::new("Hi", "Hello there!"),
    ];
    let batch = rm.score(&pairs).unwrap();
    // By hand: candle's BERT encoder, then tanh(W_p h_0 + b_p) and the classifier row 0.
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
    let enc = BertModel::load(vb, &cfg).unwrap();
    let concrete = BertClassifier::load(dir.path(), &Device::Cpu).unwrap();
    for (i, p) in pairs.iter().enumerate() {
        let (ids, types, truncated) = concrete.encode(p).unwrap();
        assert!(!truncated);
        assert_eq!(batch[i].tokens, ids.len());
        let x = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let t = Tensor::new(types.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let h0 = enc.forward(&x, &t, None).unwrap().i((0, 0)).unwrap();
        let pooled = (w["bert.pooler.dense.weight"]
            .matmul(&h0.unsqueeze(1).unwrap())
            .unwrap()
            .squeeze(1)
            .unwrap()
            + &w["bert.pooler.dense.bias"])
            .unwrap()
            .tanh()
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
        let alone = rm.score(std::slice::from_ref(p)).unwrap()[0].score;
        assert!(
            (alone - batch[i].score).abs() < 1e-5,
            "pair {i}: alone {alone} vs batched {}",
            batch[i].score
        );
    }
    // Truncation keeps [CLS] and the end of the response.
    let short = BertClassifier::load(dir.path(), &Device::Cpu)
        .unwrap()
        .with_max_len(8);
    let (ids, _, truncated) = short.encode(&pairs[1]).unwrap();
    let (full, _, _) = concrete.encode(&pairs[1]).unwrap();
    assert!(truncated);
    assert_eq!(ids.len(), 8);
    assert_eq!(ids[0], full[0]);
    assert_eq!(ids[1..], full[full.len() - 7..]);
}
