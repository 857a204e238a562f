//! Bradley-Terry maximum-likelihood rewards from pairwise comparisons (the reward model of
//! RLHF, and the implicit one of DPO).

use super::math::{sigmoid, softplus, solve_linear};

/// Fits rewards `r` maximising `sum_{a,b} wins[a][b] log sigmoid(r_a - r_b) - ridge/2 |r|^2`.
///
/// The likelihood is invariant to adding a constant to every reward; the ridge term (any
/// `ridge > 0`) fixes that gauge at `sum r = 0`, keeps the optimum finite when an alternative
/// won (or lost) every comparison it was in, and leaves alternatives never compared at zero,
/// the mean. Solved by Newton's method with a backtracking line search (the objective is
/// strictly concave).
pub fn fit(wins: &[Vec<f64>], ridge: f64) -> Vec<f64> {
    let m = wins.len();
    let ridge = ridge.max(1e-12);
    let objective = |r: &[f64]| -> f64 {
        let mut l = 0.5 * ridge * r.iter().map(|v| v * v).sum::<f64>();
        for a in 0..m {
            for b in 0..m {
                if a != b && wins[a][b] > 0.0 {
                    l += wins[a][b] * softplus(r[b] - r[a]);
                }
            }
        }
        l
    };
    let mut r = vec![0.0; m];
    let mut value = objective(&r);
    for _ in 0..200 {
        let mut grad: Vec<f64> = r.iter().map(|v| ridge * v).collect();
        let mut hess = vec![vec![0.0; m]; m];
        for (a, row) in hess.iter_mut().enumerate() {
            row[a] = ridge;
        }
        for a in 0..m {
            for b in 0..m {
                let w = wins[a][b];
                if a == b || w <= 0.0 {
                    continue;
                }
                let d = r[a] - r[b];
                let s = sigmoid(-d);
                grad[a] -= w * s;
                grad[b] += w * s;
                let h = w * s * (1.0 - s);
                hess[a][a] += h;
                hess[b][b] += h;
                hess[a][b] -= h;
                hess[b][a] -= h;
            }
        }
        let neg: Vec<f64> = grad.iter().map(|g| -g).collect();
        let Some(step) = solve_linear(hess, neg) else {
            break;
        };
        let decrement: f64 = -grad.iter().zip(&step).map(|(g, s)| g * s).sum::<f64>();
        if decrement < 1e-20 {
            break;
        }
        let mut t = 1.0;
        loop {
            let cand: Vec<f64> = r.iter().zip(&step).map(|(x, s)| x + t * s).collect();
            let v = objective(&cand);
            if v <= value - 0.25 * t * decrement || t < 1e-10 {
                r = cand;
                value = v;
                break;
            }
            t *= 0.5;
        }
        if step.iter().map(|s| (t * s).abs()).fold(0.0, f64::max) < 1e-11 {
            break;
        }
    }
    let mean = r.iter().sum::<f64>() / m.max(1) as f64;
    r.iter().map(|v| v - mean).collect()
}
