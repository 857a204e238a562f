//! `--search`: looks for worlds where a method serves the population badly (high distortion),
//! by random restarts and hill-climbing local search, seeded and bounded in steps and time.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

use super::population::World;
use super::preference::{PairDistribution, UserType};
use super::simulate::{Method, method_distortion, simulate};
use crate::Result;

/// How the KL budget of searched worlds is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BudgetMode {
    /// No KL constraint.
    Unconstrained,
    /// This budget for every world.
    Fixed(f64),
    /// Searched too, log-uniform in `[0.01, 3]` at restarts.
    Searched,
}

/// Settings of a search.
#[derive(Debug, Clone)]
pub struct SearchConfig {
    /// Bradley-Terry temperatures to search at.
    pub betas: Vec<f64>,
    /// Methods to search against.
    pub methods: Vec<Method>,
    /// Number of alternatives of each world.
    pub alternatives: usize,
    /// Number of user types of each world.
    pub user_types: usize,
    /// KL budget choice.
    pub budget: BudgetMode,
    /// Pair distribution of the comparisons.
    pub pairs: PairDistribution,
    /// Comparisons per world (`None`: infinite-sample limit, deterministic).
    pub comparisons: Option<u64>,
    /// Whether the reference policy is searched too (else uniform).
    pub search_reference: bool,
    /// Random restarts per (beta, method).
    pub restarts: usize,
    /// Local-search steps per restart.
    pub steps: usize,
    /// Wall-clock limit per (beta, method).
    pub time_limit: Duration,
    /// Seed.
    pub seed: u64,
}

/// The worst world found for one method at one beta.
#[derive(Debug, Clone, Serialize)]
pub struct SearchRow {
    /// Bradley-Terry temperature.
    pub beta: f64,
    /// The method searched against.
    pub method: Method,
    /// Its distortion on the worst world found.
    pub distortion: f64,
    /// RLHF/DPO's distortion on that world.
    pub rlhf_distortion: f64,
    /// NLHF's distortion on that world.
    pub nlhf_distortion: f64,
    /// The world's KL budget.
    pub kl_budget: Option<f64>,
    /// Worlds evaluated.
    pub evaluations: usize,
    /// Restarts completed.
    pub restarts: usize,
    /// Seconds spent.
    pub seconds: f64,
    /// The world, for writing out and re-running.
    #[serde(skip)]
    pub world: World,
}

