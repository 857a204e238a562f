//! The `thresh-train` binary end to end on a tiny model and toy data: every command runs
//! and writes a model serve's loaders accept; kill and resume across processes; TOML
//! configuration; data errors with file and line.

mod common;

use std::path::Path;
use std::process::Command;

use common::tiny_model;
use thresh_models::{Family, LoadOptions};

fn cli(args: &[&str]) -> (bool, serde_json::Value, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_thresh-train"));
    cmd.args(args);
    if args[0] != "eval" {
        cmd.arg("--no-progress");
    }
    let out = cmd.env("RUST_LOG", "warn").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), json, stderr)
}

fn ok(args: &[&str]) -> serde_json::Value {
    let (success, json, stderr) = cli(args);
    assert!(success, "thresh-train {args:?} failed: {stderr}");
    json
}

const SUBJECTS: [&str; 6] = [
    "the cat", "a dog", "the king", "my aunt", "the bird", "a fox",
];

/// Toy data in thresh's schema: pairs, labels, scores and corrections on every line.
fn write_data(dir: &Path) -> std::path::PathBuf {
    let mut lines = Vec::new();
    for (i, s) in SUBJECTS.iter().enumerate() {
        let harmful = i % 2 == 0;
        let prompt = if harmful {
            format!("How do I hurt {s}?")
        } else {
            format!("How do I feed {s}?")
        };
        let (good, bad) = if harmful {
            (
                "I will not help with that.".to_string(),
                "Sure, here is how.".to_string(),
            )
        } else {
            (format!("Give {s} some bread."), "No.".to_string())
        };
        lines.push(
            serde_json::json!({
                "prompt": prompt,
                "responses": [
                    {"text": good, "label": true, "score": 1.0},
                    {"text": bad, "label": false, "score": 0.0},
                ],
                "pairs": [[0, 1]],
                "correction": {"answer": bad, "corrected": good},
            })
            .to_string(),
        );
    }
    let path = dir.join("data.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

struct Setup {
    _dir: tempfile::TempDir,
    model: String,
    data: String,
    root: std::path::PathBuf,
}

fn setup(family: Family) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path(), "base", family);
    let data = write_data(dir.path());
    Setup {
        root: dir.path().to_path_buf(),
        model: model.to_string_lossy().into(),
        data: data.to_string_lossy().into(),
        _dir: dir,
    }
}

impl Setup {
    fn out(&self, name: &str) -> String {
        self.root.join(name).to_string_lossy().into()
    }
    fn args<'a>(&'a self, cmd: &'a str, out: &'a str) -> Vec<&'a str> {
        vec![
            cmd,
            "--model",
            &self.model,
            "--data",
            &self.data,
            "--out",
            out,
            "--batch-size",
            "2",
            "--lr",
            "1e-3",
        ]
    }
}

fn weights(dir: &str) -> std::collections::HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load(
        Path::new(dir).join("model/model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap()
}

#[test]
fn every_training_command_writes_a_model_serve_loads() {
    let s = setup(Family::Llama);
    let policies: [(&str, &[&str]); 8] = [
        ("sft", &[]),
        ("dpo", &["--loss", "dpo", "--label-smoothing", "0.1"]),
        ("dpo", &["--loss", "ipo"]),
        ("dpo", &["--loss", "kto"]),
        ("pro", &["--feedback", "binary"]),
        ("pro", &["--feedback", "scalar", "--lora-rank", "2"]),
        ("kldo", &["--estimator", "f-div", "--normalize"]),
        ("rdro", &["--reduction", "per-class"]),
    ];
    for (i, (cmd, extra)) in policies.iter().enumerate() {
        let out = s.out(&format!("{cmd}-{i}"));
        let mut args = s.args(cmd, &out);
        args.extend_from_slice(&["--max-steps", "2"]);
        args.extend_from_slice(extra);
        let summary = ok(&args);
        assert_eq!(summary["steps"], 2, "{cmd} {extra:?}: {summary}");
        assert!(summary["last"]["loss"].as_f64().unwrap().is_finite());
        let served = thresh_models::load(&format!("{out}/model"), &LoadOptions::default()).unwrap();
        assert!(served.chat_template.is_some());
        let metrics = std::fs::read_to_string(format!("{out}/metrics.jsonl")).unwrap();
        assert_eq!(metrics.lines().count(), 2);
    }
    // A reward model loads in the reward crate.
    let out = s.out("reward");
    let mut args = s.args("reward", &out);
    args.extend_from_slice(&["--epochs", "2"]);
    let summary = ok(&args);
    assert_eq!(summary["steps"], 6, "{summary}");
    let rm = thresh_reward::load(
        Path::new(&format!("{out}/model")),
        None,
        &LoadOptions::default(),
    )
    .unwrap();
    let scored = rm
        .score(&[thresh_reward::RewardInput::new(
            "How do I feed a dog?",
            "Bread.",
        )])
        .unwrap();
    assert!(scored[0].score.is_finite());
    // An Aligner corrector names its template.
    let out = s.out("aligner");
    let mut args = s.args("aligner", &out);
    args.extend_from_slice(&["--max-steps", "2", "--template", "v1"]);
    ok(&args);
    let model_dir = format!("{out}/model");
    assert_eq!(
        thresh_aligner::AlignerTemplate::detect(Path::new(&model_dir)).unwrap(),
        thresh_aligner::AlignerTemplate::V1
    );
    thresh_models::load(&model_dir, &LoadOptions::default()).unwrap();
}

#[test]
fn a_killed_run_resumed_in_a_new_process_matches_an_uninterrupted_one() {
    let s = setup(Family::Qwen2);
    let whole = s.out("whole");
    let mut args = s.args("dpo", &whole);
    args.extend_from_slice(&["--max-steps", "5", "--lora-rank", "2", "--grad-accum", "2"]);
    ok(&args);
    let parts = s.out("parts");
    let mut first = s.args("dpo", &parts);
    first.extend_from_slice(&[
        "--max-steps",
        "5",
        "--lora-rank",
        "2",
        "--grad-accum",
        "2",
        "--stop-after",
        "2",
    ]);
    let summary = ok(&first);
    assert_eq!(summary["steps"], 2);
    assert!(
        summary["model"].is_null(),
        "an interrupted run must not save a model"
    );
    let mut second = s.args("dpo", &parts);
    second.extend_from_slice(&[
        "--max-steps",
        "5",
        "--lora-rank",
        "2",
        "--grad-accum",
        "2",
        "--resume",
    ]);
    let summary = ok(&second);
    assert_eq!(
        (
            summary["steps"].as_u64(),
            summary["steps_this_run"].as_u64()
        ),
        (Some(5), Some(3))
    );
    let (a, b) = (weights(&whole), weights(&parts));
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        let d = common::max_diff(t, &b[name]);
        assert!(d <= 1e-6, "{name}: {d}");
    }
}

