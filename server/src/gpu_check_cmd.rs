//! `thresh gpu-check`: the prepared device check for an NVIDIA GPU (scripts/gpu-check.sh).
//!
//! Four sections, each written to `--out` as soon as it finishes, so that a run cut short
//! still reports what it measured:
//! 1. logits parity between the CPU (f32) and the GPU (f32 and bf16) on SmolLM2, plus how far
//!    pruning rows moves the survivors' logits on the GPU;
//! 2. decode throughput at several batch sizes (prompt prefilled once, forked, EOS ignored);
//! 3. Best-of-N against Speculative Rejection on the strategies benchmark's prompts, with the
//!    KV budget taken from free GPU memory as in the paper, reporting the improvement score
//!    against compute;
//! 4. `merged`: continuous batching, R concurrent Best-of-N requests
//!    with shared decoder passes against the same requests one after another
//!    ([`crate::gpu_check_merged`]).

use std::path::PathBuf;
use std::time::Instant;
use thresh_models::bench::median;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{Value, json};
use thresh_decoding::strategy::{
    Rejection, Schedule, SpeculativeParams, Strategy, StrategyInput, StrategyOutput,
};
use thresh_decoding::{DecodeBatch, SamplingParams, StopConditions, generate};
use thresh_models::device::{describe, memory_info};
use thresh_models::{
    ChatMessage, DType, Device, LoadOptions, LoadedModel, Tensor, load, parse_device,
};
use thresh_reward::{Prompt, RelevanceReward};

use thresh_server::models_dir::{default_policy, default_reward};

/// Arguments of `thresh gpu-check`.
#[derive(Debug, Args)]
pub struct GpuCheckArgs {
    /// Device to check.
    #[arg(long, default_value = "cuda:0")]
    device: String,
    /// Policy model (default: the demo SmolLM2 GGUF).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Reward model directory (default: the demo MiniLM).
    #[arg(long)]
    reward: Option<PathBuf>,
    /// Prompt set (JSON lines with a "prompt" field).
    #[arg(long, default_value = "bench/data/instructions.jsonl")]
    prompts: PathBuf,
    /// Prompts used by the quality section.
    #[arg(long, default_value_t = 8)]
    n_prompts: usize,
    /// Batch sizes of the throughput section.
    #[arg(long, value_delimiter = ',', default_value = "1,64,256,1024")]
    batches: Vec<usize>,
    /// New tokens per row in the throughput section.
    #[arg(long, default_value_t = 64)]
    decode_tokens: usize,
    /// New tokens per answer in the quality section.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Largest initial batch (N0) of Speculative Rejection and largest batch of Best-of-N.
    #[arg(long, default_value_t = 1024)]
    max_batch: usize,
    /// Largest N of Best-of-N (past --max-batch, several batches counted as several devices).
    #[arg(long, default_value_t = 4096)]
    max_n: usize,
    /// Share of free GPU memory given to the KV cache when sizing the budget.
    #[arg(long, default_value_t = 0.5)]
    kv_memory_fraction: f64,
    /// Sections to run (parity, throughput, quality, merged).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "parity,throughput,quality,merged"
    )]
    sections: Vec<String>,
    /// Concurrency levels of the merged section.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    merged_requests: Vec<usize>,
    /// Candidates per request in the merged section.
    #[arg(long, default_value_t = 16)]
    merged_candidates: usize,
    /// Folder for results (gpu-check.json, gpu-check.md).
    #[arg(long)]
    out: PathBuf,
}

struct Report {
    out: PathBuf,
    json: serde_json::Map<String, Value>,
    md: String,
}

impl Report {
    fn section(&mut self, key: &str, value: Value, md: String) -> Result<()> {
        println!("{md}");
        self.json.insert(key.into(), value);
        self.md.push_str(&md);
        self.md.push('\n');
        std::fs::write(
            self.out.join("gpu-check.json"),
            serde_json::to_string_pretty(&Value::Object(self.json.clone()))?,
        )?;
        std::fs::write(self.out.join("gpu-check.md"), &self.md)?;
        Ok(())
    }
}

fn read_prompts(path: &PathBuf, n: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()).take(n) {
        let v: Value = serde_json::from_str(line)?;
        out.push(v["prompt"].as_str().context("prompt field")?.to_string());
    }
    Ok(out)
}

