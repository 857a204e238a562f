//! `thresh-bench quality`: the reward-versus-compute sweep over HTTP. Per prompt, Best-of-N
//! for N in multiples of n0 and Speculative Rejection for each alpha, all with the same seed
//! (rows are seeded `seed + r`, so Best-of-N's first n0 rows are exactly Bo_n0's). Improvement
//! score as in `decoding/benches/quality.rs`: `100 (1 + (r - max_Bo_n0) / (max_Bo_n0 -
//! min_Bo_n0))` where `r` is the reward of the returned answer and the max and min run over
//! Bo_n0's candidates, so Bo_n0 scores 100. Compute is the client's wall time and the policy,
//! reward and prompt tokens of thresh's `alignment.stats`, relative to Bo_n0.

use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::{self, AlignmentParams, Outcome, RequestParams, Target};
use crate::dataset::WorkItem;
use crate::error::BenchError;

/// The schema tag of quality results.
pub const QUALITY_SCHEMA: &str = "thresh-bench/quality/v1";

/// Settings of a sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QualitySettings {
    /// Base URL of the target.
    pub base_url: String,
    /// `completions` or `chat`.
    pub endpoint: String,
    /// The workload's name.
    pub dataset: String,
    /// Prompts swept.
    pub prompts: usize,
    /// The Best-of-N baseline's N.
    pub n0: usize,
    /// Best-of-N runs at N = n0 times each of these.
    pub multiples: Vec<usize>,
    /// Speculative Rejection's alphas.
    pub alphas: Vec<f64>,
    /// Speculative Rejection's initial batch.
    pub sr_candidates: usize,
    /// New tokens per answer at most.
    pub max_tokens: usize,
    /// Sampling temperature.
    pub temperature: f64,
    /// Top-k.
    pub top_k: usize,
    /// Prompt i is sampled with seed `seed + 1000 i`.
    pub seed: u64,
}

/// The compute of one request.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Compute {
    /// Client-measured wall time in seconds.
    pub wall_s: f64,
    /// Tokens decoded by the policy.
    pub policy_tokens: f64,
    /// Tokens read by the reward model.
    pub reward_tokens: f64,
    /// Prompt tokens prefilled.
    pub prompt_tokens: f64,
}

impl Compute {
    /// Policy plus reward plus prompt tokens.
    pub fn tokens(&self) -> f64 {
        self.policy_tokens + self.reward_tokens + self.prompt_tokens
    }
}

/// One method on one prompt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodRun {
    /// `BoN N=8` or `SpecRej alpha=0.5`.
    pub label: String,
    /// Reward of the returned answer.
    pub reward: f64,
    /// Improvement score (Bo_n0 = 100).
    pub improvement: f64,
    /// Its compute.
    pub compute: Compute,
    /// Wall time relative to Bo_n0.
    pub time_ratio: f64,
    /// Policy + reward + prompt tokens relative to Bo_n0.
    pub token_ratio: f64,
}

/// One prompt's sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromptRun {
    /// Index in the workload.
    pub index: usize,
    /// The prompt (a conversation's last message).
    pub prompt: String,
    /// Lowest reward among Bo_n0's candidates.
    pub bo_n0_min_reward: f64,
    /// Highest reward among Bo_n0's candidates.
    pub bo_n0_max_reward: f64,
    /// Bo_n0's compute.
    pub bo_n0_compute: Compute,
    /// Every method, Best-of-N first.
    pub methods: Vec<MethodRun>,
}

/// One method averaged over prompts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodSummary {
    /// `BoN N=8` or `SpecRej alpha=0.5`.
    pub label: String,
    /// `best_of_n` or `speculative_rejection`.
    pub strategy: String,
    /// Best-of-N's N.
    pub n: Option<usize>,
    /// Speculative Rejection's alpha.
    pub alpha: Option<f64>,
    /// Mean improvement score.
    pub improvement: f64,
    /// Mean wall-time ratio to Bo_n0.
    pub time_ratio: f64,
    /// Mean token ratio to Bo_n0.
    pub token_ratio: f64,
    /// Mean policy-token ratio to Bo_n0.
    pub policy_token_ratio: f64,
    /// Mean reward-token ratio to Bo_n0.
    pub reward_token_ratio: f64,
}

/// The result of `thresh-bench quality`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QualityReport {
    /// [`QUALITY_SCHEMA`].
    pub schema: String,
    /// The settings.
    pub settings: QualitySettings,
    /// Per prompt.
    pub prompts: Vec<PromptRun>,
    /// Per method, averaged over prompts.
    pub methods: Vec<MethodSummary>,
}

/// A sweep to run.
#[derive(Debug, Clone)]
pub struct QualityConfig {
    /// The thresh server.
    pub target: Target,
    /// Prompts (the first `settings.prompts` are used).
    pub items: Vec<WorkItem>,
    /// What to sweep.
    pub settings: QualitySettings,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Draw a progress bar.
    pub progress: bool,
}

