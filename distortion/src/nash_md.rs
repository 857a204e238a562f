//! Tabular Nash mirror descent (Nash-MD, Munos et al. 2023) for the KL-regularised preference
//! game, and the geometric mixture it plays against.
//!
//! The regularised game is `max_pi min_pi' P(pi > pi') - tau KL(pi || mu) + tau KL(pi' || mu)`.
//! Its unique (symmetric) Nash equilibrium `pi*` is the fixed point
//! `pi*(y) ∝ mu(y) exp(P(y > pi*) / tau)`.

use super::math::{kl, softmax, solve_linear};

/// Log-probabilities of the geometric mixture of two policies given by their logits (or
/// log-probabilities): `log_softmax(c * reference + (1 - c) * policy)`.
///
/// This is the mixture `pi^mu ∝ pi^(1-c) mu^c` that Nash-MD samples its opponent from;
/// applied per token to a language model's logits it gives the `nash-md` command's opponent.
pub fn geometric_mixture(reference_logits: &[f64], policy_logits: &[f64], c: f64) -> Vec<f64> {
    let mixed: Vec<f64> = reference_logits
        .iter()
        .zip(policy_logits)
        .map(|(r, p)| c * r + (1.0 - c) * p)
        .collect();
    let max = mixed.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_z = max + mixed.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
    mixed.iter().map(|v| v - log_z).collect()
}

/// `P(y > q) = sum_b pref[y][b] q(b)` for every alternative `y`.
pub fn win_rates(pref: &[Vec<f64>], q: &[f64]) -> Vec<f64> {
    pref.iter()
        .map(|row| row.iter().zip(q).map(|(p, w)| p * w).sum())
        .collect()
}

/// `P(y > q) - 1/2 = sum_b (pref[y][b] - 1/2) q(b)` for a distribution `q`.
///
/// The updates below only use win rates up to a common shift (they are normalised by a
/// softmax), and subtracting the 1/2 before multiplying by a large step `1 / tau` keeps the
/// small differences between alternatives from being rounded away.
pub fn centred_win_rates(pref: &[Vec<f64>], q: &[f64]) -> Vec<f64> {
    pref.iter()
        .map(|row| row.iter().zip(q).map(|(p, w)| (p - 0.5) * w).sum())
        .collect()
}

/// One Nash-MD update with learning rate `eta` and regularisation `tau` (mixture weight
/// `c = eta * tau`, at most one):
/// `pi_{t+1}(y) ∝ pi^mu(y) exp(eta P(y > pi^mu))` with `pi^mu ∝ pi_t^(1-c) mu^c`.
pub fn step(policy: &[f64], reference: &[f64], pref: &[Vec<f64>], eta: f64, tau: f64) -> Vec<f64> {
    let c = (eta * tau).clamp(0.0, 1.0);
    let log_ref: Vec<f64> = reference.iter().map(|v| v.ln()).collect();
    let log_pol: Vec<f64> = policy.iter().map(|v| v.ln()).collect();
    let log_mix = geometric_mixture(&log_ref, &log_pol, c);
    let mix: Vec<f64> = log_mix.iter().map(|v| v.exp()).collect();
    let g = win_rates(pref, &mix);
    softmax(
        &log_mix
            .iter()
            .zip(&g)
            .map(|(l, w)| l + eta * w)
            .collect::<Vec<_>>(),
    )
}

/// The best response of the regularised game to `policy`: `∝ mu exp(P(y > policy) / tau)`.
pub fn best_response(policy: &[f64], reference: &[f64], pref: &[Vec<f64>], tau: f64) -> Vec<f64> {
    let g = centred_win_rates(pref, policy);
    softmax(
        &reference
            .iter()
            .zip(&g)
            .map(|(r, w)| r.ln() + w / tau)
            .collect::<Vec<_>>(),
    )
}

/// How far `policy` is from the regularised equilibrium: `KL(BR(policy) || policy)`, zero
/// exactly at the fixed point.
pub fn residual(policy: &[f64], reference: &[f64], pref: &[Vec<f64>], tau: f64) -> f64 {
    kl(&best_response(policy, reference, pref, tau), policy)
}

/// Settings of a Nash-MD run.
#[derive(Debug, Clone, Copy)]
pub struct NashMdOptions {
    /// Upper bound on the number of updates.
    pub max_steps: usize,
    /// Stop once [`residual`] falls below this.
    pub tolerance: f64,
    /// Mixture weight of the first steps; later ones use `c_t = c0 * k / (k + t)`.
    pub c0: f64,
    /// Number of steps over which the mixture weight halves.
    pub decay: f64,
}

