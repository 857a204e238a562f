//! SFT, Bradley-Terry, DPO, IPO, KTO and RDRO against hand computations in f64: values to
//! 1e-5 (relative), gradients from candle's backward pass against central finite
//! differences of the same hand formulas (step 1e-5) to 1e-4 (absolute + relative).

use candle_core::{DType, Device, Tensor, Var};
use thresh_trainer::losses::{
    self, PairLogps, RdroReduction, bradley_terry, dpo, ipo, kto, kto_z0, rdro,
};

mod loss_check;

use loss_check::*;

// Policy log-probs of chosen and rejected (the variables), reference log-probs (constants).
const PC: [f64; 3] = [-12.5, -30.25, -7.0];
const PR: [f64; 3] = [-14.0, -29.0, -7.5];
const RC: [f64; 3] = [-13.0, -30.0, -6.0];
const RR: [f64; 3] = [-13.5, -29.5, -9.0];

/// The pair variables `x = [pc.., pr..]` and the `PairLogps` built on them.
fn pair_setup() -> (Var, PairLogps) {
    let x = var(&[PC.as_slice(), PR.as_slice()].concat());
    let p = PairLogps {
        policy_chosen: x.as_tensor().narrow(0, 0, 3).unwrap(),
        policy_rejected: x.as_tensor().narrow(0, 3, 3).unwrap(),
        ref_chosen: constant(&RC),
        ref_rejected: constant(&RR),
    };
    (x, p)
}

fn h(x: &[f64], i: usize) -> f64 {
    (x[i] - RC[i]) - (x[3 + i] - RR[i])
}

#[test]
fn dpo_matches_hand_value_and_gradient() {
    for (beta, eps) in [(0.1, 0.0), (0.5, 0.0), (0.1, 0.2), (2.0, 0.5)] {
        let f = |x: &[f64]| {
            mean((0..3).map(|i| {
                let z = beta * h(x, i);
                -(1.0 - eps) * ls(z) - eps * ls(-z)
            }))
        };
        let (x, p) = pair_setup();
        let out = dpo(&p, beta, eps).unwrap();
        let x0: Vec<f64> = [PC.as_slice(), PR.as_slice()].concat();
        assert_close(value(&out), f(&x0), VALUE_TOL, "dpo value");
        assert_grad(&grad(&out, &x), &numeric_grad(&f, &x0), "dpo");
        // Hand metrics: beta lr(y_w) = beta * [0.5, -0.25, -1.0], beta lr(y_l) = beta * [-0.5, 0.5, 1.5].
        assert_close(
            out.metrics["rewards/chosen"],
            beta * (-0.75 / 3.0),
            1e-5,
            "chosen",
        );
        assert_close(
            out.metrics["rewards/rejected"],
            beta * (1.5 / 3.0),
            1e-5,
            "rejected",
        );
        assert_close(out.metrics["rewards/accuracy"], 1.0 / 3.0, 1e-6, "accuracy");
        assert_close(out.metrics["logps/chosen"], mean(PC), 1e-5, "logps/chosen");
    }
}

#[test]
fn dpo_has_its_textbook_gradient_where_policy_equals_reference() {
    // At the start of training h = 0 exactly: dL/dlogp_w = -beta sigmoid(0) / B = -beta / (2B).
    let x = var(&[-5.0, -6.0]);
    let p = PairLogps {
        policy_chosen: x.as_tensor().narrow(0, 0, 1).unwrap(),
        policy_rejected: x.as_tensor().narrow(0, 1, 1).unwrap(),
        ref_chosen: constant(&[-5.0]),
        ref_rejected: constant(&[-6.0]),
    };
    let out = dpo(&p, 0.1, 0.0).unwrap();
    assert_close(value(&out), std::f64::consts::LN_2, VALUE_TOL, "ln 2");
    assert_grad(&grad(&out, &x), &[-0.05, 0.05], "dpo at h = 0");
}

