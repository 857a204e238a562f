//! `thresh gpu-check` run on the CPU device, so the prepared GPU check is known to work before
//! a GPU is lent: every section reports, the host and device samplers are both measured, and
//! Best-of-N past one batch runs as several batches that draw the rows one batch would.

use std::time::Duration;

use thresh_e2e::{THRESH, Value, command, run, s, tiny_policy};

#[test]
fn gpu_check_on_the_cpu_reports_both_samplers_and_best_of_n_past_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let policy = tiny_policy(dir.path(), "policy");
    let reward = thresh_models::testing::minilm_dir();
    let prompts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/data/instructions.jsonl");
    let out = dir.path().join("out");
    let res = run(
        command(THRESH).args([
            "gpu-check",
            "--device",
            "cpu",
            "--policy",
            s(&policy),
            "--reward",
            s(&reward),
            "--prompts",
            s(&prompts),
            "--out",
            s(&out),
            "--sections",
            "throughput,quality,merged",
            "--batches",
            "1,8",
            "--decode-tokens",
            "6",
            "--max-tokens",
            "8",
            "--max-batch",
            "8",
            "--max-n",
            "32",
            "--n-prompts",
            "4",
            "--merged-requests",
            "1,2",
            "--merged-candidates",
            "2",
        ]),
        Duration::from_secs(600),
    );
    res.assert_success("thresh gpu-check --device cpu");
    let text = std::fs::read_to_string(out.join("gpu-check.json")).expect("gpu-check.json");
    let j: Value = serde_json::from_str(&text).expect("gpu-check.json is JSON");
    let failed: Vec<&String> = j
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.ends_with("_error"))
        .collect();
    assert!(failed.is_empty(), "no section fails: {j:#}");
    assert_eq!(j["device"]["device"], "cpu", "{j:#}");

    let rows = j["throughput"].as_array().expect("throughput rows");
    let batches: Vec<u64> = rows.iter().filter_map(|r| r["batch"].as_u64()).collect();
    assert_eq!(batches, [1, 8], "one row per --batches entry: {j:#}");
    for r in rows {
        for sampler in ["host", "device"] {
            let tps = r[sampler]["decode_tokens_per_s"].as_f64().unwrap_or(0.0);
            assert!(tps > 0.0, "{sampler} throughput measured: {r}");
            let share = r[sampler]["sampling_pct"].as_f64().unwrap_or(-1.0);
            assert!((0.0..=100.0).contains(&share), "a share of the step: {r}");
            let fwd = r[sampler]["forward_pct"].as_f64().unwrap_or(-1.0);
            assert!(fwd + share <= 100.5, "the parts fit in the step: {r}");
        }
        let ratio = r["device_over_host"].as_f64().unwrap_or(0.0);
        let expect = r["device"]["decode_tokens_per_s"].as_f64().unwrap()
            / r["host"]["decode_tokens_per_s"].as_f64().unwrap();
        assert!((ratio - expect).abs() < 1e-9, "{r}");
    }

    let methods = j["quality"]["methods"].as_array().expect("quality methods");
    let labels: Vec<&str> = methods
        .iter()
        .filter_map(|m| m["method"].as_str())
        .collect();
    assert_eq!(
        labels,
        [
            "Best-of-8",
            "Best-of-32",
            "Speculative Rejection, N0 8, alpha 0.5",
            "Speculative Rejection, N0 8, alpha 0.8"
        ],
        "Best-of-N from N0 by fours up to --max-n: {j:#}"
    );
    let field = |i: usize, k: &str| methods[i][k].as_f64().unwrap_or(f64::NAN);
    // The baseline is its own best, so exactly 100; Best-of-32's first batch of 8 draws the
    // baseline's rows (row r samples with seed + r), so it scores at least as well.
    assert!((field(0, "improvement") - 100.0).abs() < 1e-9, "{j:#}");
    assert_eq!(field(0, "token_ratio"), 1.0, "{j:#}");
    assert!(field(1, "improvement") >= 100.0 - 1e-9, "{j:#}");
    // Four batches of 8: four prefills and four sets of answers to score.
    assert!(field(1, "token_ratio") > 1.0, "{j:#}");
    assert!(
        field(1, "time_ratio") > 1.0,
        "four batches cost more than one: {j:#}"
    );

    let merged = &j["merged"];
    assert!(
        !merged.is_null(),
        "the merged section is in the report: {j:#}"
    );
    let md = std::fs::read_to_string(out.join("gpu-check.md")).expect("gpu-check.md");
    for heading in ["## 2. Decode throughput", "## 3. Reward against compute"] {
        assert!(md.contains(heading), "{md}");
    }
}
