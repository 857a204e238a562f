//! One simulation: the comparisons a world produces, the policies RLHF/DPO and NLHF learn from
//! them, the benchmark, and each method's distortion.

use rand::Rng;
use serde::Serialize;

use super::bradley_terry;
use super::math::{expectation, kl, tilt_to_budget};
use super::population::World;
use super::preference::{Comparisons, mean_utility, pair_probabilities, population_preference};
use super::regularised::nlhf_policy;
use crate::Result;

/// A method's policy and how well it serves the population.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodOutcome {
    /// The policy over alternatives.
    pub policy: Vec<f64>,
    /// Population-average utility `sum_i w_i E_pi[u_i]`.
    pub utility: f64,
    /// `KL(policy || reference)`.
    pub kl: f64,
    /// Benchmark utility divided by this method's (1 is optimal, larger is worse; infinite,
    /// written as `null` in JSON, when the method's utility is zero and the benchmark's is not).
    pub distortion: f64,
}

/// All methods on one world.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// RLHF/DPO: the reference tilted by the Bradley-Terry reward.
    pub rlhf: MethodOutcome,
    /// NLHF: maximal lottery, or the regularised equilibrium under a KL budget.
    pub nlhf: MethodOutcome,
    /// The reference tilted by the population's mean utility at the same KL budget.
    pub benchmark: MethodOutcome,
    /// The Bradley-Terry rewards RLHF fitted (mean zero).
    pub reward: Vec<f64>,
    /// The regularisation strength of NLHF's game, when one was solved.
    pub nlhf_tau: Option<f64>,
}

/// Which methods to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// RLHF and DPO (the same optimum in the tabular world).
    Rlhf,
    /// Nash learning from human feedback.
    Nlhf,
}

/// Benchmark utility over method utility.
pub fn distortion(benchmark: f64, method: f64) -> f64 {
    if method > 0.0 {
        benchmark / method
    } else if benchmark > 0.0 {
        f64::INFINITY
    } else {
        1.0
    }
}

/// The comparisons of a world: sampled with `rng` when it has a finite count, else the
/// infinite-sample limit.
pub fn comparisons<R: Rng>(world: &World, rng: &mut R) -> Comparisons {
    let pairs = pair_probabilities(world.pairs, &world.reference);
    match world.comparisons {
        Some(n) => Comparisons::sample(&world.users, world.beta, &pairs, n, rng),
        None => Comparisons::expected(&population_preference(&world.users, world.beta), &pairs),
    }
}

/// The Bradley-Terry ridge for a set of comparisons: one pseudo-comparison of prior for
/// sampled data, a negligible one for the infinite-sample limit (total mass one).
pub fn ridge(c: &Comparisons) -> f64 {
    if c.count.is_some() { 1.0 } else { 1e-9 }
}

/// The RLHF/DPO policy and its reward: the Bradley-Terry MLE reward, then the reference tilted
/// by `exp(r / lambda)` at the KL budget.
pub fn rlhf_policy(world: &World, c: &Comparisons) -> (Vec<f64>, Vec<f64>) {
    let reward = bradley_terry::fit(&c.wins, ridge(c));
    (
        tilt_to_budget(&world.reference, &reward, world.kl_budget),
        reward,
    )
}

/// The benchmark: the reference tilted by the mean utility at the KL budget.
pub fn benchmark_policy(world: &World) -> Vec<f64> {
    tilt_to_budget(
        &world.reference,
        &mean_utility(&world.users),
        world.kl_budget,
    )
}

fn outcome(world: &World, policy: Vec<f64>, bench_utility: f64) -> MethodOutcome {
    let utility = expectation(&policy, &mean_utility(&world.users));
    MethodOutcome {
        kl: kl(&policy, &world.reference),
        distortion: distortion(bench_utility, utility),
        utility,
        policy,
    }
}

/// Runs every method on `world`.
pub fn simulate<R: Rng>(world: &World, rng: &mut R) -> Result<Outcome> {
    let c = comparisons(world, rng);
    let bench = benchmark_policy(world);
    let bench_utility = expectation(&bench, &mean_utility(&world.users));
    let (rlhf, reward) = rlhf_policy(world, &c);
    let (nlhf, nlhf_tau) = nlhf_policy(&c.preference(), &world.reference, world.kl_budget)?;
    Ok(Outcome {
        rlhf: outcome(world, rlhf, bench_utility),
        nlhf: outcome(world, nlhf, bench_utility),
        benchmark: outcome(world, bench, bench_utility),
        reward,
        nlhf_tau,
    })
}

/// The distortion of one method on `world` (cheaper than [`simulate`] when searching).
pub fn method_distortion<R: Rng>(world: &World, method: Method, rng: &mut R) -> Result<f64> {
    let c = comparisons(world, rng);
    let u = mean_utility(&world.users);
    let bench = expectation(&benchmark_policy(world), &u);
    let policy = match method {
        Method::Rlhf => rlhf_policy(world, &c).0,
        Method::Nlhf => nlhf_policy(&c.preference(), &world.reference, world.kl_budget)?.0,
    };
    Ok(distortion(bench, expectation(&policy, &u)))
}
