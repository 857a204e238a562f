//! Sweeps: the methods' utilities and distortions as one setting of the world varies.

use std::str::FromStr;

use rand::{SeedableRng, rngs::StdRng};
use serde::Serialize;

use super::population::World;
use super::preference::PairDistribution;
use super::simulate::simulate;
use crate::Result;

/// The setting a sweep varies and its values.
#[derive(Debug, Clone, PartialEq)]
pub enum SweepAxis {
    /// Bradley-Terry temperature.
    Beta(Vec<f64>),
    /// KL budget (`None`: no constraint).
    KlBudget(Vec<Option<f64>>),
    /// Number of comparisons (`None`: the infinite-sample limit).
    Comparisons(Vec<Option<u64>>),
    /// Pair distribution.
    Pairs(Vec<PairDistribution>),
}

impl FromStr for SweepAxis {
    type Err = String;

    /// Parses `beta=1,2,4`, `kl=0,0.1,none`, `comparisons=100,1000,exact` or
    /// `pairs=uniform,reference`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (name, values) = s.split_once('=').ok_or_else(|| {
            format!("sweep `{s}`: expected NAME=V1,V2,... (NAME: beta, kl, comparisons, pairs)")
        })?;
        let items: Vec<&str> = values
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if items.is_empty() {
            return Err(format!("sweep `{s}` has no values"));
        }
        let num = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("sweep {name}: `{v}` is not a number"))
        };
        match name.trim() {
            "beta" => items
                .iter()
                .map(|v| match num(v)? {
                    b if b.is_finite() && b > 0.0 => Ok(b),
                    b => Err(format!("sweep beta: {b} must be positive")),
                })
                .collect::<std::result::Result<_, _>>()
                .map(Self::Beta),
            "kl" | "kl_budget" | "kl-budget" => items
                .iter()
                .map(|v| {
                    if v.eq_ignore_ascii_case("none") {
                        return Ok(None);
                    }
                    match num(v)? {
                        b if b.is_finite() && b >= 0.0 => Ok(Some(b)),
                        b => Err(format!("sweep kl: budget {b} must be >= 0")),
                    }
                })
                .collect::<std::result::Result<_, _>>()
                .map(Self::KlBudget),
            "comparisons" | "t" | "T" => items
                .iter()
                .map(|v| {
                    if v.eq_ignore_ascii_case("exact") {
                        return Ok(None);
                    }
                    match v.parse::<u64>() {
                        Ok(n) if n > 0 => Ok(Some(n)),
                        _ => Err(format!(
                            "sweep comparisons: `{v}` is not a positive count or `exact`"
                        )),
                    }
                })
                .collect::<std::result::Result<_, _>>()
                .map(Self::Comparisons),
            "pairs" => items
                .iter()
                .map(|v| match *v {
                    "uniform" => Ok(PairDistribution::Uniform),
                    "reference" => Ok(PairDistribution::Reference),
                    _ => Err(format!(
                        "sweep pairs: `{v}` is not `uniform` or `reference`"
                    )),
                })
                .collect::<std::result::Result<_, _>>()
                .map(Self::Pairs),
            other => Err(format!(
                "unknown sweep `{other}`: use beta, kl, comparisons or pairs"
            )),
        }
    }
}

impl SweepAxis {
    /// The axis name as written in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Beta(_) => "beta",
            Self::KlBudget(_) => "kl_budget",
            Self::Comparisons(_) => "comparisons",
            Self::Pairs(_) => "pairs",
        }
    }

    /// The worlds of the sweep with a label and a chart position for each (`NaN`: not drawn).
    fn worlds(&self, base: &World) -> Vec<(String, f64, World)> {
        let with = |f: &dyn Fn(&mut World)| {
            let mut w = base.clone();
            f(&mut w);
            w
        };
        match self {
            Self::Beta(v) => v
                .iter()
                .map(|&b| (b.to_string(), b, with(&|w| w.beta = b)))
                .collect(),
            Self::KlBudget(v) => v
                .iter()
                .map(|&b| {
                    let label = b.map_or("none".into(), |b| b.to_string());
                    (label, b.unwrap_or(f64::NAN), with(&|w| w.kl_budget = b))
                })
                .collect(),
            Self::Comparisons(v) => v
                .iter()
                .map(|&n| {
                    let label = n.map_or("exact".into(), |n| n.to_string());
                    (
                        label,
                        n.map_or(f64::NAN, |n| (n as f64).log10()),
                        with(&|w| w.comparisons = n),
                    )
                })
                .collect(),
            Self::Pairs(v) => v
                .iter()
                .enumerate()
                .map(|(i, &p)| {
                    let label = match p {
                        PairDistribution::Uniform => "uniform",
                        PairDistribution::Reference => "reference",
                    };
                    (label.into(), i as f64, with(&|w| w.pairs = p))
                })
                .collect(),
        }
    }

    /// Label of the chart's x axis.
    pub fn x_label(&self) -> &'static str {
        match self {
            Self::Beta(_) => "beta (Bradley-Terry temperature)",
            Self::KlBudget(_) => "KL budget",
            Self::Comparisons(_) => "log10(comparisons)",
            Self::Pairs(_) => "pair distribution (0 = uniform, 1 = reference)",
        }
    }
}