#[test]
fn label_smoothing_interpolates_between_the_two_directions() {
    // eps = 0.5 is symmetric in h: the loss is the same for a pair and its swap.
    let (_, p) = pair_setup();
    let swapped = PairLogps {
        policy_chosen: p.policy_rejected.clone(),
        policy_rejected: p.policy_chosen.clone(),
        ref_chosen: p.ref_rejected.clone(),
        ref_rejected: p.ref_chosen.clone(),
    };
    let a = value(&dpo(&p, 0.3, 0.5).unwrap());
    let b = value(&dpo(&swapped, 0.3, 0.5).unwrap());
    assert_close(a, b, 1e-6, "eps 0.5 symmetry");
    // And the smoothed loss is exactly the convex combination of the two DPO losses.
    let plain = value(&dpo(&p, 0.3, 0.0).unwrap());
    let reversed = value(&dpo(&swapped, 0.3, 0.0).unwrap());
    let smoothed = value(&dpo(&p, 0.3, 0.1).unwrap());
    assert_close(smoothed, 0.9 * plain + 0.1 * reversed, 1e-5, "eps 0.1");
    assert!(dpo(&p, 0.3, 0.6).is_err());
    assert!(dpo(&p, 0.0, 0.0).is_err());
}

#[test]
fn ipo_matches_hand_value_and_gradient() {
    for beta in [0.1, 1.0] {
        let f = |x: &[f64]| mean((0..3).map(|i| (h(x, i) - 1.0 / (2.0 * beta)).powi(2)));
        let (x, p) = pair_setup();
        let out = ipo(&p, beta).unwrap();
        let x0: Vec<f64> = [PC.as_slice(), PR.as_slice()].concat();
        assert_close(value(&out), f(&x0), VALUE_TOL, "ipo value");
        assert_grad(&grad(&out, &x), &numeric_grad(&f, &x0), "ipo");
    }
}

#[test]
fn bradley_terry_matches_hand_value_and_gradient() {
    let x0 = [1.5, -0.25, 3.0, 0.5, 0.75, -2.0];
    let f = |x: &[f64]| mean((0..3).map(|i| -ls(x[i] - x[3 + i])));
    let x = var(&x0);
    let out = bradley_terry(
        &x.as_tensor().narrow(0, 0, 3).unwrap(),
        &x.as_tensor().narrow(0, 3, 3).unwrap(),
    )
    .unwrap();
    assert_close(value(&out), f(&x0), VALUE_TOL, "bt value");
    assert_grad(&grad(&out, &x), &numeric_grad(&f, &x0), "bt");
    assert_close(out.metrics["accuracy"], 2.0 / 3.0, 1e-6, "accuracy");
    assert_close(
        out.metrics["margin"],
        (1.0 - 1.0 + 5.0) / 3.0,
        1e-6,
        "margin",
    );
    // Large margins stay finite (stable log-sigmoid).
    let big = bradley_terry(&constant(&[-80.0]), &constant(&[80.0])).unwrap();
    assert_close(value(&big), 160.0, 1e-6, "-ln sigmoid(-160)");
    assert!(bradley_terry(&constant(&[1.0, 2.0]), &constant(&[1.0])).is_err());
}

#[test]
fn kto_matches_hand_value_and_gradient() {
    let policy = [-10.0, -20.0, -5.0, -8.0];
    let reference = [-11.0, -19.0, -6.5, -8.0];
    let desirable = [true, false, true, false];
    let (z0, beta, ld, lu) = (0.3, 0.5, 1.0, 1.33);
    let f = |x: &[f64]| {
        mean((0..4).map(|i| {
            let lr = x[i] - reference[i];
            if desirable[i] {
                ld * (1.0 - sig(beta * (lr - z0)))
            } else {
                lu * (1.0 - sig(beta * (z0 - lr)))
            }
        }))
    };
    let x = var(&policy);
    let out = kto(
        x.as_tensor(),
        &constant(&reference),
        &desirable,
        z0,
        beta,
        ld,
        lu,
    )
    .unwrap();
    assert_close(value(&out), f(&policy), VALUE_TOL, "kto value");
    assert_grad(&grad(&out, &x), &numeric_grad(&f, &policy), "kto");
    assert_close(out.metrics["kl"], z0, 1e-12, "kl");
    assert_close(
        out.metrics["rewards/desirable"],
        beta * 1.25,
        1e-6,
        "desirable reward",
    );
}

#[test]
fn kto_z0_is_the_clamped_mean_log_ratio() {
    let z = kto_z0(&constant(&[-3.0, -5.0]), &constant(&[-4.0, -5.5])).unwrap();
    assert_close(z, 0.75, 1e-7, "z0");
    let clamped = kto_z0(&constant(&[-5.0, -5.0]), &constant(&[-4.0, -4.5])).unwrap();
    assert_eq!(clamped, 0.0);
    assert!(kto_z0(&constant(&[-5.0]), &constant(&[-4.0, -4.5])).is_err());
}

