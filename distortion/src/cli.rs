//! The `thresh-train distortion` command: simulate one world, sweep a setting, or search for
//! high-distortion worlds; report as a table, JSON and an SVG chart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::{SeedableRng, rngs::StdRng};

use super::chart::{Series, line_chart};
use super::population::{self, World, write_atomic};
use super::preference::PairDistribution;
use super::search::{self, BudgetMode, SearchConfig};
use super::simulate::{Method, Outcome, simulate};
use super::sweep::{self, SweepAxis};
use crate::{DistortionError, Result};

/// A KL budget on the command line: a number `>= 0` or `none`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BudgetArg {
    /// No KL constraint.
    Unconstrained,
    /// This budget.
    Value(f64),
}

fn parse_budget(s: &str) -> std::result::Result<BudgetArg, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(BudgetArg::Unconstrained);
    }
    match s.parse::<f64>() {
        Ok(b) if b.is_finite() && b >= 0.0 => Ok(BudgetArg::Value(b)),
        Ok(b) => Err(format!("KL budget {b} must be >= 0")),
        Err(_) => Err(format!(
            "`{s}` is not a KL budget (a number >= 0, or `none`)"
        )),
    }
}

/// A search's KL budget: a number, `none` or `search`.
fn parse_search_budget(s: &str) -> std::result::Result<BudgetMode, String> {
    if s.eq_ignore_ascii_case("search") {
        return Ok(BudgetMode::Searched);
    }
    Ok(match parse_budget(s)? {
        BudgetArg::Unconstrained => BudgetMode::Unconstrained,
        BudgetArg::Value(b) => BudgetMode::Fixed(b),
    })
}

/// A comparison count: a positive number or `exact` (the infinite-sample limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComparisonsArg {
    /// The infinite-sample limit.
    Exact,
    /// This many sampled comparisons.
    Count(u64),
}

fn parse_comparisons(s: &str) -> std::result::Result<ComparisonsArg, String> {
    if s.eq_ignore_ascii_case("exact") {
        return Ok(ComparisonsArg::Exact);
    }
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(ComparisonsArg::Count(n)),
        _ => Err(format!(
            "`{s}` is not a positive number of comparisons or `exact`"
        )),
    }
}

fn parse_beta(v: &str) -> std::result::Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(b) if b.is_finite() && b > 0.0 => Ok(b),
        _ => Err(format!("`{v}` is not a positive beta")),
    }
}

/// Arguments of `thresh-train distortion`.
#[derive(Debug, Clone, clap::Args)]
pub struct DistortionArgs {
    /// Population file (YAML, or JSON when it ends in `.json`). Needed unless `--search`.
    #[arg(long, env = "THRESH_POPULATION")]
    pub population: Option<PathBuf>,
    /// Bradley-Terry temperature (overrides the file's).
    #[arg(long, value_parser = parse_beta)]
    pub beta: Option<f64>,
    /// KL budget: a number >= 0 or `none` (overrides the file's). With `--search`: also
    /// `search`, to search over budgets; default `none`.
    #[arg(long, allow_hyphen_values = true)]
    pub kl_budget: Option<String>,
    /// Number of comparisons, or `exact` for the infinite-sample limit (overrides the file's).
    #[arg(long, value_parser = parse_comparisons)]
    pub comparisons: Option<ComparisonsArg>,
    /// How comparison pairs are drawn (overrides the file's).
    #[arg(long, value_enum)]
    pub pairs: Option<PairDistribution>,
    /// Seed of the comparison sampling (and of the search).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sweep one setting: `beta=1,2,4`, `kl=0,0.1,none`, `comparisons=100,1000,exact` or
    /// `pairs=uniform,reference`.
    #[arg(long)]
    pub sweep: Option<SweepAxis>,
    /// Simulations averaged per sweep point when comparisons are sampled.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Folder for the JSON results, the Markdown table and the SVG chart.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Search for worlds of high distortion instead of simulating a given one.
    #[arg(long)]
    pub search: bool,
    /// Betas to search at.
    #[arg(long, value_parser = parse_beta, value_delimiter = ',', default_value = "1,2,4,8,16")]
    pub betas: Vec<f64>,
    /// Methods to search against.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "rlhf,nlhf")]
    pub methods: Vec<Method>,
    /// Alternatives of searched worlds.
    #[arg(long, default_value_t = 4)]
    pub alternatives: usize,
    /// User types of searched worlds.
    #[arg(long, default_value_t = 3)]
    pub user_types: usize,
    /// Search the reference policy too (else uniform).
    #[arg(long)]
    pub search_reference: bool,
    /// Random restarts per (beta, method).
    #[arg(long, default_value_t = 20)]
    pub restarts: usize,
    /// Local-search steps per restart.
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Time limit per (beta, method), in seconds.
    #[arg(long, default_value_t = 20.0)]
    pub time_limit_secs: f64,
}

