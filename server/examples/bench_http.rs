//! Benchmark of `thresh serve` on the demo models (SmolLM2-135M-Instruct + MiniLM):
//! 1. the HTTP layer's added latency: a 1-token request over loopback HTTP against the same
//!    work in process (tokenise, prefill, one token, score with the reward model);
//! 2. Best-of-8 requests (128 new tokens, EOS ignored) at 1, 8 and 32 concurrent clients:
//!    throughput and p50/p99 latency.
//!
//! 3. with `BENCH_PEER` set to the base URL of another OpenAI-compatible server on the same
//!    GGUF (llama.cpp's `llama-server -np 8`, see `scripts/bench-serve.sh`), the same two
//!    workloads on both, back to back: one Best-of-8 (thresh: `best_of: 8`; the peer: 8
//!    concurrent samples, then the same MiniLM scoring in process) and 8 concurrent plain
//!    requests (total completion tokens per second). Medians of `BENCH_PEER_REPS` (3).
//! 4. with `BENCH_TRANSFORMERS` set to a Python with torch and transformers
//!    (`scripts/transformers-env.sh`), the Best-of-8 on Hugging Face transformers:
//!    `scripts/bench_transformers.py` samples the 8 answers in one `generate` call on the same
//!    GGUF, and the same in-process MiniLM scores them.
//!
//! `cargo run --release -p thresh-server --example bench_http` (environment: `BENCH_TOKENS`,
//! `BENCH_CONCURRENCY` as a comma list, `BENCH_REPS` for part 1, `BENCH_PEER`,
//! `BENCH_PEER_REPS`, `BENCH_TRANSFORMERS`, `BENCH_PARTS`: a comma list of `layer`,
//! `clients`, `peers`, default all).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use thresh_decoding::{DecodeBatch, PrefixCache, SamplingParams, StopConditions};
use thresh_models::{LoadOptions, testing};
use thresh_reward::RewardInput;
use thresh_server::serve::{ServeConfig, start};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tokens: usize = env_or("BENCH_TOKENS", "128").parse()?;
    let reps: usize = env_or("BENCH_REPS", "20").parse()?;
    let levels: Vec<usize> = env_or("BENCH_CONCURRENCY", "1,8,32")
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let parts = env_or("BENCH_PARTS", "layer,clients,peers");
    let part = |name: &str| parts.split(',').any(|p| p.trim() == name);
    let (policy_path, reward_path) = (testing::smollm2_gguf(), testing::minilm_dir());
    let server = start(ServeConfig::for_models(
        policy_path.clone(),
        reward_path.clone(),
    ))
    .await?;
    // The same models in process, loaded as the server loads them (q8_0 projections).
    let opts = LoadOptions {
        quant: thresh_models::parse_quant("auto", &policy_path.to_string_lossy())?,
        ..Default::default()
    };
    let policy = thresh_models::load(&policy_path.to_string_lossy(), &opts)?;
    let reward = thresh_reward::load(&reward_path, None, &LoadOptions::default())?;
    while !server.is_ready() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()?;
    let base = format!("http://{}", server.addr());
    let prompt = "Give me one tip for staying healthy.";

    // 1. Added latency of the HTTP layer.
    let prefix = PrefixCache::new(64 << 20);
    let (mut inproc, mut http) = (Vec::new(), Vec::new());
    for _ in 0..if part("layer") { reps } else { 0 } {
        let t = Instant::now();
        let ids = policy.tokenizer.encode(prompt, true)?;
        // Through a prefix cache, as the server prefills (from the second request on, both
        // reuse the prompt's keys and values).
        let mut batch = DecodeBatch::with_prefix_cache(
            &policy.decoder,
            &policy.tokenizer,
            &ids,
            1,
            &SamplingParams::greedy(),
            &StopConditions {
                max_tokens: 1,
                ..Default::default()
            },
            Some(&prefix),
        )?;
        batch.run_to_end()?;
        let (rows, _) = batch.into_parts();
        reward.score(&[RewardInput::new(prompt, rows[0].text.clone())])?;
        inproc.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let r: Value = client
            .post(format!("{base}/v1/completions"))
            .json(&json!({"prompt": prompt, "max_tokens": 1, "temperature": 0,
                "alignment": {"score": true}}))
            .send()
            .await?
            .json()
            .await?;
        anyhow::ensure!(r["choices"][0]["text"].is_string(), "bad answer: {r}");
        http.push(t.elapsed().as_secs_f64() * 1e3);
    }
    if part("layer") {
        let (pi, ph) = (quantile(&mut inproc, 0.5), quantile(&mut http, 0.5));
        println!(
            "1-token request, median of {reps}: in process {pi:.2} ms, over HTTP {ph:.2} ms, added {:.2} ms",
            ph - pi
        );
    }

    // 2. Best-of-8 under concurrency.
    let levels = if part("clients") { levels } else { Vec::new() };
    if !levels.is_empty() {
        println!("| clients | requests | wall s | requests/s | policy tokens/s | p50 s | p99 s |");
        println!("|---:|---:|---:|---:|---:|---:|---:|");
    }
    for &c in &levels {
        let n_req = c.max(4);
        let t = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..c {
            let (client, base) = (client.clone(), base.clone());
            let mine = (i..n_req).step_by(c).count();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for k in 0..mine {
                    let t = Instant::now();
                    let r: Value = client
                        .post(format!("{base}/v1/chat/completions"))
                        .json(&json!({
                            "messages": [{"role": "user", "content": prompt}],
                            "max_tokens": tokens, "ignore_eos": true, "temperature": 0.8,
                            "seed": (i * 1000 + k) as i64, "best_of": 8,
                        }))
                        .send()
                        .await?
                        .json()
                        .await?;
                    let policy_tokens = r["alignment"]["stats"]["policy_tokens"]
                        .as_u64()
                        .ok_or_else(|| anyhow::anyhow!("bad answer: {r}"))?;
                    out.push((t.elapsed().as_secs_f64(), policy_tokens));
                }
                anyhow::Ok(out)
            }));
        }
        let mut lat = Vec::new();
        let mut toks = 0u64;
        for task in tasks {
            for (l, p) in task.await?? {
                lat.push(l);
                toks += p;
            }
        }
        let wall = t.elapsed().as_secs_f64();
        println!(
            "| {c} | {} | {wall:.1} | {:.3} | {:.0} | {:.2} | {:.2} |",
            lat.len(),
            lat.len() as f64 / wall,
            toks as f64 / wall,
            quantile(&mut lat, 0.5),
            quantile(&mut lat, 0.99)
        );
    }
    if let Ok(python) = std::env::var("BENCH_TRANSFORMERS")
        && part("peers")
    {
        transformers_best_of_8(
            &python,
            &policy_path,
            reward.as_ref(),
            prompt,
            tokens,
            &client,
            &base,
        )
        .await?;
    }
    if let Ok(peer) = std::env::var("BENCH_PEER")
        && part("peers")
    {
        let reps: usize = env_or("BENCH_PEER_REPS", "3").parse()?;
        let peer = peer.trim_end_matches('/').to_string();
        let body = |seed: usize| {
            json!({
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": tokens, "ignore_eos": true, "temperature": 0.8, "seed": seed,
            })
        };
        // 3a. One Best-of-8 request.
        let (mut ours, mut theirs, mut theirs_gen) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..reps {
            let t = Instant::now();
            let mut b = body(r);
            b["best_of"] = json!(8);
            chat(&client, &base, b).await?;
            ours.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let answers = futures_util::future::try_join_all(
                (0..8).map(|k| chat(&client, &peer, body(100 * r + k))),
            )
            .await?;
            theirs_gen.push(t.elapsed().as_secs_f64());
            let inputs: Vec<RewardInput> = answers
                .iter()
                .map(|(text, _)| RewardInput::new(prompt, text.clone()))
                .collect();
            let scores = reward.score(&inputs)?;
            anyhow::ensure!(scores.len() == 8);
            theirs.push(t.elapsed().as_secs_f64());
        }
        let (o, p, g) = (
            quantile(&mut ours, 0.5),
            quantile(&mut theirs, 0.5),
            quantile(&mut theirs_gen, 0.5),
        );
        println!(
            "Best-of-8 ({tokens} tokens each), median of {reps}: thresh {o:.2} s; peer {p:.2} s \
             ({g:.2} s sampling + {:.2} s MiniLM scoring); thresh / peer = {:.2}",
            p - g,
            o / p
        );
        // 3b. 8 concurrent plain requests.
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for r in 0..reps {
            for (target, out) in [(&base, &mut ours), (&peer, &mut theirs)] {
                let t = Instant::now();
                let answers = futures_util::future::try_join_all(
                    (0..8).map(|k| chat(&client, target, body(1000 + 10 * r + k))),
                )
                .await?;
                let toks: u64 = answers.iter().map(|a| a.1).sum();
                out.push(toks as f64 / t.elapsed().as_secs_f64());
            }
        }
        let (o, p) = (quantile(&mut ours, 0.5), quantile(&mut theirs, 0.5));
        println!(
            "8 concurrent plain requests ({tokens} tokens each), median of {reps}: thresh {o:.1} tok/s, \
             peer {p:.1} tok/s; thresh / peer = {:.2}",
            o / p
        );
    }
    server.shutdown();
    server.wait().await?;
    Ok(())
}

