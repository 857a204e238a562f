//! `thresh generate`: sample `n` continuations of one prompt.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use thresh_decoding::{SamplingParams, StopConditions, generate};
use thresh_models::{ChatMessage, LoadOptions, load, parse_device, parse_weights};

use thresh_server::models_dir::default_policy;

/// Arguments of `thresh generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Model: Hugging Face directory or .gguf file (default: the demo SmolLM2 under $THRESH_MODELS).
    #[arg(long, env = "THRESH_POLICY")]
    model: Option<PathBuf>,
    /// The prompt text.
    #[arg(long)]
    prompt: String,
    /// Render the prompt as a user message through the model's chat template.
    #[arg(long)]
    chat: bool,
    /// System message for --chat.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Number of samples, decoded as one batch.
    #[arg(short, long, default_value_t = 1)]
    n: usize,
    /// New tokens per sample at most.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Base seed (sample i uses seed + i).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Softmax temperature (0: greedy).
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Minimum probability relative to the most likely token.
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Repetition penalty (1: off).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    /// Stop string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Weight format: auto (on the CPU q8_0 for GGUF files and dense f32 for HF directories; on
    /// a GPU dense bf16), dense, or a GGML quantisation for the CPU (q8_0, q4_0, q4k, q6k).
    #[arg(long, env = "THRESH_WEIGHTS", default_value = "auto")]
    weights: String,
    /// Device: cpu, or cuda:N in a build with the `cuda` feature.
    #[arg(long, env = "THRESH_DEVICE", default_value = "cpu")]
    device: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `thresh generate`.
pub fn run(args: GenerateArgs) -> Result<()> {
    let path = args.model.clone().unwrap_or_else(default_policy);
    if args.model.is_none() && !path.exists() {
        bail!(
            "the demo model {} is missing: run scripts/fetch-models.sh (or pass --model)",
            path.display()
        );
    }
    let t0 = Instant::now();
    let spec = path.to_string_lossy();
    let device = parse_device(&args.device)?;
    let opts = LoadOptions {
        quant: parse_weights(&args.weights, &spec, &device)?,
        device,
        dtype: None,
    };
    let model = load(&spec, &opts).with_context(|| format!("loading {}", path.display()))?;
    let load_time = t0.elapsed();
    let text = if args.chat {
        let tmpl = model
            .chat_template
            .as_ref()
            .context("--chat: this model has no chat template")?;
        let mut msgs = Vec::new();
        if let Some(s) = &args.system {
            msgs.push(ChatMessage::new("system", s));
        }
        msgs.push(ChatMessage::new("user", &args.prompt));
        tmpl.render(&msgs, true)?
    } else {
        args.prompt.clone()
    };
    let prompt = model.tokenizer.encode(&text, !args.chat)?;
    let params = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
        ..Default::default()
    };
    let stop = StopConditions {
        max_tokens: args.max_tokens,
        stop: args.stop.clone(),
        ..Default::default()
    };
    let generation = generate(
        &model.decoder,
        &model.tokenizer,
        &prompt,
        args.n,
        &params,
        &stop,
    )?;
    let s = &generation.stats;
    let decode_s = s.decode_time.as_secs_f64();
    if args.json {
        let rows: Vec<_> = generation
            .rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "text": r.text,
                    "tokens": r.tokens.len(),
                    "finish_reason": r.finish.as_ref().map(|f| f.as_openai()),
                    "logprob": r.logprob_sum,
                })
            })
            .collect();
        let out = serde_json::json!({
            "samples": rows,
            "prompt_tokens": s.prompt_tokens,
            "generated_tokens": s.generated_tokens,
            "load_seconds": load_time.as_secs_f64(),
            "prefill_seconds": s.prefill_time.as_secs_f64(),
            "decode_seconds": decode_s,
            "peak_kv_bytes": s.peak_kv_bytes,
        });
        out_line(&serde_json::to_string_pretty(&out)?)?;
    } else {
        for (i, r) in generation.rows.iter().enumerate() {
            out_line(&format!(
                "--- sample {i} ({} tokens, finish: {}, logprob {:.2}) ---",
                r.tokens.len(),
                r.finish.as_ref().map_or("?", |f| f.as_openai()),
                r.logprob_sum
            ))?;
            out_line(&r.text)?;
        }
        eprintln!(
            "prompt {} tokens, prefill {:.0} ms; {} tokens in {:.2} s ({:.1} tokens/s over {} steps); peak KV {} KiB; load {:.2} s",
            s.prompt_tokens,
            s.prefill_time.as_secs_f64() * 1e3,
            s.generated_tokens,
            decode_s,
            s.generated_tokens as f64 / decode_s.max(1e-9),
            s.decode_steps,
            s.peak_kv_bytes / 1024,
            load_time.as_secs_f64()
        );
    }
    Ok(())
}

/// Writes one line to stdout. A reader that went away (`thresh generate | head`) ends the
/// output quietly instead of panicking as `println!` does.
fn out_line(line: &str) -> Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        other => Ok(other?),
    }
}