impl Default for NashMdOptions {
    fn default() -> Self {
        Self {
            max_steps: 200_000,
            tolerance: 1e-10,
            c0: 0.5,
            decay: 50.0,
        }
    }
}

/// Runs Nash-MD from `start` on the game `pref` regularised towards `reference` with strength
/// `tau`, with the decreasing step `eta_t = c_t / tau`. Returns the last iterate and the number
/// of steps taken.
pub fn run(
    start: &[f64],
    reference: &[f64],
    pref: &[Vec<f64>],
    tau: f64,
    opts: NashMdOptions,
) -> (Vec<f64>, usize) {
    let mut pi = start.to_vec();
    for t in 0..opts.max_steps {
        if t % 16 == 0 && residual(&pi, reference, pref, tau) < opts.tolerance {
            return (pi, t);
        }
        let c = opts.c0 * opts.decay / (opts.decay + t as f64);
        pi = step(&pi, reference, pref, c / tau, tau);
    }
    (pi, opts.max_steps)
}

/// Refines an approximate regularised equilibrium by Newton's method on the fixed-point
/// equation `log pi(y) - log mu(y) - P(y > pi) / tau = const`, in log-probabilities with the
/// gauge `sum_y log pi(y) = 0` and the analytic Jacobian `I - P (diag pi - pi pi^T) / tau`.
///
/// Nash-MD's last iterates approach the equilibrium at a rate of about `1/t`; a few Newton
/// steps from there reach rounding precision. Each step is halved until it lowers the
/// residual (at most 30 times), so the result is never worse than `start`.
pub fn polish(start: &[f64], reference: &[f64], pref: &[Vec<f64>], tau: f64) -> Vec<f64> {
    let m = start.len();
    let equations = |z: &[f64]| -> (Vec<f64>, Vec<f64>) {
        let pi = softmax(z);
        let g = centred_win_rates(pref, &pi);
        let f: Vec<f64> = (0..m)
            .map(|i| z[i] - reference[i].ln() - g[i] / tau)
            .collect();
        let mut out: Vec<f64> = (1..m).map(|i| f[i] - f[0]).collect();
        out.push(z.iter().sum());
        (out, pi)
    };
    let norm = |v: &[f64]| v.iter().map(|x| x.abs()).fold(0.0, f64::max);
    let mean_log = start.iter().map(|p| p.max(1e-300).ln()).sum::<f64>() / m as f64;
    let mut z: Vec<f64> = start
        .iter()
        .map(|p| p.max(1e-300).ln() - mean_log)
        .collect();
    let (mut f, mut pi) = equations(&z);
    for _ in 0..100 {
        if norm(&f) < 1e-13 {
            break;
        }
        // d pi / d z = diag(pi) - pi pi^T; dF/dz = I - P (diag(pi) - pi pi^T) / tau.
        let jf: Vec<Vec<f64>> = (0..m)
            .map(|i| {
                let row_dot: f64 = (0..m).map(|k| (pref[i][k] - 0.5) * pi[k]).sum();
                (0..m)
                    .map(|j| {
                        let d = (pref[i][j] - 0.5) * pi[j] - row_dot * pi[j];
                        f64::from(u8::from(i == j)) - d / tau
                    })
                    .collect()
            })
            .collect();
        let mut jac: Vec<Vec<f64>> = (1..m)
            .map(|i| (0..m).map(|j| jf[i][j] - jf[0][j]).collect())
            .collect();
        jac.push(vec![1.0; m]);
        let Some(step) = solve_linear(jac, f.iter().map(|v| -v).collect()) else {
            break;
        };
        // Damped Newton: halve the step until the residual falls.
        let mut t = 1.0;
        let mut accepted = None;
        for _ in 0..30 {
            let cand: Vec<f64> = z.iter().zip(&step).map(|(a, b)| a + t * b).collect();
            let (f2, pi2) = equations(&cand);
            if norm(&f2) < norm(&f) {
                accepted = Some((cand, f2, pi2));
                break;
            }
            t *= 0.5;
        }
        let Some((cand, f2, pi2)) = accepted else {
            break;
        };
        z = cand;
        f = f2;
        pi = pi2;
    }
    pi
}