/// `100 (1 + (best - max) / (max - min))`, the spread floored at 1e-6 as in the in-process
/// benchmark.
pub fn improvement(best: f64, bo_min: f64, bo_max: f64) -> f64 {
    100.0 * (1.0 + (best - bo_max) / (bo_max - bo_min).max(1e-6))
}

struct Method {
    label: String,
    strategy: &'static str,
    n: Option<usize>,
    alpha: Option<f64>,
    candidates: usize,
}

fn methods(s: &QualitySettings) -> Vec<Method> {
    let bon = s.multiples.iter().map(|&m| Method {
        label: format!("BoN N={}", m * s.n0),
        strategy: "best_of_n",
        n: Some(m * s.n0),
        alpha: None,
        candidates: m * s.n0,
    });
    let sr = s.alphas.iter().map(|&a| Method {
        label: format!("SpecRej alpha={a}"),
        strategy: "speculative_rejection",
        n: None,
        alpha: Some(a),
        candidates: s.sr_candidates,
    });
    bon.chain(sr).collect()
}

fn num(v: &Value, path: &str) -> f64 {
    v["stats"][path].as_f64().unwrap_or(0.0)
}

struct Reply {
    reward: f64,
    compute: Compute,
    candidate_rewards: Vec<f64>,
}

fn reply(o: Outcome, url: &str, label: &str) -> Result<Reply, BenchError> {
    if let Some(f) = o.failure {
        let status = f
            .status
            .map_or("no response".to_string(), |s| format!("status {s}"));
        return Err(BenchError::Server {
            url: url.to_string(),
            message: format!("{label}: {status}: {}", f.message),
        });
    }
    let missing = |what: &str| BenchError::Server {
        url: url.to_string(),
        message: format!(
            "{label}: the response has no {what}; the quality sweep needs a thresh server (alignment extension)"
        ),
    };
    let reward = o.reward.ok_or_else(|| missing("choices[0].reward"))?;
    let a = o.alignment.ok_or_else(|| missing("alignment object"))?;
    let candidate_rewards = a["candidates"]
        .as_array()
        .map(|c| c.iter().filter_map(|x| x["reward"].as_f64()).collect())
        .unwrap_or_default();
    Ok(Reply {
        reward,
        compute: Compute {
            wall_s: o.latency,
            policy_tokens: num(&a, "policy_tokens"),
            reward_tokens: num(&a, "reward_tokens"),
            prompt_tokens: num(&a, "prompt_tokens"),
        },
        candidate_rewards,
    })
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn prompt_text(item: &WorkItem) -> String {
    match &item.input {
        crate::dataset::Input::Text(t) => t.clone(),
        crate::dataset::Input::Messages(m) => {
            m.last().map(|m| m.content.clone()).unwrap_or_default()
        }
    }
}

/// Runs the sweep.
pub async fn run_quality(cfg: QualityConfig) -> Result<QualityReport, BenchError> {
    let s = &cfg.settings;
    if s.n0 == 0 || s.multiples.is_empty() || s.multiples.contains(&0) {
        return Err(BenchError::Config(
            "--n0 and every --multiples value must be at least 1".into(),
        ));
    }
    if s.alphas.iter().any(|a| !(0.0..1.0).contains(a)) {
        return Err(BenchError::Config(
            "every --alphas value must be in [0, 1)".into(),
        ));
    }
    if s.prompts == 0 || s.prompts > cfg.items.len() {
        return Err(BenchError::Config(format!(
            "--prompts must be in [1, {}] (the prompts in the dataset), got {}",
            cfg.items.len(),
            s.prompts
        )));
    }
    let http = client::http_client(cfg.timeout)?;
    crate::load::preflight(&http, &cfg.target).await?;
    let url = format!("{}{}", cfg.target.base_url, cfg.target.endpoint.path());
    let ms = methods(s);
    let bar = if cfg.progress {
        ProgressBar::new((s.prompts * (ms.len() + 1)) as u64)
    } else {
        ProgressBar::hidden()
    };
    let send = async |item: &WorkItem,
                      strategy: &str,
                      candidates: usize,
                      alpha: Option<f64>,
                      want_candidates: bool,
                      seed: u64| {
        let params = RequestParams {
            max_tokens: s.max_tokens,
            stream: false,
            temperature: Some(s.temperature),
            top_k: Some(s.top_k),
            alignment: AlignmentParams {
                strategy: Some(strategy.to_string()),
                candidates: Some(candidates),
                alpha,
                return_candidates: want_candidates,
            },
        };
        let body = client::body(&cfg.target, item, &params, Some(seed))?;
        Ok::<_, BenchError>(client::send(&http, &cfg.target, &body, Instant::now()).await)
    };
    // Warm-up (weights repacked on first use, caches filled): not measured.
    let first = &cfg.items[0];
    let o = send(first, "best_of_n", s.n0, None, false, s.seed).await?;
    reply(o, &url, "warm-up")?;
    let mut prompts = Vec::new();
    for (pi, item) in cfg.items.iter().take(s.prompts).enumerate() {
        let seed = s.seed.wrapping_add(1000 * pi as u64);
        let o = send(item, "best_of_n", s.n0, None, true, seed).await?;
        let base = reply(o, &url, &format!("prompt {pi}: Bo_n0"))?;
        bar.inc(1);
        if base.candidate_rewards.is_empty() {
            return Err(BenchError::Server {
                url,
                message: "the response has no alignment.candidates rewards; the quality sweep needs a thresh server".into(),
            });
        }
        let lo = base
            .candidate_rewards
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let hi = base
            .candidate_rewards
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let mut runs = Vec::new();
        for m in &ms {
            let o = send(item, m.strategy, m.candidates, m.alpha, false, seed).await?;
            let r = reply(o, &url, &format!("prompt {pi}: {}", m.label))?;
            bar.inc(1);
            runs.push(MethodRun {
                label: m.label.clone(),
                reward: r.reward,
                improvement: improvement(r.reward, lo, hi),
                compute: r.compute,
                time_ratio: ratio(r.compute.wall_s, base.compute.wall_s),
                token_ratio: ratio(r.compute.tokens(), base.compute.tokens()),
            });
        }
        prompts.push(PromptRun {
            index: pi,
            prompt: prompt_text(item),
            bo_n0_min_reward: lo,
            bo_n0_max_reward: hi,
            bo_n0_compute: base.compute,
            methods: runs,
        });
    }
    bar.finish_and_clear();
    let np = prompts.len() as f64;
    let summaries = ms
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let mean = |f: &dyn Fn(&PromptRun) -> f64| prompts.iter().map(f).sum::<f64>() / np;
            MethodSummary {
                label: m.label.clone(),
                strategy: m.strategy.to_string(),
                n: m.n,
                alpha: m.alpha,
                improvement: mean(&|p| p.methods[k].improvement),
                time_ratio: mean(&|p| p.methods[k].time_ratio),
                token_ratio: mean(&|p| p.methods[k].token_ratio),
                policy_token_ratio: mean(&|p| {
                    ratio(
                        p.methods[k].compute.policy_tokens,
                        p.bo_n0_compute.policy_tokens,
                    )
                }),
                reward_token_ratio: mean(&|p| {
                    ratio(
                        p.methods[k].compute.reward_tokens,
                        p.bo_n0_compute.reward_tokens,
                    )
                }),
            }
        })
        .collect();
    Ok(QualityReport {
        schema: QUALITY_SCHEMA.into(),
        settings: cfg.settings.clone(),
        prompts,
        methods: summaries,
    })
}

