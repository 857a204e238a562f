//! KLDO's separation metric against hand computations.
//!
//! With 2-D input the joint PCA is a rotation (and maybe a reflection) of the centred
//! points, which changes neither the Bhattacharyya distance nor the silhouette, so the
//! expected values are worked out directly in the input coordinates.

use thresh_trainer::eval::separation::{Separation, separation};

fn pts(v: &[(f64, f64)]) -> Vec<Vec<f64>> {
    v.iter().map(|&(x, y)| vec![x, y]).collect()
}

fn close(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() < 1e-9, "{what}: got {got}, want {want}");
}

fn square() -> Vec<Vec<f64>> {
    pts(&[(0.0, 0.0), (2.0, 0.0), (0.0, 2.0), (2.0, 2.0)])
}

/// Case A: two unit-covariance-shaped squares 4 apart along x.
fn case_a() -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    (
        square(),
        pts(&[(4.0, 0.0), (6.0, 0.0), (4.0, 2.0), (6.0, 2.0)]),
    )
}

/// Case A's silhouette. Within a square every point's mean distance to the other three is
/// a = (2 + 2 + 2 sqrt 2)/3. The outer column (x = 0 and x = 6) has mean distance
/// (4 + 6 + sqrt 20 + sqrt 40)/4 to the other square, the inner column (x = 2, x = 4)
/// (2 + 4 + sqrt 8 + sqrt 20)/4; half the points are of each kind.
fn case_a_silhouette() -> f64 {
    let a = (4.0 + 2.0 * 2f64.sqrt()) / 3.0;
    let outer = (10.0 + 20f64.sqrt() + 40f64.sqrt()) / 4.0;
    let inner = (6.0 + 8f64.sqrt() + 20f64.sqrt()) / 4.0;
    0.5 * (outer - a) / outer + 0.5 * (inner - a) / inner
}

#[test]
fn equal_covariances_give_the_mahalanobis_term_only() {
    // Means (1, 1) and (5, 1); both unbiased covariances are (4/3) I, so S = (4/3) I,
    // 1/8 dmu^T S^-1 dmu = 1/8 * 16 * 3/4 = 1.5 and the log-determinant term is 0.
    let (b, h) = case_a();
    let s = separation(&b, &h).unwrap();
    close(s.bhattacharyya, 1.5, "bhattacharyya");
    close(s.silhouette, case_a_silhouette(), "silhouette");
    assert!((s.silhouette - 0.438_842).abs() < 1e-5, "{}", s.silhouette);
}

#[test]
fn unequal_covariances_add_the_log_determinant_term() {
    // Harmful square twice as large: mean (6, 2), S2 = (16/3) I, S = (10/3) I.
    // dmu = (1 - 6, 1 - 2) = (-5, -1), |dmu|^2 = 26: 1/8 * 26 * 3/10 = 0.975;
    // 1/2 ln(det S / sqrt(det S1 det S2)) = 1/2 ln((100/9) / (64/9)) = ln(10/8).
    let h = pts(&[(4.0, 0.0), (8.0, 0.0), (4.0, 4.0), (8.0, 4.0)]);
    let s = separation(&square(), &h).unwrap();
    close(s.bhattacharyya, 0.975 + 1.25f64.ln(), "bhattacharyya");
    // Swapping the sets changes neither metric.
    let t = separation(&h, &square()).unwrap();
    close(t.bhattacharyya, s.bhattacharyya, "symmetric bhattacharyya");
    close(t.silhouette, s.silhouette, "symmetric silhouette");
}

/// Maps 2-D points into `dim` dimensions by orthonormal `u`, `v` and an offset.
fn embed(points: &[Vec<f64>], dim: usize) -> Vec<Vec<f64>> {
    let mut u = vec![0.0; dim];
    let mut v = vec![0.0; dim];
    u[..4].fill(0.5);
    v[dim - 2] = 1.0 / 2f64.sqrt();
    v[dim - 1] = -1.0 / 2f64.sqrt();
    points
        .iter()
        .map(|p| {
            (0..dim)
                .map(|k| 3.0 + p[0] * u[k] + p[1] * v[k] - 0.5 * k as f64)
                .collect()
        })
        .collect()
}

