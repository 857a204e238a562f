//! PRO (binary, pairwise, scalar) and KLDO (ma, biased, f-div, normalize) against hand
//! computations in f64: values to 1e-5 (relative), gradients from candle's backward pass
//! against central finite differences of the same hand formulas (step 1e-5) to 1e-4.

use candle_core::{Device, Tensor, Var};
use thresh_trainer::losses::{
    Kldo, KldoEstimator, PairLogps, binary_class_weights, pro_binary, pro_pairwise, pro_scalar,
    scaled_scores,
};

mod loss_check;

use loss_check::*;

/// PRO's proximal term from scaled log-ratios.
fn reg(a: f64, b: f64) -> f64 {
    -(0.5 * ls(a - b) + 0.5 * ls(b - a))
}

#[test]
fn class_weights_balance_an_imbalanced_batch() {
    let w = binary_class_weights(&[true, true, true, false]);
    let want = [2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0, 2.0];
    for (g, w) in w.iter().zip(want) {
        assert_close(f64::from(*g), w, 1e-7, "weight");
    }
    // Each class carries half the total weight; one class alone gets plain weights.
    assert_eq!(binary_class_weights(&[false, false]), vec![1.0, 1.0]);
    assert!(binary_class_weights(&[]).is_empty());
}

#[test]
fn pro_binary_matches_hand_value_gradient_and_reweighting() {
    let policy = [-10.0, -12.5, -4.0, -20.0];
    let reference = [-11.0, -12.0, -3.0, -18.0];
    let desired = [true, true, true, false];
    let (beta, alpha) = (0.3, 2.5);
    let row = |x: &[f64], i: usize| {
        let s = if desired[i] { 0.5 } else { -0.5 };
        -beta * s * x[i] + alpha * reg(beta * (x[i] - reference[i]), 0.0)
    };
    let weights = binary_class_weights(&desired);
    let w64: Vec<f64> = weights.iter().map(|&w| f64::from(w)).collect();
    let weighted =
        |x: &[f64]| (0..4).map(|i| w64[i] * row(x, i)).sum::<f64>() / w64.iter().sum::<f64>();
    let x = var(&policy);
    let w = Tensor::from_vec(weights.clone(), 4, &Device::Cpu).unwrap();
    let out = pro_binary(
        x.as_tensor(),
        &constant(&reference),
        &desired,
        &w,
        beta,
        alpha,
    )
    .unwrap();
    assert_close(
        value(&out),
        weighted(&policy),
        VALUE_TOL,
        "pro binary value",
    );
    assert_grad(
        &grad(&out, &x),
        &numeric_grad(&weighted, &policy),
        "pro binary",
    );
    // Reweighted, the one undesired row counts as much as the three desired rows together.
    let balanced = 0.5 * mean((0..3).map(|i| row(&policy, i))) + 0.5 * row(&policy, 3);
    assert_close(value(&out), balanced, VALUE_TOL, "1:1 effective ratio");
    // Unit weights: the plain mean, which differs here.
    let ones = Tensor::ones(4, candle_core::DType::F32, &Device::Cpu).unwrap();
    let plain = pro_binary(
        &constant(&policy),
        &constant(&reference),
        &desired,
        &ones,
        beta,
        alpha,
    )
    .unwrap();
    let want = mean((0..4).map(|i| row(&policy, i)));
    assert_close(value(&plain), want, VALUE_TOL, "unit weights");
    assert!((want - balanced).abs() > 0.1);
    let negative = constant(&[1.0, -1.0, 1.0, 1.0]);
    assert!(
        pro_binary(
            &constant(&policy),
            &constant(&reference),
            &desired,
            &negative,
            beta,
            alpha
        )
        .is_err()
    );
}

