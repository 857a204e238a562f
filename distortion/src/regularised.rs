//! NLHF under a KL budget: the regularised Nash equilibrium whose regularisation strength is
//! set so that its KL from the reference meets the budget.
//!
//! Each equilibrium is computed by tabular Nash-MD (warm-started from the previous bisection
//! point) and then refined by a few Newton steps on its fixed-point
//! equation ([`nash_md::polish`]), which turns Nash-MD's slow `1/t` tail into rounding
//! precision.

use super::lottery::{margins, maximal_lottery};
use super::math::kl;
use super::nash_md::{self, NashMdOptions};
use crate::Result;

/// Smallest regularisation strength tried, relative to the largest margin `|P(a > b) - P(b > a)|`
/// of the game; below it Nash-MD needs too many steps.
pub const MIN_TAU_RATIO: f64 = 1e-3;

/// The regularised equilibrium of `pref` towards `reference` with strength `tau`, starting
/// from `start`: a short Nash-MD run and a Newton polish, then a long Nash-MD run and another
/// polish if the first did not reach the fixed point.
pub fn equilibrium(pref: &[Vec<f64>], reference: &[f64], tau: f64, start: &[f64]) -> Vec<f64> {
    let short = NashMdOptions {
        tolerance: 1e-6,
        max_steps: 200,
        ..NashMdOptions::default()
    };
    let (pi, _) = nash_md::run(start, reference, pref, tau, short);
    let pi = nash_md::polish(&pi, reference, pref, tau);
    if nash_md::residual(&pi, reference, pref, tau) < 1e-13 {
        return pi;
    }
    let long = NashMdOptions {
        tolerance: 1e-12,
        max_steps: 20_000,
        ..NashMdOptions::default()
    };
    let (pi, _) = nash_md::run(&pi, reference, pref, tau, long);
    nash_md::polish(&pi, reference, pref, tau)
}

/// The NLHF policy for a preference matrix, a reference and a KL budget, with the
/// regularisation strength `tau` used (`None` when no regularised game was solved).
///
/// - budget `None` (no KL constraint): a maximal lottery (linear programming);
/// - budget zero: the reference;
/// - a maximal lottery within the budget: that lottery;
/// - otherwise the regularised equilibrium `pi_tau ∝ mu exp(P(y > pi_tau) / tau)` with `tau`
///   found by a bracketing root search on `log tau` so that `KL(pi_tau || mu)` equals the budget (it falls as
///   `tau` grows). When even `tau = MIN_TAU_RATIO * max margin` stays under the budget, that
///   equilibrium is returned and its KL is below the budget;
/// - when every margin is zero (the population is indifferent between all alternatives),
///   every policy is an equilibrium and the regularised one is the reference.
pub fn nlhf_policy(
    pref: &[Vec<f64>],
    reference: &[f64],
    budget: Option<f64>,
) -> Result<(Vec<f64>, Option<f64>)> {
    let Some(budget) = budget else {
        return Ok((maximal_lottery(pref)?, None));
    };
    if budget <= 0.0 {
        return Ok((reference.to_vec(), None));
    }
    let ml = maximal_lottery(pref)?;
    if kl(&ml, reference) <= budget {
        return Ok((ml, None));
    }
    let solve = |tau: f64, start: &[f64]| equilibrium(pref, reference, tau, start);
    let scale = margins(pref)
        .iter()
        .flatten()
        .fold(0.0_f64, |a, v| a.max(v.abs()));
    if scale == 0.0 {
        return Ok((reference.to_vec(), None));
    }
    let min_tau = MIN_TAU_RATIO * scale;
    // Bracket: KL(pi_hi) < budget <= KL(pi_lo).
    let mut hi = scale;
    let mut pi_hi = solve(hi, reference);
    while kl(&pi_hi, reference) >= budget && hi < 1e8 * scale {
        hi *= 4.0;
        pi_hi = solve(hi, &pi_hi);
    }
    let mut lo = hi / 4.0;
    let mut pi_lo = solve(lo, &pi_hi);
    while kl(&pi_lo, reference) < budget {
        if lo <= min_tau {
            return Ok((pi_lo, Some(lo)));
        }
        hi = lo;
        pi_hi = pi_lo.clone();
        lo = (lo / 4.0).max(min_tau);
        pi_lo = solve(lo, &pi_hi);
    }
    // Illinois (regula falsi with halving) on f(log tau) = KL(pi_tau || mu) - budget, which is
    // smooth and decreasing: a handful of solves instead of bisection's dozens.
    let (mut x_lo, mut x_hi) = (lo.ln(), hi.ln());
    let mut f_lo = kl(&pi_lo, reference) - budget;
    let mut f_hi = kl(&pi_hi, reference) - budget;
    let mut side = 0i8;
    for _ in 0..100 {
        let x = if f_lo - f_hi > 0.0 {
            (x_lo * f_hi - x_hi * f_lo) / (f_hi - f_lo)
        } else {
            0.5 * (x_lo + x_hi)
        };
        let x = x.clamp(x_lo.min(x_hi), x_lo.max(x_hi));
        let pi = solve(x.exp(), &pi_hi);
        let f = kl(&pi, reference) - budget;
        // Accept only from below, so the policy never exceeds the budget.
        if f <= 0.0 && -f <= 1e-7 * budget.max(1e-3) {
            return Ok((pi, Some(x.exp())));
        }
        if f < 0.0 {
            x_hi = x;
            f_hi = f;
            pi_hi = pi;
            if side == -1 {
                f_lo *= 0.5;
            }
            side = -1;
        } else {
            x_lo = x;
            f_lo = f;
            if side == 1 {
                f_hi *= 0.5;
            }
            side = 1;
        }
        if (x_hi - x_lo).abs() < 1e-12 {
            break;
        }
    }
    hi = x_hi.exp();
    Ok((pi_hi, Some(hi)))
}
