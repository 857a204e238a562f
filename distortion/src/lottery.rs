//! Maximal lotteries: the Nash equilibria of the symmetric zero-sum game whose payoff is the
//! preference margin `M[a][b] = P(a > b) - P(b > a)`; NLHF without a KL constraint.

use super::simplex;
use crate::Result;

/// The margin matrix `M[a][b] = P(a > b) - P(b > a) = 2 P(a > b) - 1` of a preference matrix.
pub fn margins(pref: &[Vec<f64>]) -> Vec<Vec<f64>> {
    pref.iter()
        .enumerate()
        .map(|(a, row)| {
            row.iter()
                .enumerate()
                .map(|(b, &p)| if a == b { 0.0 } else { p - pref[b][a] })
                .collect()
        })
        .collect()
}

/// A maximal lottery of the preference matrix `pref` (`pref[a][b] = P(a > b)`): a distribution
/// `p` with `sum_a p(a) M[a][b] >= 0` for every alternative `b`.
///
/// Solved as a linear program: with `A = M + 2` (all entries >= 1, game value 2), maximise
/// `sum y` subject to `A y <= 1`, `y >= 0`; then `p = y / sum y` is an optimal strategy of the
/// column player, which in a symmetric game is a maximal lottery. When the maximal lottery is
/// not unique (ties in the margins) this returns one of them.
pub fn maximal_lottery(pref: &[Vec<f64>]) -> Result<Vec<f64>> {
    let m = margins(pref);
    let n = m.len();
    let a: Vec<Vec<f64>> = m
        .iter()
        .map(|row| row.iter().map(|v| v + 2.0).collect())
        .collect();
    let y = simplex::maximise(&vec![1.0; n], &a, &vec![1.0; n])?;
    let sum: f64 = y.iter().sum();
    Ok(y.iter().map(|v| (v / sum).max(0.0)).collect())
}

/// The worst margin of `p` against any pure alternative: `min_b sum_a p(a) M[a][b]`.
/// Zero (up to rounding) exactly when `p` is a maximal lottery.
pub fn worst_margin(pref: &[Vec<f64>], p: &[f64]) -> f64 {
    let m = margins(pref);
    (0..p.len())
        .map(|b| (0..p.len()).map(|a| p[a] * m[a][b]).sum::<f64>())
        .fold(f64::INFINITY, f64::min)
}