fn config(msg: impl Into<String>) -> DistortionError {
    DistortionError::Config(msg.into())
}

fn world_from_args(args: &DistortionArgs, path: &Path) -> Result<World> {
    let mut file = population::PopulationFile::read(path)?;
    if let Some(b) = args.beta {
        file.beta = Some(b);
    }
    if let Some(b) = &args.kl_budget {
        file.kl_budget = match parse_budget(b).map_err(config)? {
            BudgetArg::Unconstrained => None,
            BudgetArg::Value(v) => Some(v),
        };
    }
    if let Some(c) = args.comparisons {
        file.comparisons = match c {
            ComparisonsArg::Exact => None,
            ComparisonsArg::Count(n) => Some(n),
        };
    }
    if let Some(p) = args.pairs {
        file.pairs = Some(p);
    }
    file.into_world(path)
}

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string_pretty(value).map_err(|e| config(format!("cannot encode JSON: {e}")))
}

fn make_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| DistortionError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

fn outcome_table(o: &Outcome) -> String {
    let mut s =
        String::from("| method | utility | KL | distortion | policy |\n|---|---|---|---|---|\n");
    for (name, m) in [
        ("RLHF/DPO", &o.rlhf),
        ("NLHF", &o.nlhf),
        ("benchmark", &o.benchmark),
    ] {
        let policy: Vec<String> = m.policy.iter().map(|p| format!("{p:.3}")).collect();
        s.push_str(&format!(
            "| {name} | {:.4} | {:.4} | {:.4} | [{}] |\n",
            m.utility,
            m.kl,
            m.distortion,
            policy.join(", ")
        ));
    }
    s
}

/// Runs the command. Results go to stdout and, with `--out`, to files in that folder.
pub fn run(args: &DistortionArgs) -> Result<()> {
    if let Some(dir) = &args.out {
        make_dir(dir)?;
    }
    if args.search {
        return run_search(args);
    }
    let path = args
        .population
        .as_deref()
        .ok_or_else(|| config("give --population FILE (or --search to search for worlds)"))?;
    let world = world_from_args(args, path)?;
    match &args.sweep {
        None => {
            let o = simulate(&world, &mut StdRng::seed_from_u64(args.seed))?;
            let text = json(&o)?;
            let table = outcome_table(&o);
            print!(
                "{}",
                if args.json {
                    format!("{text}\n")
                } else {
                    table.clone()
                }
            );
            if let Some(dir) = &args.out {
                write_atomic(&dir.join("outcome.json"), text.as_bytes())?;
                write_atomic(&dir.join("outcome.md"), table.as_bytes())?;
            }
        }
        Some(axis) => {
            let rows = sweep::run(&world, axis, args.repeats, args.seed)?;
            let text = json(&serde_json::json!({ "sweep": axis.name(), "rows": rows }))?;
            let table = sweep::table(axis, &rows);
            print!(
                "{}",
                if args.json {
                    format!("{text}\n")
                } else {
                    table.clone()
                }
            );
            if let Some(dir) = &args.out {
                write_atomic(&dir.join("sweep.json"), text.as_bytes())?;
                write_atomic(&dir.join("sweep.md"), table.as_bytes())?;
                let series = |name: &str, f: fn(&sweep::SweepRow) -> f64| Series {
                    name: name.into(),
                    points: rows.iter().map(|r| (r.x, f(r))).collect(),
                    dashed: false,
                };
                line_chart(
                    &dir.join("sweep.svg"),
                    &format!("Distortion as {} varies", axis.name()),
                    axis.x_label(),
                    "distortion (benchmark utility / method utility)",
                    &[
                        series("RLHF/DPO", |r| r.rlhf_distortion),
                        series("NLHF", |r| r.nlhf_distortion),
                    ],
                )?;
            }
        }
    }
    Ok(())
}

