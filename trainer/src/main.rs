//! `thresh-train`: the offline trainer's command line.

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Offline alignment training for the models thresh serves.
#[derive(Parser)]
#[command(name = "thresh-train", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate how RLHF/DPO and NLHF serve a population of users in a tabular world:
    /// distortion against the best policy at the same KL budget, sweeps, and a search for
    /// worst cases.
    Distortion(thresh_trainer::distortion::cli::DistortionArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Distortion(args) => thresh_trainer::distortion::cli::run(&args)?,
    }
    Ok(())
}