fn chat_ids(m: &LoadedModel, q: &str) -> Result<Vec<u32>> {
    let text = m
        .chat_template
        .as_ref()
        .context("the policy has no chat template")?
        .render(&[ChatMessage::new("user", q)], true)?;
    Ok(m.tokenizer.encode(&text, false)?)
}

/// Runs `thresh gpu-check`.
pub fn run(args: GpuCheckArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let device = parse_device(&args.device)?;
    let policy = args.policy.clone().unwrap_or_else(default_policy);
    let reward_dir = args.reward.clone().unwrap_or_else(default_reward);
    let spec = policy.to_string_lossy().to_string();
    let mut report = Report {
        out: args.out.clone(),
        json: Default::default(),
        md: String::from("# thresh gpu-check\n\n"),
    };
    let mem = memory_info(&device)?;
    report.section(
        "device",
        json!({"device": describe(&device), "free_bytes": mem.map(|m| m.0), "total_bytes": mem.map(|m| m.1),
               "policy": spec, "reward": reward_dir.display().to_string()}),
        format!(
            "device {} ({}), policy {spec}, reward {}\n",
            describe(&device),
            mem.map_or("no memory info".into(), |(f, t)| format!(
                "{:.1} of {:.1} GiB free",
                f as f64 / (1u64 << 30) as f64,
                t as f64 / (1u64 << 30) as f64
            )),
            reward_dir.display()
        ),
    )?;
    let prompts = read_prompts(&args.prompts, args.n_prompts.max(4))?;
    if prompts.len() < 4 {
        anyhow::bail!(
            "{} holds {} prompts; the check needs at least 4",
            args.prompts.display(),
            prompts.len()
        );
    }
    let t = Instant::now();
    let gpu = load(
        &spec,
        &LoadOptions {
            device: device.clone(),
            dtype: None,
            quant: None,
        },
    )?;
    println!(
        "policy loaded on {} as {:?} in {:.1} s",
        describe(&device),
        gpu.decoder.dtype(),
        t.elapsed().as_secs_f64()
    );
    for section in &args.sections {
        let t = Instant::now();
        let result = match section.as_str() {
            "parity" => parity(&spec, &device, &gpu, &prompts[..4], &mut report),
            "throughput" => throughput(&gpu, &args, &mut report),
            "quality" => quality(&gpu, &reward_dir, &device, &prompts, &args, &mut report),
            "merged" => merged(&gpu, &reward_dir, &device, &prompts, &args, &mut report),
            other => Err(anyhow::anyhow!("unknown section {other:?}")),
        };
        // A failing section is reported and the next one still runs.
        if let Err(e) = result {
            report.section(
                &format!("{section}_error"),
                json!(format!("{e:#}")),
                format!("## {section}: FAILED\n\n{e:#}\n"),
            )?;
        }
        println!("section {section} took {:.1} s", t.elapsed().as_secs_f64());
    }
    Ok(())
}

struct Diff {
    max_abs: f32,
    mean_abs: f64,
    top1: f64,
}

fn compare(a: &Tensor, b: &Tensor) -> Result<Diff> {
    // Rows of logits: every leading dimension flattened.
    let rows = |t: &Tensor| -> Result<Vec<Vec<f32>>> {
        let v = t.dim(candle_core::D::Minus1)?;
        Ok(t.reshape((t.elem_count() / v, v))?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?)
    };
    let (a, b) = (rows(a)?, rows(b)?);
    let (mut max_abs, mut sum, mut n, mut agree) = (0f32, 0f64, 0usize, 0usize);
    let argmax = |r: &[f32]| {
        r.iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .map(|x| x.0)
    };
    for (ra, rb) in a.iter().zip(&b) {
        for (x, y) in ra.iter().zip(rb) {
            let d = (x - y).abs();
            max_abs = max_abs.max(d);
            sum += d as f64;
            n += 1;
        }
        agree += usize::from(argmax(ra) == argmax(rb));
    }
    Ok(Diff {
        max_abs,
        mean_abs: sum / n.max(1) as f64,
        top1: agree as f64 / a.len().max(1) as f64,
    })
}