fn run_search(args: &DistortionArgs) -> Result<()> {
    if args.alternatives < 2 || args.user_types < 1 {
        return Err(config(
            "--search needs at least 2 alternatives and 1 user type",
        ));
    }
    if !(args.time_limit_secs.is_finite() && args.time_limit_secs > 0.0) {
        return Err(config("--time-limit-secs must be positive"));
    }
    let budget = match &args.kl_budget {
        None => BudgetMode::Unconstrained,
        Some(s) => parse_search_budget(s).map_err(config)?,
    };
    let cfg = SearchConfig {
        betas: args.betas.clone(),
        methods: args.methods.clone(),
        alternatives: args.alternatives,
        user_types: args.user_types,
        budget,
        pairs: args.pairs.unwrap_or(PairDistribution::Uniform),
        comparisons: match args.comparisons {
            Some(ComparisonsArg::Count(n)) => Some(n),
            _ => None,
        },
        search_reference: args.search_reference,
        restarts: args.restarts,
        steps: args.steps,
        time_limit: Duration::from_secs_f64(args.time_limit_secs.min(1e9)),
        seed: args.seed,
    };
    let rows = search::run(&cfg, |r| {
        tracing::info!(
            beta = r.beta,
            method = ?r.method,
            distortion = r.distortion,
            evaluations = r.evaluations,
            seconds = r.seconds,
            "search finished"
        );
    })?;
    let table = search::table(&rows);
    let text = json(&rows)?;
    print!(
        "{}",
        if args.json {
            format!("{text}\n")
        } else {
            table.clone()
        }
    );
    if let Some(dir) = &args.out {
        write_atomic(&dir.join("search.json"), text.as_bytes())?;
        write_atomic(&dir.join("search.md"), table.as_bytes())?;
        for r in &rows {
            let method = match r.method {
                Method::Rlhf => "rlhf",
                Method::Nlhf => "nlhf",
            };
            population::save(
                &r.world,
                &dir.join(format!("worst-{method}-beta{}.yaml", r.beta)),
            )?;
        }
        let worst = |m: Method, name: &str| Series {
            name: name.into(),
            points: rows
                .iter()
                .filter(|r| r.method == m)
                .map(|r| (r.beta, r.distortion))
                .collect(),
            dashed: false,
        };
        let rate = |f: f64, name: &str| Series {
            name: name.into(),
            points: cfg.betas.iter().map(|&b| (b, f * b)).collect(),
            dashed: true,
        };
        line_chart(
            &dir.join("search.svg"),
            "Worst distortion found",
            "beta (Bradley-Terry temperature)",
            "distortion (benchmark utility / method utility)",
            &[
                worst(Method::Rlhf, "RLHF/DPO (worst found)"),
                worst(Method::Nlhf, "NLHF (worst found)"),
                rate(0.5, "beta / 2 (NLHF's rate)"),
                rate(1.0, "beta (RLHF/DPO's lower bound)"),
            ],
        )?;
    }
    Ok(())
}
