//! `thresh score`: score (prompt, response) pairs with a reward model.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use thresh_models::{Device, LoadOptions, parse_quant};
use thresh_reward::{RemoteFormat, RemoteReward, RewardInput, RewardModel, load, remote_url};

use thresh_server::models_dir::default_reward;

/// Arguments of `thresh score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Reward model directory (default: the demo all-MiniLM-L6-v2 under $THRESH_MODELS), or
    /// the URL of a reward server (`http://host:port/v1/rewards`, `/get_reward`, `/classify`).
    #[arg(long, env = "THRESH_REWARD")]
    reward: Option<PathBuf>,
    /// Head of sentence-embedding models: `relevance`, or a linear head's .safetensors file.
    #[arg(long, env = "THRESH_REWARD_HEAD")]
    head: Option<String>,
    /// The prompt of a single pair.
    #[arg(long, conflicts_with = "jsonl", requires = "response")]
    prompt: Option<String>,
    /// The response of a single pair.
    #[arg(long, conflicts_with = "jsonl", requires = "prompt")]
    response: Option<String>,
    /// A JSONL file of {"prompt": text or messages, "response": text}, or `-` for stdin;
    /// prints one JSON line per input.
    #[arg(long)]
    jsonl: Option<String>,
    /// Wire format of a reward server URL: thresh, openrlhf or vllm (default: from the path).
    #[arg(long, env = "THRESH_REWARD_FORMAT")]
    reward_format: Option<RemoteFormat>,
    /// Weight format of decoder reward models (auto, dense, q8_0...).
    #[arg(long, default_value = "dense")]
    weights: String,
}

/// Runs `thresh score`.
pub fn run(args: ScoreArgs) -> Result<()> {
    let path = args.reward.clone().unwrap_or_else(default_reward);
    if args.reward.is_none() && !path.exists() {
        bail!(
            "the demo reward model {} is missing: run scripts/fetch-models.sh (or pass --reward)",
            path.display()
        );
    }
    let inputs: Vec<RewardInput> = match (&args.jsonl, &args.prompt, &args.response) {
        (Some(file), _, _) => {
            let reader: Box<dyn BufRead> = if file == "-" {
                Box::new(BufReader::new(std::io::stdin()))
            } else {
                Box::new(BufReader::new(
                    std::fs::File::open(file).with_context(|| format!("opening {file}"))?,
                ))
            };
            let mut v = Vec::new();
            for (n, line) in reader.lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                v.push(serde_json::from_str(&line).with_context(|| {
                    format!(
                        "{file}: line {}: expected {{\"prompt\", \"response\"}}",
                        n + 1
                    )
                })?);
            }
            v
        }
        (None, Some(p), Some(r)) => vec![RewardInput::new(p.clone(), r.clone())],
        _ => bail!("give --prompt and --response, or --jsonl FILE"),
    };
    let spec = path.to_string_lossy();
    let opts = LoadOptions {
        device: Device::Cpu,
        dtype: None,
        quant: parse_quant(&args.weights, &spec)?,
    };
    let rm: Box<dyn RewardModel> = match (remote_url(&path), args.reward_format) {
        (Some(url), format) => Box::new(RemoteReward::from_spec(url, format)?),
        (None, Some(_)) => bail!("--reward-format needs a reward server URL as --reward"),
        (None, None) => load(&path, args.head.as_deref(), &opts)
            .with_context(|| format!("loading {}", path.display()))?,
    };
    let scores = rm.score(&inputs)?;
    let mut out = std::io::stdout().lock();
    if args.jsonl.is_some() {
        for s in &scores {
            writeln!(out, "{}", serde_json::to_string(s)?)?;
        }
    } else {
        let s = scores[0];
        writeln!(
            out,
            "{:.6}{}",
            s.score,
            if s.truncated {
                " (input truncated to fit the model)"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}