fn parity(
    spec: &str,
    device: &Device,
    gpu_bf16: &LoadedModel,
    prompts: &[String],
    report: &mut Report,
) -> Result<()> {
    let dense = |device: &Device, dtype| LoadOptions {
        device: device.clone(),
        dtype: Some(dtype),
        quant: None,
    };
    let cpu = load(spec, &dense(&Device::Cpu, DType::F32))?;
    let gpu32 = load(spec, &dense(device, DType::F32))?;
    let mut rows = Vec::new();
    let mut md = String::from(
        "## 1. Logits parity, CPU f32 against GPU (every position of 4 chat prompts)\n\n\
         | GPU weights | positions | max abs diff | mean abs diff | top-1 agreement | tolerance | pass |\n\
         |---|---:|---:|---:|---:|---|---|\n",
    );
    for (name, model, max_tol, top1_tol) in [
        ("f32", &gpu32, 2e-2f32, 1.0f64),
        ("bf16", gpu_bf16, f32::INFINITY, 0.95),
    ] {
        let (mut max_abs, mut mean, mut top1, mut positions) = (0f32, 0f64, 0f64, 0usize);
        for q in prompts {
            let ids = chat_ids(&cpu, q)?;
            let want = cpu.decoder.forward_all(
                &Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?,
                None,
            )?;
            let got = model
                .decoder
                .forward_all(&Tensor::new(ids.as_slice(), device)?.unsqueeze(0)?, None)?;
            let d = compare(&want, &got.to_device(&Device::Cpu)?)?;
            max_abs = max_abs.max(d.max_abs);
            mean += d.mean_abs * ids.len() as f64;
            top1 += d.top1 * ids.len() as f64;
            positions += ids.len();
        }
        let (mean, top1) = (mean / positions as f64, top1 / positions as f64);
        let pass = max_abs <= max_tol && top1 >= top1_tol;
        let tol = if max_tol.is_finite() {
            format!("max abs <= {max_tol}, top-1 = 100%")
        } else {
            format!("top-1 >= {:.0}%", top1_tol * 100.0)
        };
        md.push_str(&format!(
            "| {name} | {positions} | {max_abs:.2e} | {mean:.2e} | {:.2}% | {tol} | {} |\n",
            top1 * 100.0,
            if pass { "yes" } else { "NO" }
        ));
        rows.push(
            json!({"gpu_dtype": name, "positions": positions, "max_abs": max_abs,
                         "mean_abs": mean, "top1_agreement": top1, "pass": pass}),
        );
    }
    // Pruning on the GPU: fork 8 rows, drop half, and compare the survivors' next logits with
    // an unpruned run. Exact on the CPU; cuBLAS may pick another kernel for another row count.
    let ids = chat_ids(gpu_bf16, &prompts[0])?;
    let dec = &gpu_bf16.decoder;
    let mut full = dec.new_cache();
    dec.forward_last(
        &Tensor::new(ids.as_slice(), device)?.unsqueeze(0)?,
        &mut full,
    )?;
    full.fork(8)?;
    let mut pruned = full.clone();
    let keep = [1usize, 3, 4, 6];
    pruned.retain_rows(&keep)?;
    let next: Vec<u32> = (0..8u32).map(|r| 100 + 37 * r).collect();
    let all = dec.forward_last(
        &Tensor::new(next.as_slice(), device)?.unsqueeze(1)?,
        &mut full,
    )?;
    let kept_ids: Vec<u32> = keep.iter().map(|&r| next[r]).collect();
    let kept = dec.forward_last(
        &Tensor::new(kept_ids.as_slice(), device)?.unsqueeze(1)?,
        &mut pruned,
    )?;
    let idx = Tensor::new(
        keep.iter()
            .map(|&r| r as u32)
            .collect::<Vec<_>>()
            .as_slice(),
        device,
    )?;
    let d = compare(&all.index_select(&idx, 0)?, &kept)?;
    md.push_str(&format!(
        "\nPruning 8 rows to 4 on the GPU (bf16): survivors' next logits differ from the unpruned \
         run by at most {:.2e} (mean {:.2e}), top-1 agreement {:.0}%.\n",
        d.max_abs,
        d.mean_abs,
        d.top1 * 100.0
    ));
    report.section(
        "parity",
        json!({"rows": rows, "prune_max_abs": d.max_abs, "prune_mean_abs": d.mean_abs,
               "prune_top1": d.top1}),
        md,
    )
}

