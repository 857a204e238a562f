//! KLDO's separation metric: how far apart a model's representations of benign and harmful
//! prompts lie, in plain `f64` arithmetic.
//!
//! Both sets are projected together onto their first two principal components; in that
//! plane each set is summarised as a Gaussian (mean and unbiased covariance) and the
//! Bhattacharyya distance between the two Gaussians is
//! `1/8 dmu^T S^-1 dmu + 1/2 ln(det S / sqrt(det S1 det S2))` with `S = (S1 + S2)/2`. The
//! silhouette score (Euclidean, in the same plane) says how cleanly the points cluster
//! by set: near 1 well separated, near 0 overlapping.

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// The separation between two sets of representations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Separation {
    /// Bhattacharyya distance between the sets' Gaussians in the PCA plane (>= 0).
    pub bhattacharyya: f64,
    /// Mean silhouette score of all points in the PCA plane (in [-1, 1]).
    pub silhouette: f64,
}

/// Each set needs at least this many points for a non-singular 2x2 covariance.
pub const MIN_POINTS: usize = 3;

/// Projects both sets onto their joint first two principal components and measures the
/// separation there. Each set needs at least [`MIN_POINTS`] finite points of one common
/// dimension `>= 2`; points spanning fewer than two dimensions or a set whose projected
/// covariance is singular (e.g. collinear in the plane) are errors.
pub fn separation(benign: &[Vec<f64>], harmful: &[Vec<f64>]) -> Result<Separation> {
    let dim = check(benign, harmful)?;
    let all: Vec<&[f64]> = benign.iter().chain(harmful).map(Vec::as_slice).collect();
    let projected = pca2(&all, dim)?;
    let (b, h) = projected.split_at(benign.len());
    Ok(Separation {
        bhattacharyya: bhattacharyya(b, h)?,
        silhouette: silhouette(b, h),
    })
}

fn check(benign: &[Vec<f64>], harmful: &[Vec<f64>]) -> Result<usize> {
    for (set, name) in [(benign, "benign"), (harmful, "harmful")] {
        if set.len() < MIN_POINTS {
            return Err(TrainError::Input(format!(
                "the separation metric needs at least {MIN_POINTS} {name} points, got {}",
                set.len()
            )));
        }
    }
    let dim = benign[0].len();
    if dim < 2 {
        return Err(TrainError::Input(format!(
            "the separation metric needs points of dimension >= 2, got {dim}"
        )));
    }
    for (set, name) in [(benign, "benign"), (harmful, "harmful")] {
        for (i, p) in set.iter().enumerate() {
            if p.len() != dim {
                return Err(TrainError::Input(format!(
                    "{name} point {i} has dimension {} but the first benign point has {dim}",
                    p.len()
                )));
            }
            if p.iter().any(|x| !x.is_finite()) {
                return Err(TrainError::Input(format!(
                    "{name} point {i} has a non-finite coordinate"
                )));
            }
        }
    }
    Ok(dim)
}

/// Coordinates of the points on their first two principal components (data centred on the
/// joint mean). Works on the smaller of the `dim x dim` covariance and the `n x n` Gram
/// matrix; signs of the components are arbitrary, which no metric here depends on.
fn pca2(points: &[&[f64]], dim: usize) -> Result<Vec<[f64; 2]>> {
    let n = points.len();
    let mut mean = vec![0.0; dim];
    for p in points {
        for (m, x) in mean.iter_mut().zip(p.iter()) {
            *m += x / n as f64;
        }
    }
    let centred: Vec<Vec<f64>> = points
        .iter()
        .map(|p| p.iter().zip(&mean).map(|(x, m)| x - m).collect())
        .collect();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let out: Vec<[f64; 2]>;
    let (values, total) = if dim <= n {
        let mut cov = vec![vec![0.0; dim]; dim];
        for c in &centred {
            for (row, ci) in cov.iter_mut().zip(c) {
                for (x, cj) in row.iter_mut().zip(c) {
                    *x += ci * cj;
                }
            }
        }
        let total: f64 = (0..dim).map(|i| cov[i][i]).sum();
        let (values, vectors) = top2_eigen(cov);
        out = centred
            .iter()
            .map(|c| [dot(c, &vectors[0]), dot(c, &vectors[1])])
            .collect();
        (values, total)
    } else {
        let mut gram = vec![vec![0.0; n]; n];
        for i in 0..n {
            for j in i..n {
                let g = dot(&centred[i], &centred[j]);
                gram[i][j] = g;
                gram[j][i] = g;
            }
        }
        let total: f64 = (0..n).map(|i| gram[i][i]).sum();
        let (values, vectors) = top2_eigen(gram);
        // The scores on component k are sqrt(lambda_k) times the Gram eigenvector.
        let s = [values[0].max(0.0).sqrt(), values[1].max(0.0).sqrt()];
        out = (0..n)
            .map(|i| [s[0] * vectors[0][i], s[1] * vectors[1][i]])
            .collect();
        (values, total)
    };
    let two_dimensional = values[1] > 1e-12 * total;
    if !two_dimensional {
        return Err(TrainError::Input(
            "the points span fewer than two dimensions; the separation metric needs two principal components".into(),
        ));
    }
    Ok(out)
}

