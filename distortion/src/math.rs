//! Small numeric helpers on distributions over a finite set of alternatives.

/// The logistic function `1 / (1 + e^-x)`, computed without overflow.
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + e^x)` without overflow.
pub fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// Normalises log-weights into a probability vector (a softmax with the maximum subtracted).
///
/// Entries of `-inf` get probability zero; at least one entry must be finite.
pub fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut out: Vec<f64> = logits.iter().map(|&l| (l - max).exp()).collect();
    let sum: f64 = out.iter().sum();
    for v in &mut out {
        *v /= sum;
    }
    out
}

/// `KL(p || q) = sum_a p(a) log(p(a) / q(a))`, with `0 log 0 = 0`.
///
/// Infinite when `p` puts mass where `q` has none.
pub fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .map(|(&pa, &qa)| {
            if pa <= 0.0 {
                0.0
            } else if qa <= 0.0 {
                f64::INFINITY
            } else {
                pa * (pa / qa).ln()
            }
        })
        .sum::<f64>()
        .max(0.0)
}

/// `sum_a p(a) u(a)`: the expected value of `u` under `p`.
pub fn expectation(p: &[f64], u: &[f64]) -> f64 {
    p.iter().zip(u).map(|(a, b)| a * b).sum()
}

/// The reference tilted by a score: `pi(a) ∝ reference(a) * exp(eta * score(a))`.
pub fn tilt(reference: &[f64], score: &[f64], eta: f64) -> Vec<f64> {
    let logits: Vec<f64> = reference
        .iter()
        .zip(score)
        .map(|(&r, &s)| r.ln() + eta * s)
        .collect();
    softmax(&logits)
}

/// The reference restricted to the alternatives whose score is maximal (within `1e-12`),
/// renormalised: the limit of [`tilt`] as `eta` grows without bound.
pub fn restrict_to_argmax(reference: &[f64], score: &[f64]) -> Vec<f64> {
    let best = score.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut out: Vec<f64> = reference
        .iter()
        .zip(score)
        .map(|(&r, &s)| if s >= best - 1e-12 { r } else { 0.0 })
        .collect();
    let sum: f64 = out.iter().sum();
    for v in &mut out {
        *v /= sum;
    }
    out
}

/// The policy that maximises `E_pi[score]` subject to `KL(pi || reference) <= budget`.
///
/// It is the reference tilted by `exp(score / lambda)`, with the temperature `lambda` found by
/// bisection (on `eta = 1 / lambda`, in log scale) so that the KL equals the budget. A budget of
/// zero gives the reference; a budget at or above the KL of the argmax restriction, or `None`
/// (no KL constraint), gives [`restrict_to_argmax`].
pub fn tilt_to_budget(reference: &[f64], score: &[f64], budget: Option<f64>) -> Vec<f64> {
    let top = restrict_to_argmax(reference, score);
    let Some(budget) = budget else {
        return top;
    };
    if budget <= 0.0 {
        return reference.to_vec();
    }
    if kl(&top, reference) <= budget {
        return top;
    }
    let spread = score.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - score.iter().copied().fold(f64::INFINITY, f64::min);
    if spread <= 0.0 {
        return reference.to_vec();
    }
    // KL(tilt(eta) || reference) increases with eta from 0 to kl(top, reference).
    let mut lo = 0.0_f64;
    let mut hi = 1.0 / spread;
    while kl(&tilt(reference, score, hi), reference) < budget && hi < 1e12 {
        lo = hi;
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if kl(&tilt(reference, score, mid), reference) < budget {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-12 * hi {
            break;
        }
    }
    tilt(reference, score, 0.5 * (lo + hi))
}

/// Solves the dense linear system `a x = b` by Gaussian elimination with partial pivoting.
///
/// Returns `None` when the matrix is singular to working precision.
pub fn solve_linear(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (top, rest) = a.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for (i, r) in rest.iter_mut().enumerate() {
            let f = r[col] / pivot_row[col];
            if f != 0.0 {
                for (x, p) in r[col..].iter_mut().zip(&pivot_row[col..]) {
                    *x -= f * p;
                }
                b[col + 1 + i] -= f * b[col];
            }
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilt_meets_the_budget() {
        let reference = [0.5, 0.3, 0.2];
        let score = [0.0, 1.0, 0.4];
        for budget in [0.01, 0.1, 0.5, 1.0] {
            let pi = tilt_to_budget(&reference, &score, Some(budget));
            assert!((kl(&pi, &reference) - budget).abs() < 1e-8, "{budget}");
        }
        let top = tilt_to_budget(&reference, &score, Some(5.0));
        assert_eq!(top, vec![0.0, 1.0, 0.0]);
        assert_eq!(
            tilt_to_budget(&reference, &score, Some(0.0)),
            reference.to_vec()
        );
    }

    #[test]
    fn linear_solve() {
        let x = solve_linear(vec![vec![2.0, 1.0], vec![1.0, 3.0]], vec![3.0, 5.0]).unwrap();
        assert!((x[0] - 0.8).abs() < 1e-12 && (x[1] - 1.4).abs() < 1e-12);
        assert!(solve_linear(vec![vec![1.0, 2.0], vec![2.0, 4.0]], vec![1.0, 2.0]).is_none());
    }
}
