//! `thresh serve` configured three ways (flags, `THRESH_*` environment variables, a TOML file
//! through `--config`) serves the same greedy answers, applies the same limits, and stops
//! cleanly on SIGTERM.

use std::collections::HashSet;

use thresh_e2e::{Daemon, Http, THRESH, Value, command, json, s, tiny_policy, tiny_reward};

const PROMPT: &str = "The quick brown fox";
const MAX_TOKENS: u64 = 8;
/// A non-default `--max-tokens-limit` and `--max-n`, set every way, seen in `/v1/models`.
const LIMIT: u64 = 12;
const MAX_N: u64 = 5;

/// The greedy completion and chat answers of one daemon: (text, token ids) of each.
fn greedy_answers(http: &Http, d: &Daemon) -> Vec<(String, Vec<u64>)> {
    let completion = http.post_ok(
        &d.url("/v1/completions"),
        &json!({"prompt": PROMPT, "max_tokens": MAX_TOKENS, "temperature": 0,
                "seed": 1, "return_token_ids": true}),
    );
    let chat = http.post_ok(
        &d.url("/v1/chat/completions"),
        &json!({"messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS,
                "temperature": 0, "seed": 2, "return_token_ids": true}),
    );
    [(completion, "text"), (chat, "message")]
        .into_iter()
        .map(|(v, field)| {
            let choice = &v["choices"][0];
            let text = if field == "text" {
                choice["text"].as_str()
            } else {
                choice["message"]["content"].as_str()
            }
            .unwrap_or_else(|| panic!("no answer text: {v}"))
            .to_string();
            let ids: Vec<u64> = choice["token_ids"]
                .as_array()
                .unwrap_or_else(|| panic!("no token_ids: {v}"))
                .iter()
                .map(|t| t.as_u64().expect("token id"))
                .collect();
            assert_eq!(
                v["usage"]["completion_tokens"].as_u64(),
                Some(ids.len() as u64),
                "{v}"
            );
            assert!(
                !ids.is_empty() && ids.len() as u64 <= MAX_TOKENS,
                "a greedy answer of 1..={MAX_TOKENS} tokens: {v}"
            );
            (text, ids)
        })
        .collect()
}

/// What the daemon shows of its settings, and that they are enforced.
fn check_limits(http: &Http, d: &Daemon, how: &str) {
    let (status, models) = http.get(&d.url("/v1/models"));
    assert_eq!(status, 200, "{how}: {models}");
    let limits = &models["data"][0]["thresh_limits"];
    assert_eq!(limits["max_tokens_limit"], LIMIT, "{how}: {models}");
    assert_eq!(limits["max_n"], MAX_N, "{how}: {models}");
    let (status, err) = http.post(
        &d.url("/v1/completions"),
        &json!({"prompt": PROMPT, "max_tokens": LIMIT + 1}),
    );
    assert_eq!(
        status, 400,
        "{how}: max_tokens over --max-tokens-limit: {err}"
    );
    let message = err["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("--max-tokens-limit"), "{how}: {err}");
}

#[test]
fn flags_environment_and_toml_file_serve_the_same_greedy_answers() {
    let dir = tempfile::tempdir().unwrap();
    let policy = tiny_policy(dir.path(), "policy");
    let reward = tiny_reward(dir.path(), "reward");

    let mut flags = command(THRESH);
    flags.args([
        "serve",
        "--policy",
        s(&policy),
        "--reward",
        s(&reward),
        "--port",
        "0",
        "--max-queue",
        "8",
        "--max-n",
        &MAX_N.to_string(),
        "--max-tokens-limit",
        &LIMIT.to_string(),
    ]);

    let mut env = command(THRESH);
    env.arg("serve")
        .env("THRESH_POLICY", &policy)
        .env("THRESH_REWARD", &reward)
        .env("THRESH_PORT", "0")
        .env("THRESH_MAX_QUEUE", "8")
        .env("THRESH_MAX_N", MAX_N.to_string())
        .env("THRESH_MAX_TOKENS_LIMIT", LIMIT.to_string());

    let toml = dir.path().join("thresh.toml");
    std::fs::write(
        &toml,
        format!(
            "policy = {}\nreward = {}\nport = 0\nmax_queue = 8\nmax_n = {MAX_N}\nmax_tokens_limit = {LIMIT}\n",
            Value::from(s(&policy)),
            Value::from(s(&reward)),
        ),
    )
    .unwrap();
    let mut file = command(THRESH);
    file.args(["serve", "--config", s(&toml)]);

    let http = Http::new();
    let mut daemons: Vec<(&str, Daemon)> = [("flags", flags), ("environment", env), ("file", file)]
        .into_iter()
        .map(|(how, cmd)| {
            let log = dir.path().join(format!("{how}.log"));
            (how, Daemon::start(cmd, &log))
        })
        .collect();
    let ports: HashSet<u16> = daemons.iter().map(|(_, d)| d.addr().port()).collect();
    assert_eq!(ports.len(), 3, "three daemons on three ports: {ports:?}");
    let mut answers = Vec::new();
    for (how, d) in &mut daemons {
        assert!(
            d.addr().ip().is_loopback() && d.addr().port() != 0 && d.addr().port() != 8080,
            "{how}: --port 0 on loopback, got {}",
            d.addr()
        );
        d.wait_healthy(&http);
        check_limits(&http, d, how);
        answers.push((*how, greedy_answers(&http, d)));
    }
    let (first, reference) = &answers[0];
    for (how, a) in &answers[1..] {
        assert_eq!(
            a, reference,
            "{how} and {first} must give the same greedy answers"
        );
    }
    // Greedy decoding is deterministic: asked again, the daemon repeats itself.
    assert_eq!(&greedy_answers(&http, &daemons[0].1), reference);

    for (how, d) in daemons {
        let addr = d.addr();
        let (status, log) = d.terminate();
        assert_eq!(
            status.code(),
            Some(0),
            "{how}: exit after SIGTERM; log:\n{log}"
        );
        assert!(
            http.try_get(&format!("http://{addr}/health")).is_err(),
            "{how}: nothing listens on {addr} after the exit"
        );
    }
}
