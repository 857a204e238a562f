//! Issue 9, test 1: tabular Nash-MD converges to the regularised Nash equilibrium, computed
//! here independently (closed form on 2x2 games, Newton's method on the fixed-point equation
//! on larger ones).

#![allow(clippy::needless_range_loop)] // matrices indexed as in the formulas

use thresh_distortion::math::{kl, softmax, solve_linear};
use thresh_distortion::nash_md::{self, NashMdOptions};
use thresh_distortion::preference::{UserType, population_preference};

/// Independent solve of `pi ∝ mu exp(P pi / tau)`: Newton's method on `z` (log-probabilities
/// with `sum z = 0`) for `z_i - z_0 = log mu_i - log mu_0 + ((P pi)_i - (P pi)_0) / tau`, with a
/// finite-difference Jacobian.
fn newton_equilibrium(pref: &[Vec<f64>], mu: &[f64], tau: f64) -> Vec<f64> {
    let m = mu.len();
    let eqs = |z: &[f64]| -> Vec<f64> {
        let pi = softmax(z);
        let g: Vec<f64> = pref
            .iter()
            .map(|row| row.iter().zip(&pi).map(|(p, q)| p * q).sum())
            .collect();
        let f: Vec<f64> = (0..m).map(|i| z[i] - mu[i].ln() - g[i] / tau).collect();
        let mut out: Vec<f64> = (1..m).map(|i| f[i] - f[0]).collect();
        out.push(z.iter().sum());
        out
    };
    let mut z: Vec<f64> = mu.iter().map(|v| v.ln()).collect();
    for _ in 0..200 {
        let f = eqs(&z);
        let norm = f.iter().map(|v| v.abs()).fold(0.0, f64::max);
        if norm < 1e-14 {
            break;
        }
        let h = 1e-7;
        let mut jac = vec![vec![0.0; m]; m];
        for j in 0..m {
            let mut zp = z.clone();
            zp[j] += h;
            let fp = eqs(&zp);
            for i in 0..m {
                jac[i][j] = (fp[i] - f[i]) / h;
            }
        }
        let step = solve_linear(jac, f.iter().map(|v| -v).collect()).unwrap();
        // Damped step: halve until the residual falls.
        let mut t = 1.0;
        loop {
            let cand: Vec<f64> = z.iter().zip(&step).map(|(a, b)| a + t * b).collect();
            let n2 = eqs(&cand).iter().map(|v| v.abs()).fold(0.0, f64::max);
            if n2 < norm || t < 1e-6 {
                z = cand;
                break;
            }
            t *= 0.5;
        }
    }
    softmax(&z)
}

fn fixed_steps(steps: usize) -> NashMdOptions {
    NashMdOptions {
        max_steps: steps,
        tolerance: 0.0,
        ..NashMdOptions::default()
    }
}

#[test]
fn two_alternatives_match_the_closed_form() {
    // With two alternatives, P(a > pi) - P(b > pi) = P(a > b) - 1/2 for every pi, so the
    // equilibrium is mu tilted by (P(a > b) - 1/2) / tau.
    let p_ab = 0.8;
    let pref = vec![vec![0.5, p_ab], vec![1.0 - p_ab, 0.5]];
    let mu = [0.3f64, 0.7];
    for tau in [0.05, 0.2, 1.0] {
        let expected = softmax(&[mu[0].ln() + (p_ab - 0.5) / tau, mu[1].ln()]);
        let (pi, steps) = nash_md::run(&mu, &mu, &pref, tau, fixed_steps(20_000));
        assert_eq!(steps, 20_000);
        let gap = kl(&expected, &pi);
        assert!(
            gap < 1e-9,
            "tau {tau}: KL(pi* || pi_T) = {gap:e}, pi_T {pi:?}, pi* {expected:?}"
        );
    }
}