fn normal<R: Rng>(rng: &mut R) -> f64 {
    // Box-Muller.
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn normalise(v: &mut [f64], floor: f64) {
    for x in v.iter_mut() {
        *x = x.max(floor);
    }
    let s: f64 = v.iter().sum();
    for x in v.iter_mut() {
        *x /= s;
    }
}

fn random_world<R: Rng>(cfg: &SearchConfig, beta: f64, rng: &mut R) -> World {
    let m = cfg.alternatives;
    // Worst cases tend to live at extreme utilities (0 or 1) and at tiny ones (utility
    // differences near zero, where Bradley-Terry is nearly indifferent): mix both in.
    let style = rng.random_range(0..3);
    let mut users: Vec<UserType> = (0..cfg.user_types)
        .map(|_| UserType {
            weight: rng.random::<f64>() + 0.01,
            utilities: (0..m)
                .map(|_| {
                    let u: f64 = rng.random();
                    match style {
                        0 => u,
                        1 if rng.random::<f64>() < 0.5 => u.round(),
                        1 => u,
                        _ => (u * (1e-4f64).ln()).exp(),
                    }
                })
                .collect(),
        })
        .collect();
    let total: f64 = users.iter().map(|u| u.weight).sum();
    for u in &mut users {
        u.weight /= total;
    }
    let mut reference = if cfg.search_reference {
        (0..m).map(|_| normal(rng).exp()).collect()
    } else {
        vec![1.0; m]
    };
    normalise(&mut reference, 1e-4);
    let kl_budget = match cfg.budget {
        BudgetMode::Unconstrained => None,
        BudgetMode::Fixed(b) => Some(b),
        BudgetMode::Searched => Some((0.01f64.ln() + rng.random::<f64>() * (300.0f64).ln()).exp()),
    };
    World {
        reference,
        users,
        beta,
        kl_budget,
        comparisons: cfg.comparisons,
        pairs: cfg.pairs,
    }
}

fn mutate<R: Rng>(cfg: &SearchConfig, world: &World, sigma: f64, rng: &mut R) -> World {
    let mut w = world.clone();
    let m = w.alternatives();
    let kinds =
        2 + usize::from(cfg.search_reference) + usize::from(cfg.budget == BudgetMode::Searched);
    match rng.random_range(0..kinds + 2) {
        // Utilities three times as often as anything else: an additive move, a multiplicative
        // one (to reach tiny utilities), or a jump to 0 or 1.
        0..=2 => {
            let i = rng.random_range(0..w.users.len());
            let a = rng.random_range(0..m);
            let u = &mut w.users[i].utilities[a];
            let r: f64 = rng.random();
            *u = if r < 0.1 {
                rng.random_range(0..2) as f64
            } else if r < 0.4 {
                (u.max(1e-6) * (3.0 * sigma * normal(rng)).exp()).clamp(0.0, 1.0)
            } else {
                (*u + sigma * normal(rng)).clamp(0.0, 1.0)
            };
        }
        3 => {
            let i = rng.random_range(0..w.users.len());
            w.users[i].weight *= (sigma * 3.0 * normal(rng)).exp();
            let mut ws: Vec<f64> = w.users.iter().map(|u| u.weight).collect();
            normalise(&mut ws, 1e-6);
            for (u, x) in w.users.iter_mut().zip(ws) {
                u.weight = x;
            }
        }
        k if k == 4 && cfg.search_reference => {
            let a = rng.random_range(0..m);
            w.reference[a] *= (sigma * 3.0 * normal(rng)).exp();
            normalise(&mut w.reference, 1e-6);
        }
        _ => {
            if let Some(b) = w.kl_budget.as_mut()
                && cfg.budget == BudgetMode::Searched
            {
                *b = (*b * (sigma * 2.0 * normal(rng)).exp()).clamp(1e-3, 5.0);
            }
        }
    }
    w
}

/// Searches every (beta, method) of the configuration; `progress` is told of each finished
/// pair.
pub fn run(cfg: &SearchConfig, mut progress: impl FnMut(&SearchRow)) -> Result<Vec<SearchRow>> {
    let mut rows = Vec::new();
    for (bi, &beta) in cfg.betas.iter().enumerate() {
        for (mi, &method) in cfg.methods.iter().enumerate() {
            let mut rng =
                StdRng::seed_from_u64(cfg.seed ^ ((bi as u64) << 32) ^ ((mi as u64) << 48));
            let eval_seed = cfg.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            // Common random numbers: every world is judged on the same comparison draws.
            let score = |w: &World| -> Result<f64> {
                let d = method_distortion(w, method, &mut StdRng::seed_from_u64(eval_seed))?;
                Ok(if d.is_nan() { 0.0 } else { d })
            };
            let start = Instant::now();
            let mut best: Option<(f64, World)> = None;
            let mut evaluations = 0;
            let mut restarts = 0;
            'restarts: for _ in 0..cfg.restarts {
                let mut cur = random_world(cfg, beta, &mut rng);
                let mut cur_d = score(&cur)?;
                evaluations += 1;
                for step in 0..cfg.steps {
                    if start.elapsed() >= cfg.time_limit {
                        if best.as_ref().is_none_or(|b| cur_d > b.0) {
                            best = Some((cur_d, cur.clone()));
                        }
                        break 'restarts;
                    }
                    let sigma = 0.3 * (1.0 - step as f64 / cfg.steps as f64) + 0.01;
                    let cand = mutate(cfg, &cur, sigma, &mut rng);
                    let d = score(&cand)?;
                    evaluations += 1;
                    if d >= cur_d {
                        cur = cand;
                        cur_d = d;
                    }
                }
                restarts += 1;
                if best.as_ref().is_none_or(|b| cur_d > b.0) {
                    best = Some((cur_d, cur));
                }
            }
            let Some((distortion, world)) = best else {
                continue;
            };
            let both = simulate(&world, &mut StdRng::seed_from_u64(eval_seed))?;
            let row = SearchRow {
                beta,
                method,
                distortion,
                rlhf_distortion: both.rlhf.distortion,
                nlhf_distortion: both.nlhf.distortion,
                kl_budget: world.kl_budget,
                evaluations,
                restarts,
                seconds: start.elapsed().as_secs_f64(),
                world,
            };
            progress(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The search results as a Markdown table, with the paper's rates beside them.
pub fn table(rows: &[SearchRow]) -> String {
    let mut s = String::from(
        "| beta | searched against | worst distortion | RLHF/DPO there | NLHF there | KL budget | beta/2 | beta | evaluations | seconds |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let method = match r.method {
            Method::Rlhf => "RLHF/DPO",
            Method::Nlhf => "NLHF",
        };
        s.push_str(&format!(
            "| {} | {} | {:.4} | {:.4} | {:.4} | {} | {} | {} | {} | {:.1} |\n",
            r.beta,
            method,
            r.distortion,
            r.rlhf_distortion,
            r.nlhf_distortion,
            r.kl_budget.map_or("none".into(), |b| format!("{b:.3}")),
            r.beta / 2.0,
            r.beta,
            r.evaluations,
            r.seconds,
        ));
    }
    s
}
