//! Nash-MD's loss, online IPO and the geometric mixture against hand computations.
//!
//! Nash-MD's loss holds a stop-gradient, so its gradient is not the derivative of its value:
//! both are checked against the hand formulas, `d loss / d logp_policy(i, t) = mask(i, t) *
//! (beta * (logp_policy - logp_ref)(i, t) - (p_i - 1/2)) / B`.

use candle_core::{Device, Tensor, Var};
use thresh_trainer::commands::nash_md::Mixture;
use thresh_trainer::commands::nash_md::sampling::{log_softmax, mixture_logits};
use thresh_trainer::losses::{PairLogps, nash_md, online_ipo};

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
        "{what}: got {got}, want {want}"
    );
}

fn mat(v: &[[f64; 3]; 2]) -> Vec<f32> {
    v.iter().flatten().map(|&x| x as f32).collect()
}

#[test]
fn nash_md_value_and_gradient_match_the_hand_formula() {
    let dev = Device::Cpu;
    let lp = [[-1.0, -2.0, -0.5], [-0.3, -1.2, -4.0]];
    let lr = [[-1.5, -1.0, -0.7], [-0.4, -2.0, -9.0]];
    // The second row's last position is padding.
    let mask = [[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]];
    let p = [0.8, 0.25];
    let beta = 0.3;
    let policy = Var::from_vec(mat(&lp), (2, 3), &dev).unwrap();
    let reference = Tensor::from_vec(mat(&lr), (2, 3), &dev).unwrap();
    let m = Tensor::from_vec(mat(&mask), (2, 3), &dev).unwrap();
    let pref = Tensor::new(&[0.8f32, 0.25], &dev).unwrap();
    let out = nash_md(policy.as_tensor(), &reference, &m, &pref, beta).unwrap();

    // Hand: row 0: kl term = 0.5*(-1) + (-1)*(-2) + 0.2*(-0.5) = -0.5 + 2 - 0.1 = 1.4;
    // sum logp = -3.5; per = 0.3*1.4 - 0.3*(-3.5) = 0.42 + 1.05 = 1.47.
    // Row 1: kl = 0.1*(-0.3) + 0.8*(-1.2) = -0.03 - 0.96 = -0.99; sum logp = -1.5;
    // per = 0.3*(-0.99) - (-0.25)*(-1.5) = -0.297 - 0.375 = -0.672. Mean 0.399.
    let mut want = 0.0;
    for i in 0..2 {
        let (mut kl, mut s) = (0.0, 0.0);
        for t in 0..3 {
            kl += mask[i][t] * (lp[i][t] - lr[i][t]) * lp[i][t];
            s += mask[i][t] * lp[i][t];
        }
        want += beta * kl - (p[i] - 0.5) * s;
    }
    want /= 2.0;
    close(want, 0.399, "hand arithmetic");
    close(
        f64::from(out.loss.to_scalar::<f32>().unwrap()),
        want,
        "loss value",
    );
    close(out.metrics["preference"], 0.525, "mean preference");
    // KL estimate: row 0 sums 0.5 - 1 + 0.2 = -0.3, row 1 0.1 + 0.8 = 0.9; mean 0.3.
    close(out.metrics["kl"], 0.3, "kl metric");

    let grads = out.loss.backward().unwrap();
    let g = grads
        .get(policy.as_tensor())
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for i in 0..2 {
        for t in 0..3 {
            let want = mask[i][t] * (beta * (lp[i][t] - lr[i][t]) - (p[i] - 0.5)) / 2.0;
            close(f64::from(g[i][t]), want, &format!("gradient ({i}, {t})"));
        }
    }
    // Row 0, token 0 by hand: (0.3 * 0.5 - 0.3) / 2 = -0.075.
    close(f64::from(g[0][0]), -0.075, "gradient (0, 0) by hand");
}

#[test]
fn nash_md_rejects_bad_inputs() {
    let dev = Device::Cpu;
    let a = Tensor::zeros((2, 3), candle_core::DType::F32, &dev).unwrap();
    let short = Tensor::zeros((2, 2), candle_core::DType::F32, &dev).unwrap();
    let p = Tensor::new(&[0.5f32, 0.5], &dev).unwrap();
    let bad_p = Tensor::new(&[0.5f32, 1.5], &dev).unwrap();
    let err = nash_md(&a, &short, &a, &p, 0.1).unwrap_err().to_string();
    assert!(err.contains("reference"), "{err}");
    let err = nash_md(&a, &a, &a, &bad_p, 0.1).unwrap_err().to_string();
    assert!(err.contains("[0, 1]"), "{err}");
    let err = nash_md(&a, &a, &a, &p, -1.0).unwrap_err().to_string();
    assert!(err.contains("beta"), "{err}");
}