#[test]
fn rdro_pooled_and_per_class_match_hand_values_and_gradients() {
    let policy = [-3.0, -2.5, -7.0, -1.0, -4.0];
    let reference = [-3.5, -2.0, -6.0, -1.25, -4.0];
    let preferred = [true, true, false, false, false];
    let alpha = 0.4;
    let row = |x: &[f64], i: usize| {
        let lr = x[i] - reference[i];
        if preferred[i] {
            -ls(lr) - alpha * ls(-lr)
        } else {
            -(1.0 - alpha) * ls(-lr)
        }
    };
    let pooled = |x: &[f64]| mean((0..5).map(|i| row(x, i)));
    let per_class = |x: &[f64]| mean((0..2).map(|i| row(x, i))) + mean((2..5).map(|i| row(x, i)));
    for (reduction, f) in [
        (RdroReduction::Pooled, &pooled as &dyn Fn(&[f64]) -> f64),
        (RdroReduction::PerClass, &per_class),
    ] {
        let x = var(&policy);
        let out = rdro(
            x.as_tensor(),
            &constant(&reference),
            &preferred,
            alpha,
            reduction,
        )
        .unwrap();
        assert_close(
            value(&out),
            f(&policy),
            VALUE_TOL,
            &format!("{reduction:?} value"),
        );
        assert_grad(
            &grad(&out, &x),
            &numeric_grad(f, &policy),
            &format!("{reduction:?}"),
        );
        // lr = [0.5, -0.5, -1, 0.25, 0]: right side of 0 for rows 0 and 2 only.
        assert_close(out.metrics["accuracy"], 0.4, 1e-6, "accuracy");
    }
    assert!(
        (pooled(&policy) - per_class(&policy)).abs() > 0.1,
        "imbalanced batch: the reductions must differ"
    );
    assert!(
        rdro(
            &constant(&policy),
            &constant(&reference),
            &preferred,
            1.5,
            RdroReduction::Pooled
        )
        .is_err()
    );
}

