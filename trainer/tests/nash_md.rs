//! Issue test 6: `thresh-train nash-md` on a tiny random model with a toy reward raises the
//! reward of its samples; and a run stopped and resumed ends at the same weights.
//!
//! The reward is a real HTTP server on loopback speaking thresh's `/v1/rewards` format (the
//! reward crate's remote client calls it): a response scores the number of ASCII lowercase
//! letters it holds. A random byte-level model writes about one in ten.

mod common;

use std::path::{Path, PathBuf};

use axum::routing::post;
use axum::{Json, Router};
use clap::Parser;
use common::tiny_model;
use serde_json::{Value, json};
use thresh_decoding::SamplingParams;
use thresh_models::Family;
use thresh_trainer::cli::Cli;
use thresh_trainer::commands::nash_md::NashMd;
use thresh_trainer::commands::nash_md::sampling::{Row, Source, sample};
use thresh_trainer::encode::Encoder;
use thresh_trainer::model::{TrainModel, Tuning};

const PROMPTS: [&str; 8] = [
    "Say something.",
    "Write a word.",
    "Tell me a story.",
    "What is the weather?",
    "Name a colour.",
    "Describe the sea.",
    "Who are you?",
    "Count to three.",
];

fn lowercase(text: &str) -> f32 {
    text.chars().filter(char::is_ascii_lowercase).count() as f32
}

async fn score(Json(body): Json<Value>) -> Json<Value> {
    let data: Vec<Value> = body["input"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"index": i, "score": lowercase(p["response"].as_str().unwrap_or(""))}))
        .collect();
    Json(json!({ "data": data }))
}

/// A reward server on loopback; kept alive by the returned runtime.
fn reward_server() -> (tokio::runtime::Runtime, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let app = Router::new().route("/v1/rewards", post(score));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await });
    (rt, format!("http://{addr}/v1/rewards"))
}