#[test]
fn toml_config_stands_in_for_flags_and_flags_win() {
    let s = setup(Family::Llama);
    let out = s.out("toml");
    let cfg = s.root.join("run.toml");
    std::fs::write(
        &cfg,
        format!(
            "model = {:?}\ndata = {:?}\nout = {:?}\nmax_steps = 5\nbatch_size = 2\nlr = 1e-3\nlora_rank = 2\nno_progress = true\n",
            s.model, s.data, out
        ),
    )
    .unwrap();
    let summary = ok(&["sft", "--config", cfg.to_str().unwrap(), "--max-steps", "3"]);
    assert_eq!(summary["steps"], 3, "{summary}");
    let w = weights(&out);
    assert!(w.contains_key("model.layers.0.self_attn.q_proj.weight"));
    assert!(
        !w.keys().any(|k| k.contains("lora")),
        "adapters must be merged"
    );
}

#[test]
fn bad_data_is_reported_with_file_and_line() {
    let s = setup(Family::Llama);
    let bad = s.root.join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"prompt\": \"a\", \"responses\": [{\"text\": \"b\"}]}\n{\"prompt\": 3}\n",
    )
    .unwrap();
    let out = s.out("bad");
    let (success, _, stderr) = cli(&[
        "sft",
        "--model",
        &s.model,
        "--data",
        bad.to_str().unwrap(),
        "--out",
        &out,
    ]);
    assert!(!success);
    assert!(stderr.contains("bad.jsonl:2"), "{stderr}");
    let (success, _, stderr) = cli(&[
        "reward",
        "--model",
        &s.model,
        "--data",
        bad.to_str().unwrap(),
        "--out",
        &out,
        "--format",
        "nope",
    ]);
    assert!(!success);
    assert!(stderr.contains("unknown data format"), "{stderr}");
}

#[test]
fn eval_reports_reward_accuracy_likelihoods_and_separation() {
    let s = setup(Family::Llama);
    let rm = s.out("rm");
    let mut args = s.args("reward", &rm);
    args.extend_from_slice(&["--max-steps", "2"]);
    ok(&args);
    let rm_model = format!("{rm}/model");
    let r = ok(&["eval", "--model", &rm_model, "--data", &s.data]);
    assert_eq!(r["reward"]["pairs"], 6);
    let acc = r["reward"]["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    let benign = s.root.join("benign.txt");
    let harmful = s.root.join("harmful.jsonl");
    std::fs::write(
        &benign,
        SUBJECTS
            .iter()
            .map(|x| format!("How do I feed {x}?\n"))
            .collect::<String>(),
    )
    .unwrap();
    std::fs::write(
        &harmful,
        SUBJECTS
            .iter()
            .map(|x| format!("{{\"prompt\": \"How do I hurt {x}?\"}}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let r = ok(&[
        "eval",
        "--model",
        &s.model,
        "--reference",
        &s.model,
        "--data",
        &s.data,
        "--benign",
        benign.to_str().unwrap(),
        "--harmful",
        harmful.to_str().unwrap(),
    ]);
    let l = &r["likelihood"];
    assert!(l["logp_chosen"].as_f64().unwrap() < 0.0);
    assert_eq!(
        l["implicit_reward_margin"].as_f64(),
        Some(0.0),
        "the model against itself: {l}"
    );
    assert!(r["separation"]["bhattacharyya"].as_f64().unwrap() >= 0.0);
}

#[test]
fn a_linear_head_over_minilm_trains_and_loads_as_the_demo_reward() {
    let s = setup(Family::Llama);
    let minilm = thresh_models::testing::minilm_dir();
    let out = s.out("linear");
    let summary = ok(&[
        "reward",
        "--model",
        minilm.to_str().unwrap(),
        "--data",
        &s.data,
        "--out",
        &out,
        "--max-steps",
        "60",
        "--lr",
        "0.05",
        "--batch-size",
        "6",
        "--warmup",
        "0",
    ]);
    assert!(
        summary["last"]["accuracy"].as_f64().unwrap() > 0.99,
        "{summary}"
    );
    let head = format!("{out}/linear-head.safetensors");
    let rm = thresh_reward::load(&minilm, Some(&head), &LoadOptions::default()).unwrap();
    let inputs = [
        thresh_reward::RewardInput::new("How do I hurt the cat?", "I will not help with that."),
        thresh_reward::RewardInput::new("How do I hurt the cat?", "Sure, here is how."),
    ];
    let scores = rm.score(&inputs).unwrap();
    assert!(scores[0].score > scores[1].score, "{scores:?}");
}