#[test]
fn pro_pairwise_matches_hand_value_and_gradient() {
    let pc = [-12.5, -30.25, -7.0];
    let pr = [-14.0, -29.0, -7.5];
    let rc = [-13.0, -30.0, -6.0];
    let rr = [-13.5, -29.5, -9.0];
    let (beta, alpha) = (0.1, 2.5);
    let f = |x: &[f64]| {
        mean((0..3).map(|i| {
            let rw = beta * (x[i] - rc[i]);
            let rl = beta * (x[3 + i] - rr[i]);
            -(beta / 8.0) * (x[i] - x[3 + i])
                + (alpha / 9.0) * (reg(rw, rl) + reg(rw, 0.0) + reg(rl, 0.0))
        }))
    };
    let x0: Vec<f64> = [pc.as_slice(), pr.as_slice()].concat();
    let x = var(&x0);
    let p = PairLogps {
        policy_chosen: x.as_tensor().narrow(0, 0, 3).unwrap(),
        policy_rejected: x.as_tensor().narrow(0, 3, 3).unwrap(),
        ref_chosen: constant(&rc),
        ref_rejected: constant(&rr),
    };
    let out = pro_pairwise(&p, beta, alpha).unwrap();
    assert_close(value(&out), f(&x0), VALUE_TOL, "pro pairwise value");
    assert_grad(&grad(&out, &x), &numeric_grad(&f, &x0), "pro pairwise");
}

#[test]
fn scores_are_centred_and_scaled_to_half_unit() {
    let s = scaled_scores(&[1.0, 0.0]);
    assert_eq!(s, vec![0.5, -0.5]);
    // mean 1/3, centred (-1/3, -1/3, 2/3), largest magnitude 2/3 -> (-1/4, -1/4, 1/2).
    let s = scaled_scores(&[0.0, 0.0, 1.0]);
    for (g, w) in s.iter().zip([-0.25, -0.25, 0.5]) {
        assert_close(*g, w, 1e-12, "scaled");
    }
    assert_eq!(scaled_scores(&[7.0, 7.0, 7.0]), vec![0.0; 3]);
    // Shifting and scaling the raw scores changes nothing.
    let a = scaled_scores(&[3.0, 5.0, 11.0]);
    let b = scaled_scores(&[30.0, 50.0, 110.0]);
    for (x, y) in a.iter().zip(&b) {
        assert_close(*x, *y, 1e-12, "scale invariance");
    }
}

/// Hand PRO scalar loss: `P` rows of `N`, enumerating the unordered pairs of `{y_1..y_N, H}`.
fn pro_scalar_hand(
    x: &[f64],
    reference: &[f64],
    scores: &[f64],
    n: usize,
    beta: f64,
    alpha: f64,
) -> f64 {
    let p = x.len() / n;
    mean((0..p).map(|row| {
        let s = scaled_scores(&scores[row * n..row * n + n]);
        let mut r: Vec<f64> = (0..n)
            .map(|i| beta * (x[row * n + i] - reference[row * n + i]))
            .collect();
        r.push(0.0); // H
        let mut regs = 0.0;
        let mut pairs = 0;
        for i in 0..=n {
            for j in i + 1..=n {
                regs += reg(r[i], r[j]);
                pairs += 1;
            }
        }
        assert_eq!(pairs, n * (n + 1) / 2);
        let linear: f64 = (0..n).map(|i| s[i] * x[row * n + i]).sum();
        -(beta / n as f64) * linear + 2.0 * alpha / (n * (n + 1)) as f64 * regs
    }))
}

#[test]
fn pro_scalar_matches_hand_value_and_gradient() {
    let policy = [-10.0, -12.0, -9.5, -20.0, -18.0, -25.0];
    let reference = [-11.0, -11.0, -10.0, -19.0, -18.5, -22.0];
    let scores = [0.2, 0.9, 0.4, 7.0, 1.0, 3.0];
    let (beta, alpha) = (0.5, 2.5);
    let f = |x: &[f64]| pro_scalar_hand(x, &reference, &scores, 3, beta, alpha);
    let x = Var::from_vec(
        policy.iter().map(|&v| v as f32).collect(),
        (2, 3),
        &Device::Cpu,
    )
    .unwrap();
    let to2 = |v: &[f64]| {
        Tensor::from_vec(v.iter().map(|&a| a as f32).collect(), (2, 3), &Device::Cpu).unwrap()
    };
    let out = pro_scalar(x.as_tensor(), &to2(&reference), &to2(&scores), beta, alpha).unwrap();
    assert_close(value(&out), f(&policy), VALUE_TOL, "pro scalar value");
    assert_grad(&grad(&out, &x), &numeric_grad(&f, &policy), "pro scalar");
    // The best response of row 0 is index 1 (-12), of row 1 index 0 (-20).
    assert_close(out.metrics["logps/best"], -16.0, 1e-6, "logps/best");
}