/// The two largest eigenvalues of a symmetric matrix and their unit eigenvectors, by cyclic
/// Jacobi rotations. The matrix is kept flat and the eigenvectors as rows, so the inner
/// loops read contiguous memory.
fn top2_eigen(rows: Vec<Vec<f64>>) -> ([f64; 2], [Vec<f64>; 2]) {
    let n = rows.len();
    let mut a: Vec<f64> = rows.into_iter().flatten().collect();
    // vt[i * n + k]: component k of eigenvector i.
    let mut vt = vec![0.0; n * n];
    for i in 0..n {
        vt[i * n + i] = 1.0;
    }
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    let mut row_p = vec![0.0; n];
    let mut row_q = vec![0.0; n];
    for _sweep in 0..100 {
        let diagonal: f64 = (0..n).map(|i| a[i * n + i] * a[i * n + i]).sum();
        if scale - diagonal <= 1e-26 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq * apq <= 1e-34 * scale {
                    continue;
                }
                let (app, aqq) = (a[p * n + p], a[q * n + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                row_p.copy_from_slice(&a[p * n..p * n + n]);
                row_q.copy_from_slice(&a[q * n..q * n + n]);
                for k in 0..n {
                    let (akp, akq) = (row_p[k], row_q[k]);
                    let (np, nq) = (c * akp - s * akq, s * akp + c * akq);
                    a[p * n + k] = np;
                    a[k * n + p] = np;
                    a[q * n + k] = nq;
                    a[k * n + q] = nq;
                }
                a[p * n + p] = app - t * apq;
                a[q * n + q] = aqq + t * apq;
                a[p * n + q] = 0.0;
                a[q * n + p] = 0.0;
                let (head, tail) = vt.split_at_mut(q * n);
                let vp = &mut head[p * n..p * n + n];
                let vq = &mut tail[..n];
                for (x, y) in vp.iter_mut().zip(vq.iter_mut()) {
                    let (vkp, vkq) = (*x, *y);
                    *x = c * vkp - s * vkq;
                    *y = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]));
    let (i, j) = (order[0], order[1]);
    (
        [a[i * n + i], a[j * n + j]],
        [vt[i * n..i * n + n].to_vec(), vt[j * n..j * n + n].to_vec()],
    )
}

/// Mean and unbiased covariance `[[sxx, sxy], [sxy, syy]]` of 2-D points.
fn gaussian(points: &[[f64; 2]]) -> ([f64; 2], [[f64; 2]; 2]) {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p[0]).sum::<f64>() / n;
    let my = points.iter().map(|p| p[1]).sum::<f64>() / n;
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for p in points {
        let (dx, dy) = (p[0] - mx, p[1] - my);
        sxx += dx * dx;
        sxy += dx * dy;
        syy += dy * dy;
    }
    let d = n - 1.0;
    ([mx, my], [[sxx / d, sxy / d], [sxy / d, syy / d]])
}

fn det(s: &[[f64; 2]; 2]) -> f64 {
    s[0][0] * s[1][1] - s[0][1] * s[1][0]
}

/// Whether a 2x2 covariance is singular relative to its own scale.
fn singular(s: &[[f64; 2]; 2]) -> bool {
    let half_trace = (s[0][0] + s[1][1]) / 2.0;
    let regular = det(s) > 1e-12 * half_trace * half_trace;
    !regular
}

/// The Bhattacharyya distance between the Gaussians fitted to two 2-D point sets.
fn bhattacharyya(a: &[[f64; 2]], b: &[[f64; 2]]) -> Result<f64> {
    let (m1, s1) = gaussian(a);
    let (m2, s2) = gaussian(b);
    for (s, name) in [(&s1, "benign"), (&s2, "harmful")] {
        if singular(s) {
            return Err(TrainError::Input(format!(
                "the {name} points' covariance in the PCA plane is singular (they lie on a line or a point)"
            )));
        }
    }
    let s = [
        [(s1[0][0] + s2[0][0]) / 2.0, (s1[0][1] + s2[0][1]) / 2.0],
        [(s1[1][0] + s2[1][0]) / 2.0, (s1[1][1] + s2[1][1]) / 2.0],
    ];
    let ds = det(&s);
    let d = [m1[0] - m2[0], m1[1] - m2[1]];
    // dmu^T S^-1 dmu with S^-1 = [[s11, -s01], [-s10, s00]] / det S.
    let quad = (d[0] * d[0] * s[1][1] - 2.0 * d[0] * d[1] * s[0][1] + d[1] * d[1] * s[0][0]) / ds;
    Ok(quad / 8.0 + 0.5 * (ds / (det(&s1) * det(&s2)).sqrt()).ln())
}

/// The mean silhouette score of two clusters of 2-D points (each has >= 2 points).
fn silhouette(a: &[[f64; 2]], b: &[[f64; 2]]) -> f64 {
    let dist = |p: &[f64; 2], q: &[f64; 2]| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt();
    let mut total = 0.0;
    for (own, other) in [(a, b), (b, a)] {
        for (i, p) in own.iter().enumerate() {
            let within = own
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, q)| dist(p, q))
                .sum::<f64>()
                / (own.len() - 1) as f64;
            let across = other.iter().map(|q| dist(p, q)).sum::<f64>() / other.len() as f64;
            let m = within.max(across);
            if m > 0.0 {
                total += (across - within) / m;
            }
        }
    }
    total / (a.len() + b.len()) as f64
}
