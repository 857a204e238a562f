//! `thresh-train`: the offline trainer's command line.

use clap::{CommandFactory, Parser};
use thresh_trainer::cli::Cli;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // `--config FILE` becomes the flags it stands for (thresh-settings).
    // Its errors name `--config` and the file already.
    let args = thresh_settings::expand(&Cli::command(), std::env::args_os())?;
    let cli = Cli::parse_from(args);
    let summary = thresh_trainer::commands::run(&cli.command)?;
    // Training commands end with a JSON summary; the simulator prints its own report.
    if !summary.is_null() {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}