/// One decode of `b` rows: (tokens/s, ms per step, forward %, sampling %, peak KV bytes).
fn decode_once(
    m: &LoadedModel,
    prompt: &[u32],
    b: usize,
    params: &SamplingParams,
    stop: &StopConditions,
    timing_sync: bool,
) -> Result<[f64; 5]> {
    let t = Instant::now();
    let mut batch = DecodeBatch::new(&m.decoder, &m.tokenizer, prompt, b, params, stop)?;
    batch.set_timing_sync(timing_sync);
    batch.run_to_end()?;
    let wall = t.elapsed().as_secs_f64();
    let (_, s) = batch.into_parts();
    let decode = (wall - s.prefill_time.as_secs_f64()).max(1e-9);
    Ok([
        s.generated_tokens as f64 / decode,
        decode * 1e3 / s.decode_steps.max(1) as f64,
        100.0 * s.decode_time.as_secs_f64() / decode,
        100.0 * s.sample_time.as_secs_f64() / decode,
        s.peak_kv_bytes as f64,
    ])
}

/// Medians of three decodes, each field on its own.
fn decode_median(
    m: &LoadedModel,
    prompt: &[u32],
    b: usize,
    params: &SamplingParams,
    stop: &StopConditions,
) -> Result<[f64; 5]> {
    let runs: Vec<[f64; 5]> = (0..3u64)
        .map(|rep| {
            let p = SamplingParams {
                seed: rep,
                ..params.clone()
            };
            decode_once(m, prompt, b, &p, stop, false)
        })
        .collect::<Result<_>>()?;
    Ok(std::array::from_fn(|i| {
        median(runs.iter().map(|r| r[i]).collect())
    }))
}

fn throughput(m: &LoadedModel, args: &GpuCheckArgs, report: &mut Report) -> Result<()> {
    let text = "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined movable metal type, oil-based ink and a wooden screw press. Within decades, printed books spread across Europe and changed how people learned, argued and prayed. Pamphlets carried news and dissent faster than any scribe could copy them, and the price of a book fell so far that";
    let mut prompt = m.tokenizer.encode(text, false)?;
    prompt.truncate(64);
    let stop = StopConditions {
        max_tokens: args.decode_tokens,
        ignore_eos: true,
        ..Default::default()
    };
    let host = SamplingParams {
        temperature: 0.8,
        top_p: 0.95,
        ..Default::default()
    };
    let device = SamplingParams {
        on_device: true,
        ..host.clone()
    };
    // Warm-up: the first launches load kernels and grow the allocator.
    for p in [&host, &device] {
        generate(&m.decoder, &m.tokenizer, &prompt, 2, p, &stop)?;
    }
    let mut md = format!(
        "## 2. Decode throughput ({}-token prompt prefilled once and forked, {} new tokens per row, \
         EOS ignored, temperature 0.8, top-p 0.95; medians of 3 runs per sampler)\n\n\
         Host sampler: the logits are copied to the host each step and sampled there. Device \
         sampler: sampled on the device, only ids and log-probabilities come back. Its step \
         shares come from a fourth run that waits for the device after each forward pass \
         (without that wait the forward kernels finish inside the sampler's copy).\n\n\
         | batch | host tok/s | host sampling % | device tok/s | device / host | device ms/step | \
         device forward % | device sampling % | KV GiB |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        prompt.len(),
        args.decode_tokens
    );
    let mut rows = Vec::new();
    for &b in &args.batches {
        let h = decode_median(m, &prompt, b, &host, &stop)?;
        let d = decode_median(m, &prompt, b, &device, &stop)?;
        let shares = decode_once(m, &prompt, b, &device, &stop, true)?;
        let kv_gib = d[4] / (1u64 << 30) as f64;
        let ratio = d[0] / h[0];
        md.push_str(&format!(
            "| {b} | {:.0} | {:.0} | {:.0} | {ratio:.2} | {:.1} | {:.0} | {:.0} | {kv_gib:.2} |\n",
            h[0], h[3], d[0], d[1], shares[2], shares[3]
        ));
        rows.push(json!({
            "batch": b,
            "host": {"decode_tokens_per_s": h[0], "ms_per_step": h[1], "forward_pct": h[2],
                     "sampling_pct": h[3]},
            "device": {"decode_tokens_per_s": d[0], "ms_per_step": d[1],
                       "forward_pct": shares[2], "sampling_pct": shares[3],
                       "synced_tokens_per_s": shares[0]},
            "device_over_host": ratio,
            "peak_kv_bytes": d[4],
        }));
        println!(
            "batch {b}: host {:.0} tok/s, device {:.0} tok/s ({ratio:.2}x), device sampling {:.0}%",
            h[0], d[0], shares[3]
        );
    }
    report.section("throughput", json!(rows), md)
}