fn prompts_file(dir: &Path) -> PathBuf {
    let path = dir.join("prompts.jsonl");
    let lines: Vec<String> = PROMPTS
        .iter()
        .map(|p| {
            json!({ "prompt": p, "responses": [{"text": "unused", "label": true}] }).to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// `repeats` policy samples per prompt with a fixed seed: their rewards.
fn sample_rewards(model: &TrainModel, repeats: usize, max_new: usize) -> Vec<f32> {
    let enc = Encoder::for_model(model, 128);
    let mut rows = Vec::new();
    for p in PROMPTS {
        let ids = enc
            .prompt(&[thresh_models::ChatMessage::new("user", p)])
            .unwrap();
        for _ in 0..repeats {
            rows.push(Row {
                prompt: ids.clone(),
                source: Source::Policy,
            });
        }
    }
    let params = SamplingParams {
        seed: 1234,
        ..SamplingParams::default()
    };
    let stop = NashMd::stop_tokens(model);
    let out = sample(model, model, &rows, &params, max_new, &stop).unwrap();
    out.iter()
        .map(|ids| {
            let body: Vec<u32> = ids.iter().copied().filter(|t| !stop.contains(t)).collect();
            lowercase(&model.tokenizer().decode(&body, true).unwrap())
        })
        .collect()
}

fn mean_var(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v.iter().map(|&x| (f64::from(x) - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, var)
}

fn run(args: &[&str]) -> Value {
    let mut all = vec!["thresh-train", "nash-md"];
    all.extend_from_slice(args);
    let cli = Cli::parse_from(all);
    thresh_trainer::commands::run(&cli.command).unwrap()
}

#[test]
fn nash_md_raises_the_reward_of_its_samples() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_model(dir.path(), "base", Family::Llama);
    let data = prompts_file(dir.path());
    let (_rt, url) = reward_server();
    let out = dir.path().join("run");
    let max_new = 8;

    let before = sample_rewards(
        &TrainModel::load(&base, Tuning::Frozen, false, 0, &candle_core::Device::Cpu).unwrap(),
        16,
        max_new,
    );
    let summary = run(&[
        "--model",
        base.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--reward",
        &url,
        "--max-steps",
        "40",
        "--batch-size",
        "8",
        "--lr",
        "0.01",
        "--warmup",
        "0",
        "--schedule",
        "constant",
        "--max-new-tokens",
        "8",
        "--no-progress",
    ]);
    let saved = PathBuf::from(summary["model"].as_str().expect("a saved model"));
    let trained =
        TrainModel::load(&saved, Tuning::Frozen, false, 0, &candle_core::Device::Cpu).unwrap();
    let after = sample_rewards(&trained, 16, max_new);

    let (mb, vb) = mean_var(&before);
    let (ma, va) = mean_var(&after);
    let se = (vb / before.len() as f64 + va / after.len() as f64).sqrt();
    eprintln!("mean reward before {mb:.3} after {ma:.3} (standard error {se:.3})");
    assert!(
        ma - mb > 4.0 * se && ma > mb + 0.5,
        "reward did not rise beyond noise: before {mb:.3}, after {ma:.3}, se {se:.3}"
    );

    // The metrics log records the samples' rewards every step.
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let rows: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 40);
    for key in [
        "reward/policy",
        "reward/mixture",
        "preference",
        "kl",
        "loss",
    ] {
        assert!(
            rows.iter().all(|r| r[key].is_number()),
            "metric {key} missing: {}",
            rows[0]
        );
    }
}

#[test]
fn nash_md_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_model(dir.path(), "base", Family::Llama);
    let data = prompts_file(dir.path());
    let (_rt, url) = reward_server();
    let common = |out: &Path| -> Vec<String> {
        [
            "--model",
            base.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--reward",
            &url,
            "--max-steps",
            "4",
            "--batch-size",
            "4",
            "--lr",
            "0.01",
            "--max-new-tokens",
            "4",
            "--lora-rank",
            "2",
            "--loss",
            "online-ipo",
            "--mixture",
            "0.8..0.2",
            "--no-progress",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let straight = dir.path().join("straight");
    let args = common(&straight);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let s1 = run(&a);

    let resumed = dir.path().join("resumed");
    let mut args = common(&resumed);
    args.extend(["--stop-after".to_string(), "2".to_string()]);
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let stopped = run(&a);
    assert!(stopped["model"].is_null(), "a stopped run saves no model");
    let mut args = common(&resumed);
    args.push("--resume".to_string());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let s2 = run(&a);
    assert_eq!(s2["steps_this_run"], 2);

    let load = |p: &Value| {
        TrainModel::load(
            Path::new(p.as_str().unwrap()),
            Tuning::Frozen,
            false,
            0,
            &candle_core::Device::Cpu,
        )
        .unwrap()
        .merged_weights()
        .unwrap()
    };
    let (w1, w2) = (load(&s1["model"]), load(&s2["model"]));
    let mut moved = 0f32;
    let base_w = TrainModel::load(&base, Tuning::Frozen, false, 0, &candle_core::Device::Cpu)
        .unwrap()
        .merged_weights()
        .unwrap();
    for (name, t) in &w1 {
        assert_eq!(
            common::max_diff(t, &w2[name]),
            0.0,
            "{name} differs after resume"
        );
        moved = moved.max(common::max_diff(t, &base_w[name]));
    }
    assert!(moved > 0.0, "training changed nothing");
    // The same per-step metrics (the same samples and rewards) in both logs' last steps.
    let last = |p: &Path| -> Value {
        let log = std::fs::read_to_string(p.join("metrics.jsonl")).unwrap();
        serde_json::from_str(log.lines().last().unwrap()).unwrap()
    };
    let (l1, l2) = (last(&straight), last(&resumed));
    for key in ["reward/policy", "reward/mixture", "mixture_c", "loss"] {
        assert_eq!(l1[key], l2[key], "{key}");
    }
}