/// Part 4: Best-of-8 on Hugging Face transformers (sampling in a Python subprocess, scoring
/// in process), against thresh's `best_of: 8` measured right before it.
async fn transformers_best_of_8(
    python: &str,
    gguf: &std::path::Path,
    reward: &dyn thresh_reward::RewardModel,
    prompt: &str,
    tokens: usize,
    client: &reqwest::Client,
    base: &str,
) -> anyhow::Result<()> {
    let reps: usize = env_or("BENCH_PEER_REPS", "3").parse()?;
    let mut ours = Vec::new();
    for r in 0..reps {
        let t = Instant::now();
        chat(
            client,
            base,
            json!({
                "messages": [{"role": "user", "content": prompt}], "best_of": 8,
                "max_tokens": tokens, "ignore_eos": true, "temperature": 0.8, "seed": r,
            }),
        )
        .await?;
        ours.push(t.elapsed().as_secs_f64());
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/bench_transformers.py"
    );
    let out = std::process::Command::new(python)
        .arg(script)
        .arg("--gguf")
        .arg(gguf)
        .args(["--prompt", prompt])
        .args(["--tokens", &tokens.to_string(), "--reps", &reps.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(out.status.success(), "{script} failed: {}", out.status);
    let (mut gen_s, mut total_s) = (Vec::new(), Vec::new());
    for line in String::from_utf8(out.stdout)?.lines() {
        let v: Value = serde_json::from_str(line)?;
        let answers: Vec<RewardInput> = v["answers"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("no answers in {line}"))?
            .iter()
            .map(|a| RewardInput::new(prompt, a.as_str().unwrap_or_default()))
            .collect();
        anyhow::ensure!(answers.len() == 8, "8 answers expected: {line}");
        let t = Instant::now();
        reward.score(&answers)?;
        let seconds = v["seconds"].as_f64().unwrap_or(f64::NAN);
        gen_s.push(seconds);
        total_s.push(seconds + t.elapsed().as_secs_f64());
    }
    let (o, g, p) = (
        quantile(&mut ours, 0.5),
        quantile(&mut gen_s, 0.5),
        quantile(&mut total_s, 0.5),
    );
    println!(
        "Best-of-8 ({tokens} tokens each), median of {reps}: thresh {o:.2} s; transformers {p:.2} s \
         ({g:.2} s sampling + {:.2} s MiniLM scoring); thresh / transformers = {:.2}",
        p - g,
        o / p
    );
    Ok(())
}

/// One chat completion: the first choice's text and the completion tokens from `usage`.
async fn chat(client: &reqwest::Client, base: &str, body: Value) -> anyhow::Result<(String, u64)> {
    let r = client
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    anyhow::ensure!(status.is_success(), "{base}: {status}: {v}");
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("{base}: no answer in {v}"))?
        .to_string();
    let tokens = v["usage"]["completion_tokens"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("{base}: no usage in {v}"))?;
    Ok((text, tokens))
}