#[test]
fn a_plane_embedded_in_more_dimensions_gives_the_same_metrics() {
    let (b, h) = case_a();
    let want = separation(&b, &h).unwrap();
    // 6 dimensions <= 8 points (covariance route) and 12 > 8 (Gram route).
    for dim in [6, 12] {
        let got = separation(&embed(&b, dim), &embed(&h, dim)).unwrap();
        close(
            got.bhattacharyya,
            want.bhattacharyya,
            &format!("dim {dim} bhattacharyya"),
        );
        close(
            got.silhouette,
            want.silhouette,
            &format!("dim {dim} silhouette"),
        );
    }
}

#[test]
fn pca_keeps_the_two_largest_directions_and_drops_the_third() {
    // A third coordinate of variance 0.01, uncorrelated with x and y over all 8 points, is
    // the smallest principal direction, so the metrics are case A's.
    let (b, h) = case_a();
    let z = [1.0, -1.0, -1.0, 1.0];
    let lift = |set: &[Vec<f64>]| -> Vec<Vec<f64>> {
        set.iter()
            .zip(z)
            .map(|(p, z)| vec![p[0], p[1], 0.1 * z])
            .collect()
    };
    let s = separation(&lift(&b), &lift(&h)).unwrap();
    close(s.bhattacharyya, 1.5, "bhattacharyya");
    close(s.silhouette, case_a_silhouette(), "silhouette");
}

#[test]
fn overlapping_sets_score_near_zero_and_separated_sets_high() {
    let ring = |cx: f64| -> Vec<Vec<f64>> {
        (0..12)
            .map(|k| {
                let a = k as f64 * std::f64::consts::PI / 6.0;
                vec![cx + a.cos(), (k % 3) as f64 * 0.3 + a.sin(), 0.0]
            })
            .collect()
    };
    let same: Separation = separation(&ring(0.0), &ring(0.0)).unwrap();
    assert!(same.bhattacharyya.abs() < 1e-9, "{same:?}");
    assert!(same.silhouette < 0.0, "{same:?}");
    let far = separation(&ring(0.0), &ring(10.0)).unwrap();
    assert!(far.bhattacharyya > 10.0 && far.silhouette > 0.8, "{far:?}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let (b, h) = case_a();
    let err = separation(&b[..2], &h).unwrap_err().to_string();
    assert!(err.contains("at least 3 benign points"), "{err}");
    let err = separation(&b, &h[..1]).unwrap_err().to_string();
    assert!(err.contains("at least 3 harmful points"), "{err}");
    let line = pts(&[(4.0, 0.0), (5.0, 1.0), (6.0, 2.0), (7.0, 3.0)]);
    let err = separation(&b, &line).unwrap_err().to_string();
    assert!(
        err.contains("harmful points' covariance") && err.contains("singular"),
        "{err}"
    );
    let flat: Vec<Vec<f64>> = (0..4).map(|k| vec![k as f64, 2.0 * k as f64]).collect();
    let err = separation(&flat, &flat).unwrap_err().to_string();
    assert!(err.contains("fewer than two dimensions"), "{err}");
    let mut ragged = h.clone();
    ragged[2].push(1.0);
    let err = separation(&b, &ragged).unwrap_err().to_string();
    assert!(err.contains("harmful point 2 has dimension 3"), "{err}");
    let mut nan = b.clone();
    nan[1][0] = f64::NAN;
    assert!(
        separation(&nan, &h)
            .unwrap_err()
            .to_string()
            .contains("non-finite")
    );
    let one_d: Vec<Vec<f64>> = (0..4).map(|k| vec![k as f64]).collect();
    assert!(separation(&one_d, &one_d).is_err());
}