#[test]
fn cyclic_game_converges_to_the_newton_solution() {
    // Rock-paper-scissors with a strong cycle and a lopsided reference.
    let s = 0.9;
    let pref = vec![
        vec![0.5, s, 1.0 - s],
        vec![1.0 - s, 0.5, s],
        vec![s, 1.0 - s, 0.5],
    ];
    let mu = [0.6, 0.3, 0.1];
    for tau in [0.05, 0.2, 1.0] {
        let expected = newton_equilibrium(&pref, &mu, tau);
        assert!(nash_md::residual(&expected, &mu, &pref, tau) < 1e-14);
        let (pi, _) = nash_md::run(&mu, &mu, &pref, tau, fixed_steps(400_000));
        let gap = kl(&expected, &pi);
        assert!(
            gap < 1e-8,
            "tau {tau}: KL(pi* || pi_T) = {gap:e}, pi_T {pi:?}, pi* {expected:?}"
        );
    }
}

#[test]
fn population_game_converges_to_the_newton_solution() {
    let users = vec![
        UserType {
            weight: 0.5,
            utilities: vec![1.0, 0.0, 0.6, 0.2],
        },
        UserType {
            weight: 0.3,
            utilities: vec![0.0, 1.0, 0.3, 0.9],
        },
        UserType {
            weight: 0.2,
            utilities: vec![0.5, 0.2, 1.0, 0.0],
        },
    ];
    let pref = population_preference(&users, 8.0);
    let mu = [0.4, 0.3, 0.2, 0.1];
    for tau in [0.03, 0.3] {
        let expected = newton_equilibrium(&pref, &mu, tau);
        let (pi, _) = nash_md::run(&mu, &mu, &pref, tau, fixed_steps(100_000));
        let gap = kl(&expected, &pi);
        assert!(gap < 1e-8, "tau {tau}: KL(pi* || pi_T) = {gap:e}");
        // The equilibrium is not the reference and not a point mass.
        assert!(kl(&expected, &mu) > 0.01);
    }
}

#[test]
fn constant_mixture_weight_is_biased_and_decay_removes_it() {
    // With a constant mixture weight c, Nash-MD's fixed point solves pi ∝ mu exp(P pi^mu / tau)
    // instead: the decaying schedule is what makes it converge to the equilibrium.
    let s = 0.9;
    let pref = vec![
        vec![0.5, s, 1.0 - s],
        vec![1.0 - s, 0.5, s],
        vec![s, 1.0 - s, 0.5],
    ];
    let mu = [0.6, 0.3, 0.1];
    let tau = 0.2;
    let expected = newton_equilibrium(&pref, &mu, tau);
    let constant = NashMdOptions {
        max_steps: 20_000,
        tolerance: 0.0,
        c0: 0.3,
        decay: 1e15,
    };
    let (biased, _) = nash_md::run(&mu, &mu, &pref, tau, constant);
    let (decayed, _) = nash_md::run(&mu, &mu, &pref, tau, fixed_steps(20_000));
    assert!(
        kl(&expected, &biased) > 1e-6,
        "{:e}",
        kl(&expected, &biased)
    );
    assert!(kl(&expected, &decayed) < 1e-3 * kl(&expected, &biased));
}

#[test]
fn geometric_mixture_interpolates_log_probabilities() {
    let reference = [0.5f64, 0.25, 0.25].map(f64::ln);
    let policy = [2.0, 0.0, -1.0]; // unnormalised logits
    let at = |c: f64| nash_md::geometric_mixture(&reference, &policy, c);
    for (a, b) in at(1.0).iter().zip(&reference) {
        assert!((a - b).abs() < 1e-12);
    }
    let pol = softmax(&policy);
    for (a, b) in at(0.0).iter().zip(&pol) {
        assert!((a.exp() - b).abs() < 1e-12);
    }
    // c = 1/2: proportional to sqrt(pi * mu).
    let direct: Vec<f64> = pol
        .iter()
        .zip(&reference)
        .map(|(p, r)| (p * r.exp()).sqrt())
        .collect();
    let z: f64 = direct.iter().sum();
    for (a, b) in at(0.5).iter().zip(&direct) {
        assert!((a.exp() - b / z).abs() < 1e-12);
    }
}
