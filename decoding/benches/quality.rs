//! Reward versus compute: Best-of-N against Speculative Rejection on the same engine, and how
//! well partial rewards predict final ones.
//!
//! `cargo bench -p thresh-decoding --bench quality -- [--prompts 30] [--out bench-out]
//!  [--alphas 0.5,0.7,0.9,auto] [--sr-batches budget,16,32]`
//!
//! SmolLM2-135M-Instruct (q8_0, temperature 1.0, top-k 50, at most 128 new tokens) and the
//! MiniLM relevance reward, over the instruction prompts in `bench/data/instructions.jsonl`.
//! Per prompt: one pool of 16 n0 = 64 samples gives Best-of-N for N = n0..16 n0 (rows
//! 0..N; rows are seeded `seed + r` and batch-invariant, so rows 0..n0 are exactly the
//! Bo_n0 run); Bo_n0 is also run alone to measure its compute, and Best-of-N's compute is
//! counted as N / n0 times that (the paper's relative-compute metric: Best-of-N beyond one
//! batch counted as several devices). Speculative Rejection runs for real, for every alpha
//! (a fraction or `auto`) and initial batch: `budget` is the paper's setting (B = n0
//! (prompt + 128), N0 = B / (prompt + 8), rounds by the budget rule); a number is that
//! initial batch with the server's default schedule (decisions at 16, 32 and 64 tokens).
//! Improvement score: `100 (1 + (max_method - max_Bo_n0) / (max_Bo_n0 - min_Bo_n0))`,
//! averaged over prompts; each Speculative Rejection row also gives the Best-of-N of equal
//! score (interpolated in log2 N) and the saving against it.
//!
//! The partial-reward report (the paper's Figure 2): for every pool sample, the reward of its
//! first 8, 16, 32 and 64 tokens against the reward of the whole answer, as Pearson and
//! Kendall correlations per prompt, averaged.
//!
//! Writes tables to stdout, and `quality.json`, `quality.svg` (score against compute) and
//! `partial-reward.svg` (correlation against tokens) to `--out`.

use std::path::PathBuf;
use std::time::Instant;

use thresh_decoding::strategy::{
    Rejection, Schedule, SpeculativeParams, Strategy, StrategyInput, StrategyOutput,
};
use thresh_decoding::{SamplingParams, StopConditions};
use thresh_models::bench::{arg, kendall_tau_b, pearson};
use thresh_models::{ChatMessage, GgmlDType, LoadOptions, load};
use thresh_reward::{Prompt, RelevanceReward, RewardInput, RewardModel};

#[path = "quality/report.rs"]
mod report;

use report::{Point, matched, svg_correlation, svg_score};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const N0: usize = 4;
const MAX_NEW: usize = 128;
const PARTIAL_AT: [usize; 4] = [8, 16, 32, 64];

fn compute(o: &StrategyOutput, wall: f64) -> (f64, f64) {
    (
        wall,
        (o.stats.policy_tokens + o.stats.reward_tokens + o.stats.prompt_tokens) as f64,
    )
}

/// One Speculative Rejection configuration of the sweep.
struct SrConfig {
    label: String,
    rejection: Rejection,
    /// `None`: the paper's budget setting; `Some(n)`: that initial batch, default schedule.
    batch: Option<usize>,
}