/// Minimises RDRO over one free log-ratio per "point" by gradient descent, the batch holding
/// `counts[k] = (preferred rows, dispreferred rows)` at point k.
fn rdro_optimum(counts: &[(usize, usize)], alpha: f64, reduction: RdroReduction) -> Vec<f64> {
    let f = Var::zeros(counts.len(), DType::F32, &Device::Cpu).unwrap();
    let mut idx = Vec::new();
    let mut preferred = Vec::new();
    for (k, &(np, nd)) in counts.iter().enumerate() {
        for _ in 0..np {
            idx.push(k as u32);
            preferred.push(true);
        }
        for _ in 0..nd {
            idx.push(k as u32);
            preferred.push(false);
        }
    }
    let n = idx.len();
    let idx = Tensor::from_vec(idx, n, &Device::Cpu).unwrap();
    let zeros = Tensor::zeros(n, DType::F32, &Device::Cpu).unwrap();
    for _ in 0..3000 {
        let policy = f.as_tensor().index_select(&idx, 0).unwrap();
        let out = rdro(&policy, &zeros, &preferred, alpha, reduction).unwrap();
        let g = out.loss.backward().unwrap();
        let step = (g.get(f.as_tensor()).unwrap() * 2.0).unwrap();
        f.set(&(f.as_tensor() - step).unwrap()).unwrap();
    }
    f.as_tensor()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

#[test]
fn per_class_rdro_recovers_the_relative_density_ratio() {
    // Preferred rows: 3 at point 0, 1 at point 1 (p = 3/4, 1/4); dispreferred rows: 1 and 5
    // (q = 1/6, 5/6). The per-class optimum is ln(p / (alpha p + (1 - alpha) q)).
    let counts = [(3, 1), (1, 5)];
    let alpha = 0.4;
    let p = [0.75, 0.25];
    let q = [1.0 / 6.0, 5.0 / 6.0];
    let got = rdro_optimum(&counts, alpha, RdroReduction::PerClass);
    for k in 0..2 {
        let want = (p[k] / (alpha * p[k] + (1.0 - alpha) * q[k])).ln();
        assert!(
            (got[k] - want).abs() < 1e-3,
            "point {k}: got {}, want {want}",
            got[k]
        );
    }
    // Pooled weights the classes by their batch shares (4 vs 6 rows): a different optimum.
    let pooled = rdro_optimum(&counts, alpha, RdroReduction::Pooled);
    let want0 = (p[0] / (alpha * p[0] + (1.0 - alpha) * q[0])).ln();
    assert!((pooled[0] - want0).abs() > 0.05, "pooled {pooled:?}");
}

/// Hand log-softmax of one row.
fn log_softmax(row: &[f64]) -> Vec<f64> {
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
    row.iter().map(|x| x - lse).collect()
}

#[test]
fn sft_and_sequence_logps_match_hand_values_and_gradients() {
    // B = 2, T = 3, V = 4; position (1, 2) is padding (mask 0).
    let logits: Vec<f64> = (0..24).map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.6).collect();
    let targets = [2u32, 0, 3, 1, 1, 0];
    let mask = [1.0, 1.0, 1.0, 0.0, 1.0, 0.0];
    let tok = |x: &[f64], k: usize| log_softmax(&x[k * 4..k * 4 + 4])[targets[k] as usize];
    let f = |x: &[f64]| {
        let n: f64 = mask.iter().sum();
        -(0..6).map(|k| mask[k] * tok(x, k)).sum::<f64>() / n
    };
    let x = Var::from_vec(
        logits.iter().map(|&v| v as f32).collect(),
        (2, 3, 4),
        &Device::Cpu,
    )
    .unwrap();
    let t = Tensor::from_vec(targets.to_vec(), (2, 3), &Device::Cpu).unwrap();
    let m = Tensor::from_vec(
        mask.iter().map(|&v| v as f32).collect(),
        (2, 3),
        &Device::Cpu,
    )
    .unwrap();
    let out = losses::sft(x.as_tensor(), &t, &m).unwrap();
    assert_close(value(&out), f(&logits), VALUE_TOL, "sft value");
    let g = grad(&out, &x);
    assert_grad(&g, &numeric_grad(&f, &logits), "sft");
    // Masked positions (1, 0) and (1, 2), flat tokens 3 and 5, get no gradient.
    assert!(g[12..16].iter().chain(&g[20..24]).all(|v| *v == 0.0));
    assert!(g[16..20].iter().any(|v| *v != 0.0));
    assert_eq!(out.metrics["tokens"], 4.0);

    let seq = losses::sequence_logps(x.as_tensor(), &t, &m).unwrap();
    let seq = seq.to_vec1::<f32>().unwrap();
    let want0 = tok(&logits, 0) + tok(&logits, 1) + tok(&logits, 2);
    let want1 = tok(&logits, 4);
    assert_close(f64::from(seq[0]), want0, VALUE_TOL, "logp seq 0");
    assert_close(f64::from(seq[1]), want1, VALUE_TOL, "logp seq 1");

    let bad = Tensor::from_vec(vec![2u32, 0, 4, 1, 1, 0], (2, 3), &Device::Cpu).unwrap();
    let err = losses::sft(x.as_tensor(), &bad, &m)
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside the vocabulary"), "{err}");
    let none = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
    assert!(losses::sft(x.as_tensor(), &t, &none).is_err());
}

#[test]
fn stable_forms_stay_finite_and_exact_far_out() {
    let x = constant(&[-200.0, -20.0, 0.0, 20.0, 200.0]);
    let sp = losses::stable::softplus(&x)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let want = [0.0, (-20f64).exp(), std::f64::consts::LN_2, 20.0, 200.0];
    for (g, w) in sp.iter().zip(want) {
        assert_close(f64::from(*g), w, 1e-6, "softplus");
    }
    let s = losses::stable::sigmoid(&x)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(s.iter().all(|v| v.is_finite()));
    assert_close(f64::from(s[2]), 0.5, 1e-7, "sigmoid(0)");
}

#[test]
fn mismatched_inputs_are_errors_not_panics() {
    let a = constant(&[1.0, 2.0]);
    let b = constant(&[1.0, 2.0, 3.0]);
    let err = kto(&a, &b, &[true, false], 0.0, 0.1, 1.0, 1.0).unwrap_err();
    assert!(err.to_string().contains("reference has 3 entries"), "{err}");
    assert!(kto(&a, &a, &[true], 0.0, 0.1, 1.0, 1.0).is_err());
    let empty = Tensor::zeros(0, DType::F32, &Device::Cpu).unwrap();
    assert!(bradley_terry(&empty, &empty).is_err());
    let f64s = Tensor::new(&[1.0f64, 2.0], &Device::Cpu).unwrap();
    assert!(rdro(&f64s, &f64s, &[true, false], 0.5, RdroReduction::Pooled).is_err());
}