impl QualityReport {
    /// The Markdown table of the method summaries.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} prompts; Bo_n0 (n0 = {}) mean wall time {:.2} s, mean policy+reward+prompt tokens {:.0}\n",
            self.prompts.len(),
            self.settings.n0,
            self.prompts
                .iter()
                .map(|p| p.bo_n0_compute.wall_s)
                .sum::<f64>()
                / self.prompts.len().max(1) as f64,
            self.prompts
                .iter()
                .map(|p| p.bo_n0_compute.tokens())
                .sum::<f64>()
                / self.prompts.len().max(1) as f64,
        );
        s += "| method | improvement score | wall time / Bo_n0 | tokens / Bo_n0 | policy tokens / Bo_n0 | reward tokens / Bo_n0 |\n";
        s += "|---|---:|---:|---:|---:|---:|\n";
        for m in &self.methods {
            s += &format!(
                "| {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                m.label,
                m.improvement,
                m.time_ratio,
                m.token_ratio,
                m.policy_token_ratio,
                m.reward_token_ratio
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn improvement_score_is_a_hundred_at_bo_n0s_best() {
        assert_eq!(improvement(0.8, 0.2, 0.8), 100.0);
        // One Bo_n0 spread above its best: 200; at its worst: 0.
        assert!((improvement(1.4, 0.2, 0.8) - 200.0).abs() < 1e-9);
        assert!(improvement(0.2, 0.2, 0.8).abs() < 1e-9);
    }

    #[test]
    fn methods_follow_the_settings() {
        let s = QualitySettings {
            base_url: String::new(),
            endpoint: "chat".into(),
            dataset: "builtin".into(),
            prompts: 1,
            n0: 4,
            multiples: vec![1, 2, 4],
            alphas: vec![0.5],
            sr_candidates: 16,
            max_tokens: 8,
            temperature: 1.0,
            top_k: 50,
            seed: 0,
        };
        let m = methods(&s);
        let labels: Vec<&str> = m.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(
            labels,
            ["BoN N=4", "BoN N=8", "BoN N=16", "SpecRej alpha=0.5"]
        );
        assert_eq!(m[3].candidates, 16);
    }
}
