//! Reward versus compute: Best-of-N against Speculative Rejection on the same engine.
//!
//! `cargo bench -p thresh-decoding --bench quality -- [--prompts 30] [--out bench-out]`
//!
//! SmolLM2-135M-Instruct (q8_0, temperature 1.0, top-k 50, at most 128 new tokens) and the
//! MiniLM relevance reward, over the instruction prompts in `bench/data/instructions.jsonl`.
//! Per prompt: one pool of 16 n0 = 64 samples gives Best-of-N for N = n0..16 n0 (rows
//! 0..N; rows are seeded `seed + r` and batch-invariant, so rows 0..n0 are exactly the
//! Bo_n0 run); Bo_n0 is also run alone to measure its compute, and Best-of-N's compute is
//! counted as N / n0 times that. Speculative Rejection runs with alpha in {0.3, 0.5, 0.7,
//! 0.9} and B = n0 (prompt + 128). Improvement score: `100 (1 + (max_method - max_Bo_n0) /
//! (max_Bo_n0 - min_Bo_n0))`, averaged over prompts. Writes a table to stdout, and
//! `quality.json` and `quality.svg` (score against compute, log axis) to `--out`.

use std::path::PathBuf;
use std::time::Instant;
use thresh_models::bench::arg;

use thresh_decoding::strategy::{
    SpeculativeParams, StrategyInput, StrategyOutput, best_of_n, speculative_rejection,
};
use thresh_decoding::{SamplingParams, StopConditions};
use thresh_models::{ChatMessage, GgmlDType, LoadOptions, load};
use thresh_reward::{Prompt, RelevanceReward};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const N0: usize = 4;
const MAX_NEW: usize = 128;

struct Point {
    label: String,
    score: f64,
    time: f64,
    tokens: f64,
}

fn compute(o: &StrategyOutput, wall: f64) -> (f64, f64) {
    (
        wall,
        (o.stats.policy_tokens + o.stats.reward_tokens + o.stats.prompt_tokens) as f64,
    )
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let models = thresh_models::testing::demo_models_dir();
    let n_prompts: usize =
        arg("--prompts").map_or(30, |v| v.parse().expect("--prompts takes a number"));
    let out_dir = arg("--out").map_or_else(|| root.join("bench-out"), PathBuf::from);
    let policy_path = models.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let opts = LoadOptions {
        quant: Some(GgmlDType::Q8_0),
        ..Default::default()
    };
    let m = load(policy_path.to_str().expect("utf-8 path"), &opts).expect("load policy");
    let reward = RelevanceReward::load(&models.join("all-minilm-l6-v2"), &candle_core::Device::Cpu)
        .expect("load reward");
    let prompts: Vec<String> = std::fs::read_to_string(root.join("bench/data/instructions.jsonl"))
        .expect("prompt set")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("jsonl")["prompt"]
                .as_str()
                .expect("prompt")
                .to_string()
        })
        .take(n_prompts)
        .collect();
    let ns = [N0, 2 * N0, 4 * N0, 8 * N0, 16 * N0];
    let alphas = [0.3f32, 0.5, 0.7, 0.9];
    // Per method: sums over prompts of (improvement, time ratio, token ratio).
    let mut acc: Vec<(String, f64, f64, f64)> = ns
        .iter()
        .map(|n| (format!("BoN N={n}"), 0.0, 0.0, 0.0))
        .chain(
            alphas
                .iter()
                .map(|a| (format!("SpecRej alpha={a}"), 0.0, 0.0, 0.0)),
        )
        .collect();
    let mut n0_stats = Vec::new();
    // Warm-up: candle repacks quantised weights on their first use; keep that out of timings.
    {
        let ids = m.tokenizer.encode("Hello", false).expect("encode");
        let g = thresh_decoding::generate(
            &m.decoder,
            &m.tokenizer,
            &ids,
            4,
            &SamplingParams::default(),
            &StopConditions {
                max_tokens: 4,
                ..Default::default()
            },
        );
        g.expect("warm-up");
    }
    for (pi, q) in prompts.iter().enumerate() {
        let text = m
            .chat_template
            .as_ref()
            .expect("template")
            .render(&[ChatMessage::new("user", q)], true)
            .expect("render");
        let ids = m.tokenizer.encode(&text, false).expect("encode");
        let sampling = SamplingParams {
            temperature: 1.0,
            top_k: 50,
            seed: 1000 * pi as u64,
            ..Default::default()
        };
        let input = StrategyInput {
            decoder: &m.decoder,
            tokenizer: &m.tokenizer,
            prompt_ids: &ids,
            reward_prompt: Prompt::Text(q.clone()),
            sampling,
            stop: StopConditions {
                max_tokens: MAX_NEW,
                ..Default::default()
            },
            top_k: 1,
            return_candidates: true,
            cancel: None,
            stepper: None,
            prefix_cache: None,
        };
        let t = Instant::now();
        let bo_n0 = best_of_n(&input, &reward, N0).expect("Bo_n0");
        let (n0_time, n0_tokens) = compute(&bo_n0, t.elapsed().as_secs_f64());
        let pool = best_of_n(&input, &reward, 16 * N0).expect("pool");
        let pool_scores: Vec<f64> = pool
            .candidates
            .as_ref()
            .expect("candidates")
            .iter()
            .map(|c| c.score as f64)
            .collect();
        let base: Vec<f64> = pool_scores[..N0].to_vec();
        let (bmax, bmin) = (
            base.iter().cloned().fold(f64::MIN, f64::max),
            base.iter().cloned().fold(f64::MAX, f64::min),
        );
        let improvement = |best: f64| 100.0 * (1.0 + (best - bmax) / (bmax - bmin).max(1e-6));
        for (k, &n) in ns.iter().enumerate() {
            let best = pool_scores[..n].iter().cloned().fold(f64::MIN, f64::max);
            let scale = (n / N0) as f64;
            acc[k].1 += improvement(best);
            acc[k].2 += scale;
            acc[k].3 += scale;
        }
        for (k, &alpha) in alphas.iter().enumerate() {
            let params = SpeculativeParams {
                alpha,
                kv_budget_tokens: N0 * (ids.len() + MAX_NEW),
                max_batch: 256,
                initial_batch: None,
                decision_tokens: None,
            };
            let t = Instant::now();
            let sr =
                speculative_rejection(&input, &reward, &params).expect("speculative rejection");
            let (time, tokens) = compute(&sr, t.elapsed().as_secs_f64());
            let row = &mut acc[ns.len() + k];
            row.1 += improvement(sr.best[0].score as f64);
            row.2 += time / n0_time;
            row.3 += tokens / n0_tokens;
        }
        n0_stats.push((n0_time, n0_tokens));
        eprintln!("prompt {}/{} done", pi + 1, prompts.len());
    }
    let np = prompts.len() as f64;
    let points: Vec<Point> = acc
        .iter()
        .map(|(l, s, t, k)| Point {
            label: l.clone(),
            score: s / np,
            time: t / np,
            tokens: k / np,
        })
        .collect();
    println!(
        "{} prompts; Bo_n0 (n0 = {N0}) mean wall time {:.2} s, mean policy+reward+prompt tokens {:.0}",
        prompts.len(),
        n0_stats.iter().map(|x| x.0).sum::<f64>() / np,
        n0_stats.iter().map(|x| x.1).sum::<f64>() / np
    );
    println!("| method | improvement score | wall time / Bo_n0 | tokens / Bo_n0 |");
    println!("|---|---:|---:|---:|");
    for p in &points {
        println!(
            "| {} | {:.1} | {:.2} | {:.2} |",
            p.label, p.score, p.time, p.tokens
        );
    }
    std::fs::create_dir_all(&out_dir).expect("out dir");
    let json: Vec<_> = points
        .iter()
        .map(|p| serde_json::json!({"method": p.label, "improvement": p.score, "time_ratio": p.time, "token_ratio": p.tokens}))
        .collect();
    std::fs::write(
        out_dir.join("quality.json"),
        serde_json::to_string_pretty(&json).expect("json"),
    )
    .expect("write json");
    std::fs::write(out_dir.join("quality.svg"), svg(&points)).expect("write svg");
}

