//! `thresh gpu-check`'s `merged` section: continuous batching across requests.
//!
//! For each concurrency level R, R Best-of-N requests (different prompts and seeds) run once
//! one after another, each with its own decoder passes, and once concurrently on R threads
//! whose decode steps a [`StepMerger`] runs as shared passes, as `thresh serve` does. Reports
//! both wall times, the policy tokens per second, and how many requests got the same answer
//! both ways (on the CPU every one does; a GPU's matmul kernels may change with the batch
//! size, which can flip a sampled token).

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};
use thresh_decoding::strategy::{Strategy, StrategyInput, StrategyOutput};
use thresh_decoding::{SamplingParams, StepMerger, Stepper, StopConditions};
use thresh_models::LoadedModel;
use thresh_reward::{Prompt, RewardModel};

/// Settings of the section.
pub struct MergedArgs<'a> {
    /// Prompts, used round-robin.
    pub prompts: &'a [String],
    /// Their chat-templated token ids.
    pub prompt_ids: &'a [Vec<u32>],
    /// Concurrency levels.
    pub levels: &'a [usize],
    /// Candidates per request.
    pub candidates: usize,
    /// New tokens per candidate (EOS ignored).
    pub max_tokens: usize,
}

fn request(
    m: &LoadedModel,
    reward: &dyn RewardModel,
    a: &MergedArgs<'_>,
    i: usize,
    stepper: Option<&dyn Stepper>,
) -> Result<StrategyOutput> {
    let k = i % a.prompts.len();
    let input = StrategyInput {
        decoder: &m.decoder,
        tokenizer: &m.tokenizer,
        prompt_ids: &a.prompt_ids[k],
        reward_prompt: Prompt::Text(a.prompts[k].clone()),
        sampling: SamplingParams {
            temperature: 1.0,
            top_k: 50,
            seed: 7000 + i as u64,
            on_device: !m.decoder.device().is_cpu(),
            ..Default::default()
        },
        stop: StopConditions {
            max_tokens: a.max_tokens,
            ignore_eos: true,
            ..Default::default()
        },
        top_k: 1,
        return_candidates: false,
        cancel: None,
        stepper,
        prefix_cache: None,
    };
    Ok(Strategy::BestOfN {
        candidates: a.candidates,
    }
    .run(&input, reward)?)
}

/// Runs the section; returns its JSON and Markdown.
pub fn merged(
    m: &LoadedModel,
    reward: &dyn RewardModel,
    a: &MergedArgs<'_>,
) -> Result<(Value, String)> {
    let mut rows = Vec::new();
    let mut md = format!(
        "## Continuous batching: R concurrent Best-of-{} requests ({} tokens each)\n\n\
         | R | one after another s | merged s | speed-up | policy tok/s alone | policy tok/s merged | passes | same answers |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
        a.candidates, a.max_tokens
    );
    for &r in a.levels {
        let t = Instant::now();
        let alone: Vec<StrategyOutput> = (0..r)
            .map(|i| request(m, reward, a, i, None))
            .collect::<Result<_>>()?;
        let t_alone = t.elapsed().as_secs_f64();
        let merger = StepMerger::new(Duration::from_millis(20));
        let t = Instant::now();
        let together: Vec<StrategyOutput> = std::thread::scope(|s| -> Result<Vec<_>> {
            let workers: Vec<_> = (0..r)
                .map(|i| {
                    let merger = &merger;
                    s.spawn(move || request(m, reward, a, i, Some(merger)))
                })
                .collect();
            let engine = s.spawn(|| merger.run(&m.decoder));
            let outs: Vec<Result<StrategyOutput>> = workers
                .into_iter()
                .map(|w| {
                    w.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a request panicked")))
                })
                .collect();
            merger.close();
            let _ = engine.join();
            outs.into_iter().collect()
        })?;
        let t_merged = t.elapsed().as_secs_f64();
        let tokens: usize = alone.iter().map(|o| o.stats.policy_tokens).sum();
        let same = alone
            .iter()
            .zip(&together)
            .filter(|(x, y)| x.best[0].tokens == y.best[0].tokens)
            .count();
        let st = merger.stats();
        md.push_str(&format!(
            "| {r} | {t_alone:.2} | {t_merged:.2} | {:.2}x | {:.0} | {:.0} | {} | {same}/{r} |\n",
            t_alone / t_merged,
            tokens as f64 / t_alone,
            tokens as f64 / t_merged,
            st.passes
        ));
        rows.push(
            json!({"requests": r, "alone_s": t_alone, "merged_s": t_merged,
            "policy_tokens": tokens, "passes": st.passes, "steps": st.steps,
            "max_requests_per_pass": st.max_batches, "same_answers": same}),
        );
        println!("merged: R={r} alone {t_alone:.2} s, merged {t_merged:.2} s");
    }
    Ok((
        json!({"candidates": a.candidates, "max_tokens": a.max_tokens, "levels": rows}),
        md,
    ))
}