#[test]
fn online_ipo_orders_pairs_by_preference_and_skips_ties() {
    let dev = Device::Cpu;
    let pc = Var::new(&[-1.0f32, -2.0, -3.0], &dev).unwrap();
    let pr = Var::new(&[-1.5f32, -1.0, -3.0], &dev).unwrap();
    let rc = Tensor::new(&[-1.2f32, -2.5, -2.0], &dev).unwrap();
    let rr = Tensor::new(&[-1.0f32, -1.1, -4.0], &dev).unwrap();
    let pairs = PairLogps {
        policy_chosen: pc.as_tensor().clone(),
        policy_rejected: pr.as_tensor().clone(),
        ref_chosen: rc,
        ref_rejected: rr,
    };
    // Pair 0: first wins; pair 1: second wins; pair 2: a tie.
    let pref = Tensor::new(&[0.9f32, 0.2, 0.5], &dev).unwrap();
    let tau = 0.25; // target margin 2
    let out = online_ipo(&pairs, &pref, tau).unwrap();
    // Pair 0: h = (-1 + 1.2) - (-1.5 + 1.0) = 0.2 + 0.5 = 0.7; (0.7 - 2)^2 = 1.69.
    // Pair 1 (second wins): h = (-1 + 1.1) - (-2 + 2.5) = 0.1 - 0.5 = -0.4; (-0.4 - 2)^2 = 5.76.
    // Mean over the two labelled pairs: 3.725.
    close(
        f64::from(out.loss.to_scalar::<f32>().unwrap()),
        3.725,
        "loss value",
    );
    close(out.metrics["margin"], 0.15, "margin");
    close(out.metrics["labelled"], 2.0 / 3.0, "labelled share");
    let grads = out.loss.backward().unwrap();
    let gc = grads.get(pc.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    let gr = grads.get(pr.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    // d/dh (h - 2)^2 / 2 = (h - 2); pair 0: -1.3 on chosen, +1.3 on rejected; pair 1's h is
    // lr(second) - lr(first): -2.4 on its second (rejected field), +2.4 on its first.
    let want_c = [-1.3, 2.4, 0.0];
    let want_r = [1.3, -2.4, 0.0];
    for i in 0..3 {
        close(f64::from(gc[i]), want_c[i], &format!("d/d first[{i}]"));
        close(f64::from(gr[i]), want_r[i], &format!("d/d second[{i}]"));
    }
}

#[test]
fn online_ipo_of_only_ties_is_zero() {
    let dev = Device::Cpu;
    let v = Tensor::new(&[-1.0f32, -2.0], &dev).unwrap();
    let pairs = PairLogps {
        policy_chosen: v.clone(),
        policy_rejected: v.clone(),
        ref_chosen: v.clone(),
        ref_rejected: v,
    };
    let pref = Tensor::new(&[0.5f32, 0.5], &dev).unwrap();
    let out = online_ipo(&pairs, &pref, 0.1).unwrap();
    assert_eq!(out.loss.to_scalar::<f32>().unwrap(), 0.0);
    assert_eq!(out.metrics["labelled"], 0.0);
}

#[test]
fn mixture_logits_match_the_hand_computation() {
    let policy = [1.0f32, 2.0, 0.0];
    let reference = [3.0f32, -1.0, 0.5];
    let c = 0.25;
    // c ref + (1 - c) policy = [0.75 + 0.75, -0.25 + 1.5, 0.125 + 0] = [1.5, 1.25, 0.125].
    let z = [1.5f64, 1.25, 0.125];
    let lse = z.iter().map(|v| v.exp()).sum::<f64>().ln();
    let got = mixture_logits(&policy, &reference, c);
    for i in 0..3 {
        close(f64::from(got[i]), z[i] - lse, &format!("token {i}"));
    }
    // A distribution: probabilities sum to one.
    close(
        got.iter().map(|v| f64::from(v.exp())).sum(),
        1.0,
        "normalised",
    );
    // c = 0 is the policy, c = 1 the reference (both normalised).
    let at0 = mixture_logits(&policy, &reference, 0.0);
    let at1 = mixture_logits(&policy, &reference, 1.0);
    let lp = log_softmax(&policy);
    let lr = log_softmax(&reference);
    for i in 0..3 {
        close(f64::from(at0[i]), f64::from(lp[i]), "c = 0");
        close(f64::from(at1[i]), f64::from(lr[i]), "c = 1");
    }
    // log_softmax by hand for the policy: lse(1, 2, 0) = ln(e + e^2 + 1).
    let lse_p = (1f64.exp() + 2f64.exp() + 1.0).ln();
    close(f64::from(lp[1]), 2.0 - lse_p, "log_softmax");
}

#[test]
fn mixture_schedule_parses_and_interpolates() {
    let m = Mixture::parse("0.5").unwrap();
    assert_eq!((m.at(0, 10), m.at(9, 10)), (0.5, 0.5));
    let m = Mixture::parse("0.8..0.2").unwrap();
    close(m.at(0, 4), 0.8, "first step");
    close(m.at(1, 4), 0.6, "second step");
    close(m.at(3, 4), 0.2, "last step");
    close(m.at(7, 4), 0.2, "past the end");
    for bad in ["1.5", "x", "0.2..", "-0.1..0.5"] {
        let err = Mixture::parse(bad).unwrap_err().to_string();
        assert!(err.contains("--mixture"), "{bad}: {err}");
    }
}