/// One point of a sweep, averaged over repeats.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepRow {
    /// The swept setting's value as written.
    pub value: String,
    /// Chart position (`null` in JSON when the value has none, e.g. `none`, `exact`).
    pub x: f64,
    /// Number of simulations averaged.
    pub repeats: usize,
    /// Mean population utility of RLHF/DPO.
    pub rlhf_utility: f64,
    /// Mean population utility of NLHF.
    pub nlhf_utility: f64,
    /// Mean population utility of the benchmark.
    pub benchmark_utility: f64,
    /// Mean distortion of RLHF/DPO.
    pub rlhf_distortion: f64,
    /// Mean distortion of NLHF.
    pub nlhf_distortion: f64,
    /// Standard deviation of RLHF's distortion over repeats.
    pub rlhf_distortion_sd: f64,
    /// Standard deviation of NLHF's distortion over repeats.
    pub nlhf_distortion_sd: f64,
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// Runs the sweep: for each value, `repeats` simulations (seeds `seed, seed + 1, ...`; one
/// suffices in the infinite-sample limit, which is deterministic).
pub fn run(base: &World, axis: &SweepAxis, repeats: usize, seed: u64) -> Result<Vec<SweepRow>> {
    let mut rows = Vec::new();
    for (value, x, world) in axis.worlds(base) {
        let n = if world.comparisons.is_some() {
            repeats.max(1)
        } else {
            1
        };
        let mut cols: [Vec<f64>; 5] = Default::default();
        for r in 0..n {
            let o = simulate(
                &world,
                &mut StdRng::seed_from_u64(seed.wrapping_add(r as u64)),
            )?;
            for (c, v) in cols.iter_mut().zip([
                o.rlhf.utility,
                o.nlhf.utility,
                o.benchmark.utility,
                o.rlhf.distortion,
                o.nlhf.distortion,
            ]) {
                c.push(v);
            }
        }
        let (rd, rsd) = mean_sd(&cols[3]);
        let (nd, nsd) = mean_sd(&cols[4]);
        rows.push(SweepRow {
            value,
            x,
            repeats: n,
            rlhf_utility: mean_sd(&cols[0]).0,
            nlhf_utility: mean_sd(&cols[1]).0,
            benchmark_utility: mean_sd(&cols[2]).0,
            rlhf_distortion: rd,
            nlhf_distortion: nd,
            rlhf_distortion_sd: rsd,
            nlhf_distortion_sd: nsd,
        });
    }
    Ok(rows)
}

/// The sweep as a Markdown table.
pub fn table(axis: &SweepAxis, rows: &[SweepRow]) -> String {
    let mut s = format!(
        "| {} | RLHF/DPO utility | NLHF utility | benchmark utility | RLHF/DPO distortion | NLHF distortion |\n|---|---|---|---|---|---|\n",
        axis.name()
    );
    for r in rows {
        let sd = |v: f64| {
            if r.repeats > 1 {
                format!(" ± {v:.4}")
            } else {
                String::new()
            }
        };
        s.push_str(&format!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.4}{} | {:.4}{} |\n",
            r.value,
            r.rlhf_utility,
            r.nlhf_utility,
            r.benchmark_utility,
            r.rlhf_distortion,
            sd(r.rlhf_distortion_sd),
            r.nlhf_distortion,
            sd(r.nlhf_distortion_sd),
        ));
    }
    s
}
