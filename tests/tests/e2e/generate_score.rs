//! `thresh generate` and `thresh score` print what the README and their `--help` say: samples
//! decoded as one batch (text, or one JSON object with `--json`), stop strings, a score per
//! pair (one number, or one JSON line per input with `--jsonl FILE` or `-`).

use std::path::Path;
use std::time::Duration;

use thresh_e2e::{THRESH, Value, command, json, run, run_with_input, s, tiny_policy, tiny_reward};

const T: Duration = Duration::from_secs(120);

fn generate(policy: &Path, args: &[&str]) -> thresh_e2e::Output {
    let out = run(
        command(THRESH)
            .args(["generate", "--model", s(policy)])
            .args(args),
        T,
    );
    out.assert_success(&format!("thresh generate {args:?}"));
    out
}

/// The tokens of the byte tokenizer's ChatML rendering of one user message:
/// `<|im_start|>user\n{m}<|im_end|>\n<|im_start|>assistant\n`, a token per byte plus the three
/// special tokens.
fn chat_prompt_tokens(message: &str) -> u64 {
    (3 + "user\n".len() + message.len() + "\n".len() + "assistant\n".len()) as u64
}

#[test]
fn generate_prints_n_samples_as_text_and_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let policy = tiny_policy(dir.path(), "policy");
    let prompt = "Write a haiku about the sea.";
    let args = [
        "--chat",
        "-n",
        "4",
        "--max-tokens",
        "6",
        "--seed",
        "1",
        "--prompt",
        prompt,
    ];
    let with_json: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    let j = generate(&policy, &with_json).json("thresh generate --json");
    let samples = j["samples"].as_array().unwrap_or_else(|| panic!("{j}"));
    assert_eq!(samples.len(), 4, "-n 4: {j}");
    assert_eq!(
        j["prompt_tokens"],
        chat_prompt_tokens(prompt),
        "--chat renders the template: {j}"
    );
    let mut total = 0;
    for x in samples {
        let tokens = x["tokens"].as_u64().unwrap();
        assert!((1..=6).contains(&tokens), "--max-tokens 6: {x}");
        assert!(
            ["length", "stop"].contains(&x["finish_reason"].as_str().unwrap_or_default()),
            "{x}"
        );
        assert!(
            x["logprob"]
                .as_f64()
                .is_some_and(|l| l.is_finite() && l <= 0.0),
            "{x}"
        );
        total += tokens;
    }
    assert_eq!(j["generated_tokens"], total, "{j}");
    let texts: Vec<&str> = samples
        .iter()
        .map(|x| x["text"].as_str().unwrap())
        .collect();
    assert!(
        texts.iter().any(|t| *t != texts[0]),
        "sample i is drawn with seed + i: {texts:?}"
    );
    // Seeded: the same command prints the same samples.
    let again = generate(&policy, &with_json).json("thresh generate --json");
    assert_eq!(again["samples"], j["samples"]);

    // Without --json: a header per sample, then its text; the statistics on stderr.
    let text = generate(&policy, &args);
    let expected: String = samples
        .iter()
        .enumerate()
        .map(|(i, x)| {
            format!(
                "--- sample {i} ({} tokens, finish: {}, logprob {:.2}) ---\n{}\n",
                x["tokens"],
                x["finish_reason"].as_str().unwrap(),
                x["logprob"].as_f64().unwrap(),
                x["text"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(text.stdout, expected, "the text form of the same samples");
    let stats = format!("prompt {} tokens", chat_prompt_tokens(prompt));
    assert!(
        text.stderr.contains(&stats) && text.stderr.contains(&format!("{total} tokens in")),
        "statistics on stderr: {}",
        text.stderr
    );
}

#[test]
fn generate_greedy_stops_at_a_stop_string() {
    let dir = tempfile::tempdir().unwrap();
    let policy = tiny_policy(dir.path(), "policy");
    let base = [
        "--prompt",
        "1, 2, 3,",
        "--temperature",
        "0",
        "--max-tokens",
        "16",
        "--json",
    ];
    let full = generate(&policy, &base).json("greedy");
    let sample = &full["samples"][0];
    assert_eq!(
        full["prompt_tokens"], 8,
        "a plain prompt, a token per byte: {full}"
    );
    assert_eq!(sample["finish_reason"], "length", "{full}");
    assert_eq!(sample["tokens"], 16, "{full}");
    let text = sample["text"].as_str().unwrap().to_string();
    // A stop string from the middle of the greedy answer (not a replacement character).
    let stop = text
        .chars()
        .skip(2)
        .find(|c| *c != char::REPLACEMENT_CHARACTER)
        .unwrap_or_else(|| panic!("no stop candidate in {text:?}"))
        .to_string();
    let cut = &text[..text.find(&stop).unwrap()];
    let mut args = base.to_vec();
    args.extend(["--stop", &stop]);
    let stopped = generate(&policy, &args).json("greedy with --stop");
    let sample = &stopped["samples"][0];
    assert_eq!(
        sample["finish_reason"], "stop",
        "--stop {stop:?}: {stopped}"
    );
    assert_eq!(
        sample["text"], cut,
        "the answer up to the stop string {stop:?}: {stopped}"
    );
    assert!(sample["tokens"].as_u64().unwrap() < 16, "{stopped}");
}

#[test]
fn score_prints_one_number_or_a_json_line_per_input() {
    let dir = tempfile::tempdir().unwrap();
    let reward = tiny_reward(dir.path(), "reward");
    let (p, r) = ("What is the capital of France?", "Paris.");
    let one = run(
        command(THRESH).args([
            "score",
            "--reward",
            s(&reward),
            "--prompt",
            p,
            "--response",
            r,
        ]),
        T,
    );
    one.assert_success("thresh score --prompt --response");
    let line = one.stdout.trim_end();
    assert_eq!(one.stdout.lines().count(), 1, "one line: {:?}", one.stdout);
    let single: f64 = line
        .parse()
        .unwrap_or_else(|e| panic!("not a number: {line:?}: {e}"));
    assert_eq!(
        line.rsplit('.').next().map(str::len),
        Some(6),
        "six decimals: {line:?}"
    );

    let inputs = [
        json!({"prompt": p, "response": r}),
        json!({"prompt": [{"role": "user", "content": p}], "response": r}),
        json!({"prompt": "How do I feed a dog?", "response": "Bread."}),
    ];
    // A blank line is skipped.
    let jsonl = format!("{}\n{}\n\n{}\n", inputs[0], inputs[1], inputs[2]);
    let file = dir.path().join("pairs.jsonl");
    std::fs::write(&file, &jsonl).unwrap();
    let from_file = run(
        command(THRESH).args(["score", "--reward", s(&reward), "--jsonl", s(&file)]),
        T,
    );
    from_file.assert_success("thresh score --jsonl FILE");
    let rows: Vec<Value> = from_file
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    assert_eq!(
        rows.len(),
        inputs.len(),
        "one JSON line per input: {}",
        from_file.stdout
    );
    for row in &rows {
        assert!(row["score"].as_f64().is_some_and(f64::is_finite), "{row}");
        assert!(row["tokens"].as_u64().is_some_and(|t| t > 0), "{row}");
        assert_eq!(row["truncated"], false, "{row}");
    }
    let scores: Vec<f64> = rows.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(
        (scores[0] - single).abs() <= 1e-6,
        "the pair scores the same both ways: {single} and {}",
        scores[0]
    );
    assert!(
        (scores[1] - scores[0]).abs() <= 1e-6,
        "a text prompt is one user message: {scores:?}"
    );
    assert!(
        scores[2] != scores[0],
        "another pair, another score: {scores:?}"
    );

    let from_stdin = run_with_input(
        command(THRESH).args(["score", "--reward", s(&reward), "--jsonl", "-"]),
        Some(jsonl.as_bytes()),
        T,
    );
    from_stdin.assert_success("thresh score --jsonl -");
    assert_eq!(from_stdin.stdout, from_file.stdout, "`-` reads stdin");
}

/// The one test on the demo models (`bash scripts/fetch-models.sh`): the README's
/// `thresh score` example with its default reward, all-MiniLM-L6-v2 relevance.
#[test]
fn score_with_the_demo_relevance_reward_by_default() {
    let models = thresh_models::testing::minilm_dir()
        .parent()
        .expect("the demo models directory")
        .to_path_buf();
    let prompt = "What is the capital of France?";
    let score = |response: &str| -> f64 {
        let out = run(
            command(THRESH)
                .args(["score", "--prompt", prompt, "--response", response])
                .env("THRESH_MODELS", &models),
            T,
        );
        out.assert_success("thresh score with the demo reward");
        out.stdout
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{:?}: {e}", out.stdout))
    };
    let relevant = score("Paris.");
    let unrelated = score("I like turtles.");
    assert!((-1.0..=1.0).contains(&relevant), "a cosine: {relevant}");
    assert!(
        relevant > unrelated + 0.1,
        "the answer is more relevant than a non-answer: {relevant} vs {unrelated}"
    );
}

#[test]
fn generate_into_a_closed_pipe_ends_quietly() {
    // `thresh generate | head -1`: the reader is gone before the answer is written.
    let dir = tempfile::tempdir().unwrap();
    let policy = tiny_policy(dir.path(), "policy");
    for json_flag in [false, true] {
        let mut cmd = command(THRESH);
        cmd.args([
            "generate",
            "--model",
            s(&policy),
            "--prompt",
            "hi",
            "--max-tokens",
            "8",
        ]);
        if json_flag {
            cmd.arg("--json");
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "json {json_flag}: {}: {stderr}",
            out.status
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