/// Score against compute (wall time relative to Bo_n0, log axis).
fn svg(points: &[Point]) -> String {
    let (w, h, m) = (640.0, 400.0, 60.0);
    let xs: Vec<f64> = points.iter().map(|p| p.time.max(1e-3).log2()).collect();
    let (xmin, xmax) = (
        xs.iter().cloned().fold(f64::MAX, f64::min) - 0.5,
        xs.iter().cloned().fold(f64::MIN, f64::max) + 0.5,
    );
    let (ymin, ymax) = (
        points.iter().map(|p| p.score).fold(f64::MAX, f64::min) - 10.0,
        points.iter().map(|p| p.score).fold(f64::MIN, f64::max) + 10.0,
    );
    let px = |x: f64| m + (x - xmin) / (xmax - xmin) * (w - 2.0 * m);
    let py = |y: f64| h - m - (y - ymin) / (ymax - ymin) * (h - 2.0 * m);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    s += &format!(
        "<line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - m,
        w - m,
        h - m,
        h - m
    );
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">wall time relative to Best-of-{N0} (log2)</text>\n",
        w / 2.0,
        h - 20.0
    );
    s += &format!(
        "<text x=\"15\" y=\"{}\" transform=\"rotate(-90 15 {})\" text-anchor=\"middle\">improvement score</text>\n",
        h / 2.0,
        h / 2.0
    );
    let mut tick = xmin.ceil();
    while tick <= xmax {
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}x</text>\n",
            px(tick),
            h - m + 15.0,
            2f64.powf(tick)
        );
        tick += 1.0;
    }
    for y in [ymin, (ymin + ymax) / 2.0, ymax] {
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.0}</text>\n",
            m - 5.0,
            py(y) + 4.0,
            y
        );
    }
    for (p, x) in points.iter().zip(&xs) {
        let (color, label) = if p.label.starts_with("BoN") {
            ("#1f77b4", p.label.trim_start_matches("BoN ").to_string())
        } else {
            (
                "#d62728",
                p.label.trim_start_matches("SpecRej ").to_string(),
            )
        };
        s += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{color}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">{label}</text>\n",
            px(*x),
            py(p.score),
            px(*x) + 7.0,
            py(p.score) - 7.0
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"20\" fill=\"#1f77b4\">Best-of-N (by N)</text><text x=\"{}\" y=\"35\" fill=\"#d62728\">Speculative Rejection (by alpha)</text>\n</svg>\n",
        m, m
    );
    s
}
