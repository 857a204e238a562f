//! The real all-MiniLM-L6-v2 (fetched by `scripts/fetch-models.sh`): embeddings match the
//! published sentence-transformers similarities, and the relevance reward ranks on-topic
//! answers first.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use thresh_models::LoadOptions;
use thresh_reward::{LinearReward, RelevanceReward, RewardInput, RewardModel, load};

fn minilm() -> PathBuf {
    thresh_models::testing::minilm_dir()
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn cosine_similarities_match_sentence_transformers() {
    let rm = RelevanceReward::load(&minilm(), &Device::Cpu).unwrap();
    let s = [
        "The weather is lovely today.",
        "It's so sunny outside!",
        "He drove to the stadium.",
    ];
    let e = rm.embedder().embed(&s).unwrap();
    for (v, _, _) in &e {
        assert!(
            (cos(v, v) - 1.0).abs() < 1e-5,
            "embeddings are unit vectors"
        );
    }
    // Published values (sentence-transformers documentation, model.similarity).
    for ((i, j), expect) in [((0, 1), 0.6660f32), ((0, 2), 0.1046), ((1, 2), 0.1411)] {
        let got = cos(&e[i].0, &e[j].0);
        assert!(
            (got - expect).abs() < 5e-4,
            "sim({i},{j}) = {got:.4}, expected {expect}"
        );
    }
    // An embedding does not depend on its batch mates.
    let alone = rm.embedder().embed(&s[2..]).unwrap();
    assert!(
        alone[0]
            .0
            .iter()
            .zip(&e[2].0)
            .all(|(a, b)| (a - b).abs() < 1e-5)
    );
}

#[test]
fn relevance_ranks_on_topic_answers_first() {
    let rm = load(&minilm(), Some("relevance"), &LoadOptions::default()).unwrap();
    let cases = [
        (
            "What is the capital of France?",
            "The capital of France is Paris.",
            "Bananas are rich in potassium.",
        ),
        (
            "How do I boil an egg?",
            "Put the egg in boiling water for about nine minutes.",
            "The stock market closed higher today.",
        ),
        (
            "Why is the sky blue?",
            "Sunlight scatters off air molecules, and blue light scatters most.",
            "My favourite football team won again.",
        ),
        (
            "Recommend a good book about space.",
            "Try Cosmos by Carl Sagan, a classic about the universe.",
            "Remember to water your tomato plants daily.",
        ),
        (
            "How can I improve my sleep?",
            "Keep a regular bedtime and avoid screens before sleeping.",
            "The recipe needs two cups of flour.",
        ),
    ];
    for (q, good, bad) in cases {
        let s = rm
            .score(&[RewardInput::new(q, good), RewardInput::new(q, bad)])
            .unwrap();
        assert!(
            s[0].score > s[1].score + 0.1,
            "{q}: {} vs {}",
            s[0].score,
            s[1].score
        );
        assert!(s[0].tokens > 0 && !s[0].truncated);
    }
}

#[test]
fn linear_head_scores_response_or_pair_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let rel = RelevanceReward::load(&minilm(), &Device::Cpu).unwrap();
    let pair = RewardInput::new("What is the capital of France?", "Paris.");
    let e = rel
        .embedder()
        .embed(&["Paris.", "What is the capital of France?"])
        .unwrap();
    // Response head: weight = e(response) gives |e|^2 = 1, plus the bias.
    let head = dir.path().join("head.safetensors");
    let mut t = std::collections::HashMap::new();
    t.insert(
        "weight".to_string(),
        Tensor::new(e[0].0.as_slice(), &Device::Cpu).unwrap(),
    );
    t.insert(
        "bias".to_string(),
        Tensor::new(&[0.5f32], &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&t, &head).unwrap();
    let lin = LinearReward::load(&minilm(), &head, &Device::Cpu).unwrap();
    let s = lin.score(std::slice::from_ref(&pair)).unwrap()[0].score;
    assert!((s - 1.5).abs() < 1e-4, "{s}");
    // Pair head: [e(prompt); 0] gives the prompt's self-similarity, 1.
    let mut w = e[1].0.clone();
    w.extend(std::iter::repeat_n(0.0, e[0].0.len()));
    t.insert(
        "weight".to_string(),
        Tensor::new(w.as_slice(), &Device::Cpu).unwrap(),
    );
    t.remove("bias");
    candle_core::safetensors::save(&t, &head).unwrap();
    let lin = load(
        &minilm(),
        Some(head.to_str().unwrap()),
        &LoadOptions::default(),
    )
    .unwrap();
    let s = lin.score(&[pair]).unwrap()[0].score;
    assert!((s - 1.0).abs() < 1e-4, "{s}");
    // A head of the wrong width is a clear error.
    t.insert(
        "weight".to_string(),
        Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&t, &head).unwrap();
    let err = LinearReward::load(&minilm(), &head, &Device::Cpu)
        .err()
        .unwrap();
    assert!(err.to_string().contains("head.safetensors"), "{err}");
}
