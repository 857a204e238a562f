//! `thresh`: the command line of the inference-time alignment daemon.

mod generate_cmd;
mod gpu_check_cmd;
mod gpu_check_merged;
mod score_cmd;

use anyhow::Result;

// candle allocates a fresh buffer for every op; mimalloc recycles them without returning to
// the OS each time (about 10-20% faster decoding at small batch, BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{CommandFactory, Parser, Subcommand};

/// Inference-time alignment: sample from a policy LLM, pick by a reward model.
#[derive(Debug, Parser)]
#[command(name = "thresh", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up: the size of `Serve`'s variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Sample continuations of a prompt from a model.
    Generate(generate_cmd::GenerateArgs),
    /// Score (prompt, response) pairs with a reward model.
    Score(score_cmd::ScoreArgs),
    /// The prepared GPU check: logits parity, decode throughput, strategies (scripts/gpu-check.sh).
    GpuCheck(gpu_check_cmd::GpuCheckArgs),
    /// Serve the OpenAI-compatible HTTP API with aligned decoding.
    Serve(thresh_server::serve::ServeArgs),
}

fn init_logs(default: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> Result<()> {
    // `--config FILE` becomes the flags it stands for (thresh-settings).
    let args = thresh_settings::expand(&Cli::command(), std::env::args_os())?;
    match Cli::parse_from(args).command {
        Command::Generate(args) => {
            init_logs("warn", false);
            generate_cmd::run(args)
        }
        Command::Score(args) => {
            init_logs("warn", false);
            score_cmd::run(args)
        }
        Command::GpuCheck(args) => {
            init_logs("warn", false);
            gpu_check_cmd::run(args)
        }
        Command::Serve(args) => {
            let cfg = args.resolve()?;
            init_logs(
                "info",
                cfg.log_format == thresh_server::serve::LogFormat::Json,
            );
            thresh_server::serve::run(cfg)
        }
    }
}
