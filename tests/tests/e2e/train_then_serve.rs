//! What `thresh-train` writes, `thresh serve` hosts as it is: a DPO-with-LoRA policy answers
//! completions, and a trained reward model scores pairs through `POST /v1/rewards`, with the
//! same scores as `thresh score` and the same pairwise accuracy as `thresh-train eval`.

use std::path::Path;
use std::time::Duration;

use thresh_e2e::{
    Daemon, Http, THRESH, THRESH_TRAIN, Value, command, json, run, s, serve_command, tiny_policy,
    tiny_reward, write_pairs,
};

const TRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `thresh-train ARGS --no-progress` and returns its JSON summary.
fn train(args: &[&str]) -> Value {
    let out = run(
        command(THRESH_TRAIN)
            .args(args)
            .arg("--no-progress")
            .env("RUST_LOG", "warn"),
        TRAIN_TIMEOUT,
    );
    out.assert_success(&format!("thresh-train {args:?}"));
    out.json("thresh-train's summary")
}

/// The Hugging Face directory `thresh-train` writes.
fn assert_model_dir(out: &Path) {
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(
            out.join("model").join(f).is_file(),
            "{}/model/{f} missing",
            out.display()
        );
    }
}

fn serve(policy: &Path, reward: &Path, log: &Path) -> Daemon {
    Daemon::start(serve_command(policy, reward), log)
}

#[test]
fn a_dpo_lora_policy_is_served_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_policy(dir.path(), "base");
    let reward = tiny_reward(dir.path(), "reward");
    let (pairs, _) = write_pairs(dir.path());
    let out = dir.path().join("dpo");
    let summary = train(&[
        "dpo",
        "--model",
        s(&base),
        "--data",
        s(&pairs),
        "--out",
        s(&out),
        "--lora-rank",
        "2",
        "--max-steps",
        "3",
        "--batch-size",
        "2",
        "--lr",
        "1e-3",
    ]);
    assert_eq!(summary["steps"], 3, "{summary}");
    assert!(
        summary["last"]["loss"].as_f64().is_some_and(f64::is_finite),
        "{summary}"
    );
    assert_model_dir(&out);
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3, "one metrics line per step");
    let model = out.join("model");

    let http = Http::new();
    let mut d = serve(&model, &reward, &dir.path().join("serve.log"));
    d.wait_healthy(&http);
    let (_, models) = http.get(&d.url("/v1/models"));
    assert_eq!(models["data"][0]["thresh_role"], "policy", "{models}");
    let prompt = "How do I feed the cat?";
    let v = http.post_ok(
        &d.url("/v1/completions"),
        &json!({"prompt": prompt, "max_tokens": 8, "temperature": 0}),
    );
    let text = v["choices"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text: {v}"))
        .to_string();
    let tokens = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=8).contains(&tokens), "{v}");
    // The reward model next to it ranks Best-of-N candidates of the trained policy.
    let v = http.post_ok(
        &d.url("/v1/completions"),
        &json!({"prompt": prompt, "max_tokens": 8, "temperature": 1.0, "seed": 3,
                "alignment": {"strategy": "best_of_n", "candidates": 3}}),
    );
    assert!(
        v["choices"][0]["reward"]
            .as_f64()
            .is_some_and(f64::is_finite),
        "a Best-of-N choice carries its reward: {v}"
    );
    assert_eq!(v["alignment"]["strategy"], "best_of_n", "{v}");

    // `thresh generate` on the same directory decodes the same greedy answer.
    let g = run(
        command(THRESH).args([
            "generate",
            "--model",
            s(&model),
            "--prompt",
            prompt,
            "--temperature",
            "0",
            "--max-tokens",
            "8",
            "--json",
        ]),
        Duration::from_secs(120),
    );
    g.assert_success("thresh generate on the trained model");
    let g = g.json("thresh generate --json");
    assert_eq!(g["samples"][0]["text"], text.as_str(), "{g}");
    assert_eq!(g["samples"][0]["tokens"], tokens, "{g}");

    let (status, log) = d.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{log}");
}

#[test]
fn a_trained_reward_model_is_served_and_scores_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny_policy(dir.path(), "base");
    let (pairs, triples) = write_pairs(dir.path());
    let out = dir.path().join("rm");
    let summary = train(&[
        "reward",
        "--model",
        s(&base),
        "--data",
        s(&pairs),
        "--out",
        s(&out),
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--lr",
        "1e-3",
    ]);
    assert_eq!(
        summary["steps"], 6,
        "two epochs of six pairs, two a step: {summary}"
    );
    assert_model_dir(&out);
    let rm = out.join("model");

    let http = Http::new();
    let mut d = serve(&base, &rm, &dir.path().join("serve.log"));
    d.wait_healthy(&http);
    let inputs: Vec<Value> = triples
        .iter()
        .flat_map(|(p, chosen, rejected)| {
            [
                json!({"prompt": p, "response": chosen}),
                json!({"prompt": p, "response": rejected}),
            ]
        })
        .collect();
    let v = http.post_ok(&d.url("/v1/rewards"), &json!({"input": inputs}));
    let data = v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data: {v}"));
    assert_eq!(data.len(), inputs.len(), "one score per pair: {v}");
    let served: Vec<f64> = data
        .iter()
        .enumerate()
        .map(|(i, x)| {
            assert_eq!(x["index"], i, "{v}");
            x["score"]
                .as_f64()
                .filter(|f| f.is_finite())
                .unwrap_or_else(|| panic!("score {i}: {v}"))
        })
        .collect();
    assert!(
        served.windows(2).any(|w| w[0] != w[1]),
        "different pairs, different scores: {served:?}"
    );

    // `thresh score` on the same model gives the same scores.
    let jsonl = dir.path().join("score.jsonl");
    let lines: String = inputs.iter().map(|x| format!("{x}\n")).collect();
    std::fs::write(&jsonl, lines).unwrap();
    let out = run(
        command(THRESH).args(["score", "--reward", s(&rm), "--jsonl", s(&jsonl)]),
        Duration::from_secs(120),
    );
    out.assert_success("thresh score --jsonl");
    let cli: Vec<f64> = out
        .stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}`: {e}"));
            v["score"].as_f64().unwrap_or_else(|| panic!("`{l}`"))
        })
        .collect();
    assert_eq!(cli.len(), served.len(), "{}", out.stdout);
    for (i, (a, b)) in served.iter().zip(&cli).enumerate() {
        assert!(
            (a - b).abs() <= 1e-4 * (1.0 + a.abs()),
            "pair {i}: served {a}, thresh score {b}"
        );
    }

    // And the trainer's own evaluation ranks the pairs as the daemon's scores do.
    let eval = run(
        command(THRESH_TRAIN)
            .args(["eval", "--model", s(&rm), "--data", s(&pairs)])
            .env("RUST_LOG", "warn"),
        TRAIN_TIMEOUT,
    );
    eval.assert_success("thresh-train eval");
    let eval = eval.json("thresh-train eval");
    assert_eq!(eval["reward"]["pairs"], triples.len(), "{eval}");
    let right = served.chunks(2).filter(|c| c[0] > c[1]).count();
    let accuracy = right as f64 / triples.len() as f64;
    let reported = eval["reward"]["accuracy"].as_f64().unwrap();
    assert!(
        (accuracy - reported).abs() < 1e-9,
        "served scores rank {right}/{} pairs right, thresh-train eval says {reported}: {eval}",
        triples.len()
    );

    let (status, log) = d.terminate();
    assert_eq!(status.code(), Some(0), "log:\n{log}");
}