/// The paper's improvement score of a best reward against the Bo_n0 baseline's max and min:
/// 100 at the baseline's best, 0 at its worst.
fn improvement(best: f32, base_max: f64, base_min: f64) -> f64 {
    100.0 * (1.0 + (best as f64 - base_max) / (base_max - base_min).max(1e-6))
}

fn cost(o: &StrategyOutput) -> f64 {
    (o.stats.policy_tokens + o.stats.reward_tokens + o.stats.prompt_tokens) as f64
}

fn quality(
    m: &LoadedModel,
    reward_dir: &std::path::Path,
    device: &Device,
    prompts: &[String],
    args: &GpuCheckArgs,
    report: &mut Report,
) -> Result<()> {
    let reward = RelevanceReward::load(reward_dir, device)?;
    let free = memory_info(device)?.map_or(0, |m| m.0);
    let per_token = m.decoder.new_cache().bytes_per_token();
    // Without a memory figure (the CPU) only the cap below applies.
    let memory_budget = match free {
        0 => usize::MAX,
        f => (f as f64 * args.kv_memory_fraction / per_token as f64) as usize,
    };
    let n0 = 64usize.min(args.max_batch).max(1);
    // Best-of-N at n0, 4 n0, 16 n0, ... up to --max-n; beyond one batch of --max-batch rows
    // it runs as several batches, counted as that many devices (the paper's compute metric).
    let ns: Vec<usize> = std::iter::successors(Some(n0), |n| Some(n * 4))
        .take_while(|&n| n <= args.max_n.max(n0))
        .collect();
    let alphas = [0.5f32, 0.8];
    let n = prompts.len().min(args.n_prompts).max(1);
    // Per method: (label, improvement sum, time ratio sum, token ratio sum).
    let mut acc: Vec<(String, f64, f64, f64)> = ns
        .iter()
        .map(|n| (format!("Best-of-{n}"), 0.0, 0.0, 0.0))
        .chain(alphas.iter().map(|a| {
            (
                format!("Speculative Rejection, N0 {}, alpha {a}", args.max_batch),
                0.0,
                0.0,
                0.0,
            )
        }))
        .collect();
    let (mut budget_used, mut n0_time) = (0usize, 0f64);
    for (pi, q) in prompts.iter().take(n).enumerate() {
        let ids = chat_ids(m, q)?;
        let sampling = SamplingParams {
            temperature: 1.0,
            top_k: 50,
            seed: 1000 * pi as u64,
            on_device: !device.is_cpu(),
            ..Default::default()
        };
        let input = StrategyInput::new(
            &m.decoder,
            &m.tokenizer,
            &ids,
            Prompt::Text(q.clone()),
            sampling,
            args.max_tokens,
        );
        let mut base = None;
        for (k, &bn) in ns.iter().enumerate() {
            let (mut best, mut wall, mut spent, mut scores) = (f32::MIN, 0f64, 0f64, Vec::new());
            // One batch of at most --max-batch rows per device. Row r samples with seed + r,
            // so the batches draw exactly the rows one batch of bn would.
            for start in (0..bn).step_by(args.max_batch.max(1)) {
                let rows = args.max_batch.min(bn - start);
                let chunk = StrategyInput {
                    sampling: SamplingParams {
                        seed: input.sampling.seed + start as u64,
                        ..input.sampling.clone()
                    },
                    ..input.clone()
                };
                let t = Instant::now();
                let o = Strategy::BestOfN { candidates: rows }.run(&chunk, &reward)?;
                wall += t.elapsed().as_secs_f64();
                spent += cost(&o);
                best = best.max(o.best[0].score);
                if k == 0 {
                    scores.extend(
                        o.candidates
                            .context("candidates")?
                            .iter()
                            .map(|c| c.score as f64),
                    );
                }
            }
            if k == 0 {
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let min = scores.iter().cloned().fold(f64::MAX, f64::min);
                base = Some((max, min, wall, spent));
                n0_time += wall;
            }
            let (bmax, bmin, bt, bc) = base.context("baseline")?;
            acc[k].1 += improvement(best, bmax, bmin);
            acc[k].2 += wall / bt;
            acc[k].3 += spent / bc;
        }
        let (bmax, bmin, bt, bc) = base.context("baseline")?;
        // The paper's rule: the budget is what free memory holds; N0 is what fits of it. For a
        // model this small that budget outlasts every answer, so it is also capped at the
        // point where N0 rows reach a quarter of the answer length, which makes rounds happen.
        let budget = memory_budget.min(args.max_batch * (ids.len() + args.max_tokens / 4));
        budget_used = budget;
        for (k, &alpha) in alphas.iter().enumerate() {
            let params = SpeculativeParams {
                rejection: Rejection::Fixed(alpha),
                kv_budget_tokens: budget,
                max_batch: args.max_batch,
                initial_batch: None,
                schedule: Some(Schedule::Budget),
            };
            let t = Instant::now();
            let o = Strategy::Speculative(params).run(&input, &reward)?;
            let wall = t.elapsed().as_secs_f64();
            let row = &mut acc[ns.len() + k];
            row.1 += improvement(o.best[0].score, bmax, bmin);
            row.2 += wall / bt;
            row.3 += cost(&o) / bc;
        }
        println!("quality: prompt {}/{n} done", pi + 1);
    }
    let np = n as f64;
    let mut md = format!(
        "## 3. Reward against compute ({n} prompts, {} new tokens at most, temperature 1, top-k 50, \
         MiniLM relevance reward on {})\n\n\
         KV budget from free memory: {:.1} GiB x {} = {} tokens at {per_token} bytes \
         per token; used per prompt: min(that, N0 x (prompt + {})) = {budget_used} tokens for the \
         last prompt. Baseline Best-of-{n0}: {:.2} s per prompt.\n\n\
         Best-of-N past one batch of {} rows runs as several batches, each counted as one \
         device: its relative compute is the devices' summed time (the paper's metric). \
         Sampling on the device where it is not the CPU.\n\n\
         | method | improvement score | compute (device time) / Bo{n0} | tokens / Bo{n0} |\n|---|---:|---:|---:|\n",
        args.max_tokens,
        describe(device),
        free as f64 / (1u64 << 30) as f64,
        args.kv_memory_fraction,
        if free == 0 {
            "no memory figure, so unbounded".to_string()
        } else {
            memory_budget.to_string()
        },
        args.max_tokens / 4,
        n0_time / np,
        args.max_batch,
    );
    let mut rows = Vec::new();
    for (label, s, t, c) in &acc {
        md.push_str(&format!(
            "| {label} | {:.1} | {:.2} | {:.2} |\n",
            s / np,
            t / np,
            c / np
        ));
        rows.push(
            json!({"method": label, "improvement": s / np, "time_ratio": t / np,
                         "token_ratio": c / np}),
        );
    }
    report.section(
        "quality",
        json!({"prompts": n, "memory_budget_tokens": memory_budget, "bytes_per_token": per_token,
               "methods": rows}),
        md,
    )
}

fn merged(
    m: &LoadedModel,
    reward_dir: &std::path::Path,
    device: &Device,
    prompts: &[String],
    args: &GpuCheckArgs,
    report: &mut Report,
) -> Result<()> {
    let reward = RelevanceReward::load(reward_dir, device)?;
    let ids: Vec<Vec<u32>> = prompts
        .iter()
        .map(|q| chat_ids(m, q))
        .collect::<Result<_>>()?;
    let (value, md) = crate::gpu_check_merged::merged(
        m,
        &reward,
        &crate::gpu_check_merged::MergedArgs {
            prompts,
            prompt_ids: &ids,
            levels: &args.merged_requests,
            candidates: args.merged_candidates,
            max_tokens: args.decode_tokens,
        },
    )?;
    report.section("merged", value, md)
}
