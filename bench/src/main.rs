//! `thresh-bench`: load tests and the quality sweep against OpenAI-compatible servers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use thresh_bench::client::{AlignmentParams, Endpoint, RequestParams, Target, normalize_base_url};
use thresh_bench::dataset::DatasetSpec;
use thresh_bench::load::{LoadConfig, run_load};
use thresh_bench::output::write_json;
use thresh_bench::plot::{write_load_chart, write_quality_chart};
use thresh_bench::quality::{QualityConfig, QualitySettings, run_quality};

#[derive(Parser)]
#[command(
    name = "thresh-bench",
    version,
    about = "Load tests and the reward-versus-compute sweep for OpenAI-compatible servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send a workload and report throughput, latency (TTFT, TPOT, ITL, end to end),
    /// failures by status, and thresh's rewards and strategy statistics.
    Load(LoadArgs),
    /// Best-of-N over N = n0 x multiples and Speculative Rejection over alphas, per prompt,
    /// against a thresh server: improvement score (Bo_n0 = 100) against compute.
    Quality(QualityArgs),
}

#[derive(Args)]
struct TargetArgs {
    /// The server, e.g. http://127.0.0.1:8080 (a trailing /v1 is accepted). Only this address
    /// is contacted; redirects are not followed.
    #[arg(
        long,
        env = "THRESH_BENCH_BASE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    base_url: String,
    /// Sent as `Authorization: Bearer`.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The `model` field (default: the first id of GET /v1/models, if any).
    #[arg(long)]
    model: Option<String>,
    /// `builtin` (30 instruction prompts), `random`, or a JSONL file of {"prompt": ...} or
    /// {"messages": [...]} lines (optional "max_tokens" per line).
    #[arg(long, default_value = "builtin")]
    dataset: String,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 600.0)]
    timeout: f64,
    /// Write the result as JSON (schema: bench/SCHEMA.md).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Write a chart (.png or .svg).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// TrueType font for chart text (default: a common system font).
    #[arg(long)]
    plot_font: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Seed of arrivals, random prompts and request seeds.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args)]
struct LoadArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Which route to call.
    #[arg(long, value_enum, default_value_t = Endpoint::Completions)]
    endpoint: Endpoint,
    /// Words per prompt for `--dataset random` (about one token each).
    #[arg(long, default_value_t = 128)]
    random_input_len: usize,
    /// Output tokens per request for `--dataset random` (sent with ignore_eos).
    #[arg(long, default_value_t = 128)]
    random_output_len: usize,
    /// Requests to send (default 100 unless --duration is given).
    #[arg(long)]
    num_requests: Option<usize>,
    /// Stop sending after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Requests per second: `inf` (all at once) or a Poisson/gamma arrival rate.
    #[arg(long, default_value = "inf")]
    request_rate: f64,
    /// Gamma shape of the arrival gaps: 1 is Poisson, below 1 burstier.
    #[arg(long, default_value_t = 1.0)]
    burstiness: f64,
    /// In-flight requests at most.
    #[arg(long)]
    max_concurrency: Option<usize>,
    /// New tokens per answer at most.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Unmeasured requests sent first, one at a time.
    #[arg(long, default_value_t = 0)]
    warmup_requests: usize,
    /// Sampling temperature (default: the server's).
    #[arg(long)]
    temperature: Option<f64>,
    /// Send whole responses instead of streams (no TTFT or ITL).
    #[arg(long)]
    no_stream: bool,
    /// thresh `alignment.strategy` (best_of_n, speculative_rejection, ...).
    #[arg(long)]
    strategy: Option<String>,
    /// thresh `alignment.candidates`.
    #[arg(long)]
    candidates: Option<usize>,
    /// thresh `alignment.alpha` (Speculative Rejection).
    #[arg(long)]
    alpha: Option<f64>,
}

fn parse_list<T: std::str::FromStr>(s: &str) -> Result<Vec<T>, String> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse()
                .map_err(|_| format!("{x:?} is not a valid number"))
        })
        .collect()
}