#[test]
fn pro_scalar_counts_every_unordered_pair_with_h_once() {
    // Policy = reference: every r is 0 and every Reg is ln 2; with equal scores the linear
    // term vanishes, so the loss is 2 alpha/(N(N+1)) * N(N+1)/2 * ln 2 = alpha ln 2 for any N.
    for n in [2usize, 3, 5] {
        let logp: Vec<f32> = (0..2 * n).map(|i| -3.0 - i as f32).collect();
        let t = Tensor::from_vec(logp.clone(), (2, n), &Device::Cpu).unwrap();
        let scores = Tensor::ones((2, n), candle_core::DType::F32, &Device::Cpu).unwrap();
        let out = pro_scalar(&t, &t, &scores, 0.1, 1.7).unwrap();
        assert_close(
            value(&out),
            1.7 * std::f64::consts::LN_2,
            VALUE_TOL,
            &format!("N = {n}"),
        );
    }
    let one = Tensor::zeros((2, 1), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(pro_scalar(&one, &one, &one, 0.1, 1.0).is_err());
}

const POLICY: [f64; 5] = [-10.0, -12.0, -9.0, -14.0, -11.0];
const REFERENCE: [f64; 5] = [-11.0, -11.5, -10.0, -12.0, -11.5];
const ALIGNED: [bool; 5] = [true, false, true, false, false];

fn t_of(x: &[f64], beta: f64) -> Vec<f64> {
    x.iter()
        .zip(REFERENCE)
        .map(|(p, r)| beta * (p - r))
        .collect()
}

/// Hand KLDO: `-mean_a T + c * U` with `U` the log-mean-exp or f-div term.
fn kldo_hand(x: &[f64], beta: f64, fdiv: bool, c: f64) -> f64 {
    let t = t_of(x, beta);
    let a: Vec<f64> = (0..5).filter(|&i| ALIGNED[i]).map(|i| t[i]).collect();
    let u: Vec<f64> = (0..5).filter(|&i| !ALIGNED[i]).map(|i| t[i]).collect();
    let unaligned = if fdiv {
        mean(u.iter().map(|t| (t - 1.0).exp()))
    } else {
        mean(u.iter().map(|t| t.exp())).ln()
    };
    -mean(a) + c * unaligned
}

fn kldo(estimator: KldoEstimator, normalize: bool, beta: f64) -> Kldo {
    Kldo {
        beta,
        estimator,
        normalize,
        ema: None,
    }
}

#[test]
fn kldo_biased_and_f_div_match_hand_values_and_gradients() {
    let beta = 0.5;
    for (estimator, fdiv) in [
        (KldoEstimator::Biased, false),
        (KldoEstimator::FDivergence, true),
    ] {
        for (normalize, c) in [(false, 1.0), (true, 2.0 / 3.0)] {
            let f = |x: &[f64]| kldo_hand(x, beta, fdiv, c);
            let x = var(&POLICY);
            let mut k = kldo(estimator, normalize, beta);
            let out = k
                .loss(x.as_tensor(), &constant(&REFERENCE), &ALIGNED)
                .unwrap();
            let what = format!("{estimator:?} normalize={normalize}");
            assert_close(value(&out), f(&POLICY), VALUE_TOL, &what);
            assert_grad(&grad(&out, &x), &numeric_grad(&f, &POLICY), &what);
            assert_eq!(k.ema, None, "{what}: only ma keeps a moving average");
        }
    }
}

#[test]
fn kldo_ma_forward_is_exact_and_its_gradient_uses_the_moving_average() {
    let beta = 0.5;
    for (normalize, c) in [(false, 1.0), (true, 2.0 / 3.0)] {
        let mut k = kldo(KldoEstimator::MovingAverage, normalize, beta);
        let mut ema_hand: Option<f64> = None;
        // Three batches with different policies; the moving average carries across them.
        for shift in [0.0, 1.5, -0.75] {
            let x0: Vec<f64> = POLICY
                .iter()
                .enumerate()
                .map(|(i, p)| p + shift * (i as f64 - 2.0))
                .collect();
            let x = var(&x0);
            let out = k
                .loss(x.as_tensor(), &constant(&REFERENCE), &ALIGNED)
                .unwrap();
            // Forward: exactly the Donsker-Varadhan value.
            assert_close(
                value(&out),
                kldo_hand(&x0, beta, false, c),
                VALUE_TOL,
                "ma forward",
            );
            // ema <- 0.1 mean exp(T_u) + 0.9 ema (first batch: its own mean).
            let t = t_of(&x0, beta);
            let batch = mean((0..5).filter(|&i| !ALIGNED[i]).map(|i| t[i].exp()));
            let ema = ema_hand.map_or(batch, |e| 0.1 * batch + 0.9 * e);
            ema_hand = Some(ema);
            assert_close(k.ema.unwrap(), ema, 1e-5, "ema");
            assert_close(out.metrics["ema"], ema, 1e-5, "ema metric");
            // Gradient: -beta/A on aligned rows; c * beta exp(T_j) / (U ema) on unaligned rows.
            let want: Vec<f64> = (0..5)
                .map(|i| {
                    if ALIGNED[i] {
                        -beta / 2.0
                    } else {
                        c * beta * t[i].exp() / (3.0 * ema)
                    }
                })
                .collect();
            let got = grad(&out, &x);
            assert_grad(&got, &want, "ma gradient");
            if shift != 0.0 {
                // Not the minibatch log-mean-exp gradient any more.
                let biased = numeric_grad(&|x: &[f64]| kldo_hand(x, beta, false, c), &x0);
                assert!(
                    (got[1] - biased[1]).abs() > 1e-3,
                    "ma gradient equals the biased one"
                );
            }
        }
    }
}

#[test]
fn kldo_state_round_trips_and_bad_batches_are_errors() {
    let mut k = Kldo::default();
    assert_eq!(
        (k.beta, k.estimator, k.normalize, k.ema),
        (0.1, KldoEstimator::MovingAverage, false, None)
    );
    k.loss(&constant(&POLICY), &constant(&REFERENCE), &ALIGNED)
        .unwrap();
    let saved = serde_json::to_string(&k).unwrap();
    let restored: Kldo = serde_json::from_str(&saved).unwrap();
    // serde_json's default float parsing may differ from the written value in the last bit.
    assert_eq!((restored.beta, restored.estimator), (k.beta, k.estimator));
    assert_close(restored.ema.unwrap(), k.ema.unwrap(), 1e-15, "restored ema");
    let err = k
        .loss(&constant(&POLICY), &constant(&REFERENCE), &[true; 5])
        .unwrap_err();
    assert!(err.to_string().contains("0 unaligned"), "{err}");
    assert!(
        k.loss(&constant(&POLICY), &constant(&REFERENCE), &[true, false])
            .is_err()
    );
}

#[test]
fn estimator_and_reduction_names_match_the_issue() {
    use clap::ValueEnum;
    use thresh_trainer::losses::RdroReduction;
    for (name, e) in [
        ("ma", KldoEstimator::MovingAverage),
        ("biased", KldoEstimator::Biased),
        ("f-div", KldoEstimator::FDivergence),
    ] {
        assert_eq!(KldoEstimator::from_str(name, false).unwrap(), e);
        assert_eq!(serde_json::to_value(e).unwrap(), name);
    }
    for (name, r) in [
        ("pooled", RdroReduction::Pooled),
        ("per-class", RdroReduction::PerClass),
    ] {
        assert_eq!(RdroReduction::from_str(name, false).unwrap(), r);
        assert_eq!(serde_json::to_value(r).unwrap(), name);
    }
}