fn sr_configs() -> Vec<SrConfig> {
    let alphas = arg("--alphas").unwrap_or_else(|| "0.5,0.7,0.9,auto".into());
    let batches = arg("--sr-batches").unwrap_or_else(|| "budget,16,32".into());
    let mut out = Vec::new();
    for b in batches.split(',') {
        let batch = match b {
            "budget" => None,
            n => Some(n.parse().expect("--sr-batches: budget or numbers")),
        };
        for a in alphas.split(',') {
            let rejection = match a {
                "auto" => Rejection::Auto,
                x => Rejection::Fixed(x.parse().expect("--alphas: numbers or auto")),
            };
            let batch_label = batch.map_or("budget".to_string(), |n| format!("N0={n}"));
            out.push(SrConfig {
                label: format!("SpecRej {batch_label} alpha={a}"),
                rejection,
                batch,
            });
        }
    }
    out
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
    let configs = sr_configs();
    // Per method: sums over prompts of (improvement, time ratio, token ratio).
    let mut acc: Vec<(String, f64, f64, f64)> = ns
        .iter()
        .map(|n| (format!("BoN N={n}"), 0.0, 0.0, 0.0))
        .chain(configs.iter().map(|c| (c.label.clone(), 0.0, 0.0, 0.0)))
        .collect();
    // Per prompt, per partial length: (Pearson, Kendall).
    let mut corr: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut no_decision = vec![0usize; configs.len()];
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
        let input = StrategyInput::new(
            &m.decoder,
            &m.tokenizer,
            &ids,
            Prompt::Text(q.clone()),
            sampling,
            MAX_NEW,
        );
        let t = Instant::now();
        let bo_n0 = Strategy::BestOfN { candidates: N0 }
            .run(&input, &reward)
            .expect("Bo_n0");
        let (n0_time, n0_tokens) = compute(&bo_n0, t.elapsed().as_secs_f64());
        let pool = Strategy::BestOfN {
            candidates: 16 * N0,
        }
        .run(&input, &reward)
        .expect("pool");
        let pool_cands = pool.candidates.as_ref().expect("candidates");
        let pool_scores: Vec<f64> = pool_cands.iter().map(|c| c.score as f64).collect();
        corr.push(partial_correlations(
            &m.tokenizer,
            &reward,
            &input.reward_prompt,
            pool_cands,
            &pool_scores,
        ));
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
        for (k, c) in configs.iter().enumerate() {
            let params = SpeculativeParams {
                rejection: c.rejection,
                kv_budget_tokens: N0 * (ids.len() + MAX_NEW),
                max_batch: 256,
                initial_batch: c.batch,
                schedule: if c.batch.is_none() {
                    Some(Schedule::Budget)
                } else {
                    None
                },
            };
            let t = Instant::now();
            let sr = Strategy::Speculative(params)
                .run(&input, &reward)
                .expect("speculative rejection");
            let (time, tokens) = compute(&sr, t.elapsed().as_secs_f64());
            no_decision[k] += usize::from(sr.stats.no_decision.is_some());
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
    println!(
        "| method | improvement score | wall time / Bo_n0 | tokens / Bo_n0 | Best-of-N at equal score | wall time saving | token saving | prompts without a decision |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let bon: Vec<(f64, f64)> = ns
        .iter()
        .zip(&points)
        .map(|(&n, p)| (n as f64, p.score))
        .collect();
    let mut json = Vec::new();
    for (k, p) in points.iter().enumerate() {
        let sr = k >= ns.len();
        let eq = sr.then(|| matched(&bon, p.score)).flatten();
        let cells = match eq {
            Some(n) => {
                let scale = n / N0 as f64;
                format!("{n:.1} | {:.2}x | {:.2}x", scale / p.time, scale / p.tokens)
            }
            None if sr => "below Bo_n0 or above Bo_64 | - | -".into(),
            None => "- | - | -".into(),
        };
        let nd = if sr {
            no_decision[k - ns.len()].to_string()
        } else {
            "-".into()
        };
        println!(
            "| {} | {:.1} | {:.2} | {:.2} | {cells} | {nd} |",
            p.label, p.score, p.time, p.tokens
        );
        json.push(serde_json::json!({"method": p.label, "improvement": p.score, "time_ratio": p.time, "token_ratio": p.tokens, "best_of_n_at_equal_score": eq}));
    }
    let mean_corr: Vec<(usize, f64, f64)> = PARTIAL_AT
        .iter()
        .enumerate()
        .map(|(i, &at)| {
            let mean = |f: &dyn Fn(&(f64, f64)) -> f64| {
                let v: Vec<f64> = corr
                    .iter()
                    .map(|c| f(&c[i]))
                    .filter(|x| !x.is_nan())
                    .collect();
                v.iter().sum::<f64>() / v.len().max(1) as f64
            };
            (at, mean(&|c| c.0), mean(&|c| c.1))
        })
        .collect();
    println!(
        "\nPartial reward against final reward over the 64-sample pools (mean over prompts):\n"
    );
    println!("| tokens | Pearson | Kendall tau-b |\n|---:|---:|---:|");
    for (at, p, k) in &mean_corr {
        println!("| {at} | {p:.3} | {k:.3} |");
    }
    println!("\nPer prompt (Pearson / Kendall at {PARTIAL_AT:?} tokens):");
    for (pi, c) in corr.iter().enumerate() {
        let cells: Vec<String> = c.iter().map(|(p, k)| format!("{p:.2}/{k:.2}")).collect();
        println!("prompt {pi}: {}", cells.join(" "));
    }
    std::fs::create_dir_all(&out_dir).expect("out dir");
    let corr_json: Vec<_> = corr
        .iter()
        .map(|c| {
            c.iter()
                .zip(PARTIAL_AT)
                .map(|((p, k), at)| serde_json::json!({"tokens": at, "pearson": p, "kendall": k}))
                .collect::<Vec<_>>()
        })
        .collect();
    std::fs::write(
        out_dir.join("quality.json"),
        serde_json::to_string_pretty(
            &serde_json::json!({"methods": json, "partial_reward": corr_json}),
        )
        .expect("json"),
    )
    .expect("write json");
    std::fs::write(out_dir.join("quality.svg"), svg_score(&points, N0)).expect("write svg");
    std::fs::write(
        out_dir.join("partial-reward.svg"),
        svg_correlation(&mean_corr),
    )
    .expect("write svg");
}

/// Pearson and Kendall correlation between the reward of each candidate's first `n` tokens
/// and its final reward, for each `n` of [`PARTIAL_AT`].
fn partial_correlations(
    tokenizer: &thresh_models::Tokenizer,
    reward: &RelevanceReward,
    prompt: &Prompt,
    cands: &[thresh_decoding::strategy::Candidate],
    finals: &[f64],
) -> Vec<(f64, f64)> {
    let inputs: Vec<RewardInput> = PARTIAL_AT
        .iter()
        .flat_map(|&at| {
            cands.iter().map(move |c| RewardInput {
                prompt: prompt.clone(),
                response: tokenizer
                    .decode(&c.tokens[..at.min(c.tokens.len())], true)
                    .expect("decode"),
            })
        })
        .collect();
    let scored = reward.score(&inputs).expect("partial scores");
    scored
        .chunks(cands.len())
        .map(|chunk| {
            let partial: Vec<f64> = chunk.iter().map(|s| s.score as f64).collect();
            (pearson(&partial, finals), kendall_tau_b(&partial, finals))
        })
        .collect()
}
