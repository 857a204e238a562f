//! `thresh-bench`: load tests and the quality sweep against OpenAI-compatible servers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use thresh_bench::client::{AlignmentParams, Endpoint, RequestParams, Target, normalize_base_url};
use thresh_bench::dataset::DatasetSpec;
use thresh_bench::load::{LoadConfig, run_load};
use thresh_bench::mix::{Mix, MixConfig};
use thresh_bench::output::write_json;
use thresh_bench::plot::{write_load_chart, write_quality_chart, write_soak_chart};
use thresh_bench::quality::{QualityConfig, QualitySettings, run_quality};
use thresh_bench::report::LoadReport;
use thresh_bench::soak::{SoakSummary, read_samples};

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
    /// Judges a `scripts/soak.sh` run from its samples.csv and load result: RSS growth after
    /// warm-up, open file descriptors, failures; writes a chart; exits 1 when a criterion fails.
    SoakReport(SoakArgs),
}

#[derive(Args)]
struct SoakArgs {
    /// The samples (elapsed_s,rss_kib,fds,requests,errors_4xx,errors_5xx,client_closed_499,cancelled).
    #[arg(long)]
    samples: PathBuf,
    /// The `thresh-bench load --output` result of the run.
    #[arg(long)]
    load: PathBuf,
    /// Samples up to this many seconds are warm-up.
    #[arg(long, default_value_t = 180.0)]
    warmup_s: f64,
    /// RSS may grow less than this many percent after warm-up.
    #[arg(long, default_value_t = 5.0)]
    max_growth_pct: f64,
    /// Write the chart of RSS and fds over time (.png or .svg).
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Write the summary as JSON.
    #[arg(long)]
    output: Option<PathBuf>,
    /// TrueType font for chart text (default: a common system font).
    #[arg(long)]
    plot_font: Option<PathBuf>,
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
    /// A mix of request kinds drawn per request from the seed, as weights:
    /// `plain=4,best-of-n=2,speculative-rejection=2,stream=2,cancel=1`. plain, best-of-n and
    /// speculative-rejection get whole responses, stream and cancel streams; cancel drops
    /// the request after its first event or a random time up to --cancel-within (counted as
    /// cancelled, not failed). Aligned kinds use --candidates (default 4) and --alpha
    /// (default 0.5); --strategy and --no-stream are ignored.
    #[arg(long)]
    mix: Option<String>,
    /// Longest time in seconds a `cancel` request of --mix is kept before it is dropped.
    #[arg(long, default_value_t = 2.0)]
    cancel_within: f64,
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
    let mix = match &a.mix {
        None => None,
        Some(m) => {
            if !(a.cancel_within.is_finite() && a.cancel_within > 0.0) {
                bail!(
                    "--cancel-within must be a positive number of seconds, got {}",
                    a.cancel_within
                );
            }
            Some(MixConfig {
                mix: Mix::parse(m)?,
                candidates: a.candidates.unwrap_or(4),
                alpha: a.alpha.unwrap_or(0.5),
                cancel_within: Duration::from_secs_f64(a.cancel_within),
            })
        }
    };
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
        mix,
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
            .filter(|o| o.failure.is_none() && !o.cancelled)
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

fn soak_report(a: SoakArgs) -> Result<bool> {
    if !(a.warmup_s.is_finite() && a.warmup_s >= 0.0) {
        bail!(
            "--warmup-s must be a non-negative number, got {}",
            a.warmup_s
        );
    }
    if !(a.max_growth_pct.is_finite() && a.max_growth_pct > 0.0) {
        bail!(
            "--max-growth-pct must be positive, got {}",
            a.max_growth_pct
        );
    }
    let samples = read_samples(&a.samples)?;
    let text = std::fs::read_to_string(&a.load)
        .with_context(|| format!("reading {}", a.load.display()))?;
    let load: LoadReport = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a thresh-bench load result", a.load.display()))?;
    let summary = SoakSummary::judge(&samples, &load, a.warmup_s, a.max_growth_pct)?;
    print!("{}", summary.table());
    if let Some(p) = &a.output {
        write_json(p, &summary)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &a.chart {
        write_soak_chart(p, &samples, a.warmup_s, a.plot_font.as_deref())?;
        eprintln!("wrote {}", p.display());
    }
    Ok(summary.passed)
}

fn run(cli: Cli) -> Result<()> {
    if let Command::SoakReport(a) = cli.command {
        return if soak_report(a)? {
            Ok(())
        } else {
            bail!("the soak run failed its criteria")
        };
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        match cli.command {
            Command::Load(a) => load(a).await,
            Command::Quality(a) => quality(a).await,
            Command::SoakReport(_) => Ok(()),
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