#[derive(Args)]
struct QualityArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Which route to call.
    #[arg(long, value_enum, default_value_t = Endpoint::Chat)]
    endpoint: Endpoint,
    /// Prompts to sweep (the dataset's first ones).
    #[arg(long, default_value_t = 30)]
    prompts: usize,
    /// The baseline Best-of-N's N.
    #[arg(long, default_value_t = 4)]
    n0: usize,
    /// Best-of-N runs at N = n0 times each of these (comma-separated).
    #[arg(long, default_value = "1,2,4,8,16", value_parser = parse_list::<usize>)]
    multiples: std::vec::Vec<usize>,
    /// Speculative Rejection's alphas (comma-separated).
    #[arg(long, default_value = "0.3,0.5,0.7,0.9", value_parser = parse_list::<f64>)]
    alphas: std::vec::Vec<f64>,
    /// Speculative Rejection's initial batch (default 4 n0).
    #[arg(long)]
    sr_candidates: Option<usize>,
    /// New tokens per answer at most.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Top-k.
    #[arg(long, default_value_t = 50)]
    top_k: usize,
}

fn target(t: &TargetArgs, endpoint: Endpoint) -> Result<Target> {
    Ok(Target {
        base_url: normalize_base_url(&t.base_url)?,
        endpoint,
        api_key: t.api_key.clone().filter(|k| !k.is_empty()),
        model: t.model.clone(),
    })
}

fn timeout(t: &TargetArgs) -> Result<Duration> {
    if !(t.timeout.is_finite() && t.timeout > 0.0) {
        bail!(
            "--timeout must be a positive number of seconds, got {}",
            t.timeout
        );
    }
    Ok(Duration::from_secs_f64(t.timeout))
}

async fn load(a: LoadArgs) -> Result<()> {
    let tgt = target(&a.target, a.endpoint)?;
    let duration = match a.duration {
        Some(d) if !(d.is_finite() && d > 0.0) => bail!("--duration must be positive, got {d}"),
        Some(d) => Some(Duration::from_secs_f64(d)),
        None => None,
    };
    let num_requests = match (a.num_requests, duration) {
        (Some(n), _) => Some(n),
        (None, Some(_)) => None,
        (None, None) => Some(100),
    };
    let spec = DatasetSpec::parse(&a.target.dataset, a.random_input_len, a.random_output_len);
    let items = spec.load(num_requests.unwrap_or(1000), a.target.seed)?;
    let cfg = LoadConfig {
        target: tgt,
        params: RequestParams {
            max_tokens: a.max_tokens,
            stream: !a.no_stream,
            temperature: a.temperature,
            top_k: None,
            alignment: AlignmentParams {
                strategy: a.strategy,
                candidates: a.candidates,
                alpha: a.alpha,
                return_candidates: false,
            },
        },
        items,
        dataset_name: a.target.dataset.clone(),
        num_requests,
        duration,
        request_rate: a.request_rate,
        burstiness: a.burstiness,
        max_concurrency: a.max_concurrency,
        warmup_requests: a.warmup_requests,
        seed: a.target.seed,
        timeout: timeout(&a.target)?,
        progress: !a.target.no_progress,
    };
    let run = run_load(cfg).await?;
    print!("{}", run.report.table());
    if let Some(p) = &a.target.output {
        write_json(p, &run.report)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &a.target.plot {
        let lat: Vec<f64> = run
            .outcomes
            .iter()
            .filter(|o| o.failure.is_none())
            .map(|o| o.latency * 1e3)
            .collect();
        write_load_chart(p, &run.report, &lat, a.target.plot_font.as_deref())?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

async fn quality(a: QualityArgs) -> Result<()> {
    let tgt = target(&a.target, a.endpoint)?;
    let spec = DatasetSpec::parse(&a.target.dataset, 128, a.max_tokens);
    let items = spec.load(a.prompts, a.target.seed)?;
    let cfg = QualityConfig {
        target: tgt.clone(),
        items,
        settings: QualitySettings {
            base_url: tgt.base_url.clone(),
            endpoint: format!("{:?}", a.endpoint).to_lowercase(),
            dataset: a.target.dataset.clone(),
            prompts: a.prompts,
            n0: a.n0,
            multiples: a.multiples,
            alphas: a.alphas,
            sr_candidates: a.sr_candidates.unwrap_or(4 * a.n0),
            max_tokens: a.max_tokens,
            temperature: a.temperature,
            top_k: a.top_k,
            seed: a.target.seed,
        },
        timeout: timeout(&a.target)?,
        progress: !a.target.no_progress,
    };
    let report = run_quality(cfg).await?;
    print!("{}", report.table());
    if let Some(p) = &a.target.output {
        write_json(p, &report)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &a.target.plot {
        write_quality_chart(p, &report, a.target.plot_font.as_deref())?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        match cli.command {
            Command::Load(a) => load(a).await,
            Command::Quality(a) => quality(a).await,
        }
    })
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
