//! A dense primal simplex for small linear programs in the form
//! `maximise c·x subject to A x <= b, x >= 0` with `b >= 0`.
//!
//! The origin is then a feasible basis, so no phase one is needed. Bland's rule picks the
//! entering and leaving variables, which rules out cycling on degenerate problems (maximal
//! lotteries of games with ties are degenerate). Sizes here are tens of variables.

use crate::{DistortionError, Result};

const EPS: f64 = 1e-11;

/// Solves `max c·x` subject to `a x <= b`, `x >= 0`, where every `b[i] >= 0`.
///
/// Returns an optimal `x`. Errors on inconsistent shapes, a negative right-hand side, or an
/// unbounded problem.
pub fn maximise(c: &[f64], a: &[Vec<f64>], b: &[f64]) -> Result<Vec<f64>> {
    let n = c.len();
    let m = b.len();
    if a.len() != m || a.iter().any(|row| row.len() != n) {
        return Err(DistortionError::Config(
            "simplex: the constraint matrix has the wrong shape".into(),
        ));
    }
    if b.iter().any(|&v| v < 0.0 || !v.is_finite()) {
        return Err(DistortionError::Config(
            "simplex: the right-hand side must be finite and >= 0".into(),
        ));
    }
    // Tableau rows: [A | I | b]; objective row: [-c | 0 | 0].
    let width = n + m + 1;
    let mut t: Vec<Vec<f64>> = (0..m)
        .map(|i| {
            let mut row = vec![0.0; width];
            row[..n].copy_from_slice(&a[i]);
            row[n + i] = 1.0;
            row[width - 1] = b[i];
            row
        })
        .collect();
    let mut obj = vec![0.0; width];
    for j in 0..n {
        obj[j] = -c[j];
    }
    let mut basis: Vec<usize> = (n..n + m).collect();
    // Bland's rule terminates; the bound only guards against numerical trouble.
    let max_pivots = 50 * (n + m) * (n + m) + 1000;
    for _ in 0..max_pivots {
        let Some(enter) = (0..n + m).find(|&j| obj[j] < -EPS) else {
            let mut x = vec![0.0; n];
            for (i, &var) in basis.iter().enumerate() {
                if var < n {
                    x[var] = t[i][width - 1];
                }
            }
            return Ok(x);
        };
        let mut leave: Option<(usize, f64)> = None;
        for (i, row) in t.iter().enumerate() {
            if row[enter] > EPS {
                let ratio = row[width - 1] / row[enter];
                leave = match leave {
                    None => Some((i, ratio)),
                    Some((li, lr)) => {
                        if ratio < lr - EPS || (ratio <= lr + EPS && basis[i] < basis[li]) {
                            Some((i, ratio))
                        } else {
                            Some((li, lr))
                        }
                    }
                };
            }
        }
        let Some((row, _)) = leave else {
            return Err(DistortionError::Config(
                "simplex: the linear program is unbounded".into(),
            ));
        };
        let p = t[row][enter];
        for v in &mut t[row] {
            *v /= p;
        }
        let pivot_row = t[row].clone();
        for (i, r) in t.iter_mut().enumerate() {
            if i != row && r[enter] != 0.0 {
                let f = r[enter];
                for (v, pv) in r.iter_mut().zip(&pivot_row) {
                    *v -= f * pv;
                }
            }
        }
        let f = obj[enter];
        for (v, pv) in obj.iter_mut().zip(&pivot_row) {
            *v -= f * pv;
        }
        basis[row] = enter;
    }
    Err(DistortionError::Config(
        "simplex: no optimum after the pivot limit".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textbook_problem() {
        // max 3x + 5y, x <= 4, 2y <= 12, 3x + 2y <= 18: optimum (2, 6), value 36.
        let x = maximise(
            &[3.0, 5.0],
            &[vec![1.0, 0.0], vec![0.0, 2.0], vec![3.0, 2.0]],
            &[4.0, 12.0, 18.0],
        )
        .unwrap();
        assert!(
            (x[0] - 2.0).abs() < 1e-9 && (x[1] - 6.0).abs() < 1e-9,
            "{x:?}"
        );
    }

    #[test]
    fn unbounded_is_an_error() {
        assert!(maximise(&[1.0, 1.0], &[vec![1.0, -1.0]], &[1.0]).is_err());
    }
}
