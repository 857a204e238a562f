//! Reward-model throughput: 64 (prompt, response) pairs of about 200 tokens, scored with
//! all-MiniLM-L6-v2 (relevance) and with a SmolLM2-135M-shaped decoder classifier (random
//! weights, SmolLM2's tokenizer and template; dense f32 and q8_0), the rows per forward pass
//! swept through the token budget.
//!
//! `cargo bench -p thresh-reward --bench reward -- [--reps 3] [--only TEXT]`
//!
//! `--only TEXT` runs only the rows whose model and rows-per-pass columns contain `TEXT`
//! (e.g. `--only "q8_0 | 64"` for the q8_0 classifier with all 64 pairs in one pass).

use std::time::Instant;
use thresh_models::bench::median;

use candle_core::Device;
use thresh_models::testing::{TinySpec, minilm_dir, write_tiny_classifier};
use thresh_models::{Family, GgmlDType, LoadOptions};
use thresh_reward::{DecoderClassifier, RelevanceReward, RewardInput, RewardModel};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn pairs() -> Vec<RewardInput> {
    let body = "The committee reviewed the proposal in detail, weighing the costs of construction against the expected benefits to the town, and asked for further studies of traffic, noise and the effect on local businesses before any final vote.";
    (0..64)
        .map(|i| {
            RewardInput::new(
                format!("Question {i}: summarise the discussion about the new bridge and give your view."),
                format!("{body} {body} {body} {}", &body[..(i * 3) % body.len()]),
            )
        })
        .collect()
}

fn run(
    name: &str,
    rm: &dyn RewardModel,
    budgets: &[(usize, &str)],
    reps: usize,
    only: Option<&str>,
    set_budget: &dyn Fn(usize) -> Box<dyn RewardModel>,
) {
    let selected: Vec<(usize, &str)> = budgets
        .iter()
        .copied()
        .filter(|(_, label)| only.is_none_or(|o| format!("{name} | {label}").contains(o)))
        .collect();
    if selected.is_empty() {
        return;
    }
    let p = pairs();
    let tokens: usize = rm.score(&p).expect("score").iter().map(|s| s.tokens).sum();
    for (budget, label) in selected {
        let rm = set_budget(budget);
        let mut secs = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            rm.score(&p).expect("score");
            secs.push(t.elapsed().as_secs_f64());
        }
        let s = median(secs);
        println!(
            "| {name} | {label} | {tokens} | {:.0} | {:.0} |",
            tokens as f64 / s,
            s * 1e3
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps: usize = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .map_or(3, |v| v.parse().expect("--reps"));
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    println!(
        "| model | rows per pass (token budget) | tokens scored | tokens/s | latency ms (64 pairs) |"
    );
    println!("|---|---|---:|---:|---:|");
    let budgets = [
        (256, "~1 (256)"),
        (2048, "~8 (2048)"),
        (8192, "~32 (8192)"),
        (1 << 20, "64 (all)"),
    ];
    let minilm = minilm_dir();
    let rel = RelevanceReward::load(&minilm, &Device::Cpu).expect("minilm");
    // The relevance reward embeds prompts and responses separately; its budget is internal.
    run(
        "all-MiniLM-L6-v2 relevance",
        &rel,
        &[(0, "default (16384)")],
        reps,
        only,
        &|_| Box::new(RelevanceReward::load(&minilm, &Device::Cpu).expect("minilm")),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = TinySpec {
        family: Family::Llama,
        hidden_size: 576,
        intermediate_size: 1536,
        num_layers: 30,
        num_heads: 9,
        num_kv_heads: 3,
        vocab_size: 49152,
        max_position_embeddings: 2048,
        tie_word_embeddings: true,
        llama3_rope: false,
        std: 0.02,
        seed: None,
    };
    write_tiny_classifier(&spec, dir.path(), 1).expect("write classifier");
    // SmolLM2's real tokenizer and chat template, so pairs tokenise as they would for it.
    let smol = thresh_models::load(
        thresh_models::testing::smollm2_gguf()
            .to_str()
            .expect("utf-8"),
        &LoadOptions {
            quant: Some(GgmlDType::Q8_0),
            ..Default::default()
        },
    )
    .expect("smollm2");
    smol.tokenizer
        .inner()
        .expect("a local tokenizer")
        .save(dir.path().join("tokenizer.json"), false)
        .expect("save tokenizer");
    let tc = serde_json::json!({
        "eos_token": "<|im_end|>",
        "chat_template": smol.chat_template.as_ref().expect("template").source(),
    });
    std::fs::write(dir.path().join("tokenizer_config.json"), tc.to_string())
        .expect("tokenizer_config");
    drop(smol);
    for (label, quant) in [
        ("SmolLM2-135M-shaped classifier, dense f32", None),
        (
            "SmolLM2-135M-shaped classifier, q8_0",
            Some(GgmlDType::Q8_0),
        ),
    ] {
        let opts = LoadOptions {
            quant,
            ..Default::default()
        };
        let rm = DecoderClassifier::load(dir.path(), &opts).expect("classifier");
        let path = dir.path().to_path_buf();
        run(label, &rm, &budgets, reps, only, &|b| {
            Box::new(
                DecoderClassifier::load(&path, &opts)
                    .expect("classifier")
                    .with_token_budget(b),
            )
        });
    }
}
