//! The population's pairwise preferences and the comparisons drawn from them.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::math::sigmoid;

/// One user type: a utility for each alternative (in `[0, 1]`) and its share of the population.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserType {
    /// Share of the population; the shares of a population sum to one.
    pub weight: f64,
    /// Utility of each alternative, in `[0, 1]`.
    pub utilities: Vec<f64>,
}

/// How the two alternatives of a comparison are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum PairDistribution {
    /// Every unordered pair of distinct alternatives equally likely.
    Uniform,
    /// Both alternatives drawn independently from the reference policy, redrawn while equal.
    Reference,
}

/// The population-level preference `P(a > b) = sum_i w_i sigmoid(beta (u_i(a) - u_i(b)))`,
/// with `P(a > a) = 1/2`.
pub fn population_preference(users: &[UserType], beta: f64) -> Vec<Vec<f64>> {
    let m = users.first().map_or(0, |u| u.utilities.len());
    (0..m)
        .map(|a| {
            (0..m)
                .map(|b| {
                    users
                        .iter()
                        .map(|u| u.weight * sigmoid(beta * (u.utilities[a] - u.utilities[b])))
                        .sum()
                })
                .collect()
        })
        .collect()
}

/// The population's mean utility of each alternative.
pub fn mean_utility(users: &[UserType]) -> Vec<f64> {
    let m = users.first().map_or(0, |u| u.utilities.len());
    (0..m)
        .map(|a| users.iter().map(|u| u.weight * u.utilities[a]).sum())
        .collect()
}

/// Probability that a comparison is about the unordered pair `{a, b}` (`a != b`), as a
/// symmetric matrix whose upper triangle sums to one.
pub fn pair_probabilities(dist: PairDistribution, reference: &[f64]) -> Vec<Vec<f64>> {
    let m = reference.len();
    let mut q = vec![vec![0.0; m]; m];
    let mut total = 0.0;
    for a in 0..m {
        for b in a + 1..m {
            let w = match dist {
                PairDistribution::Uniform => 1.0,
                PairDistribution::Reference => reference[a] * reference[b],
            };
            q[a][b] = w;
            q[b][a] = w;
            total += w;
        }
    }
    for row in &mut q {
        for v in row.iter_mut() {
            *v /= total;
        }
    }
    q
}

/// Outcomes of comparisons: `wins[a][b]` is how often `a` beat `b` (fractional in the
/// infinite-sample limit).
#[derive(Debug, Clone, PartialEq)]
pub struct Comparisons {
    /// `wins[a][b]`: number (or mass) of comparisons that `a` won against `b`.
    pub wins: Vec<Vec<f64>>,
    /// Total number of comparisons, or `None` for the infinite-sample limit (total mass one).
    pub count: Option<u64>,
}

impl Comparisons {
    /// The infinite-sample limit: `wins[a][b] = q({a, b}) P(a > b)`, total mass one.
    pub fn expected(pref: &[Vec<f64>], pairs: &[Vec<f64>]) -> Self {
        let wins = pref
            .iter()
            .zip(pairs)
            .map(|(prow, qrow)| prow.iter().zip(qrow).map(|(p, q)| p * q).collect())
            .collect();
        Self { wins, count: None }
    }

    /// Draws `count` comparisons: a pair from `pairs`, a user by weight, and the outcome from
    /// that user's Bradley-Terry model with temperature `beta`.
    pub fn sample<R: Rng>(
        users: &[UserType],
        beta: f64,
        pairs: &[Vec<f64>],
        count: u64,
        rng: &mut R,
    ) -> Self {
        let m = pairs.len();
        let mut flat = Vec::with_capacity(m * (m - 1) / 2);
        let mut acc = 0.0;
        for (a, row) in pairs.iter().enumerate() {
            for (b, &q) in row.iter().enumerate().skip(a + 1) {
                acc += q;
                flat.push((acc, a, b));
            }
        }
        let mut user_cdf = Vec::with_capacity(users.len());
        let mut acc = 0.0;
        for u in users {
            acc += u.weight;
            user_cdf.push(acc);
        }
        let mut wins = vec![vec![0.0; m]; m];
        for _ in 0..count {
            let x = rng.random::<f64>() * flat.last().map_or(1.0, |f| f.0);
            let idx = flat.partition_point(|f| f.0 <= x).min(flat.len() - 1);
            let (_, a, b) = flat[idx];
            let y = rng.random::<f64>() * acc;
            let ui = user_cdf.partition_point(|&c| c <= y).min(users.len() - 1);
            let u = &users[ui].utilities;
            if rng.random::<f64>() < sigmoid(beta * (u[a] - u[b])) {
                wins[a][b] += 1.0;
            } else {
                wins[b][a] += 1.0;
            }
        }
        Self {
            wins,
            count: Some(count),
        }
    }

    /// The estimated preference matrix: the empirical win rate of each compared pair, and
    /// `1/2` for pairs never compared (and on the diagonal).
    pub fn preference(&self) -> Vec<Vec<f64>> {
        let m = self.wins.len();
        (0..m)
            .map(|a| {
                (0..m)
                    .map(|b| {
                        let n = self.wins[a][b] + self.wins[b][a];
                        if a == b || n <= 0.0 {
                            0.5
                        } else {
                            self.wins[a][b] / n
                        }
                    })
                    .collect()
            })
            .collect()
    }
}
