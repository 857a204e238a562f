//! Shared checks of the loss tests: f64 hand formulas, candle variables, and gradients from
//! candle's backward pass against central finite differences.

#![allow(dead_code)]

use candle_core::{Device, Tensor, Var};
use thresh_trainer::losses::LossOutput;

pub const VALUE_TOL: f64 = 1e-5;
pub const GRAD_TOL: f64 = 1e-4;

pub fn var(v: &[f64]) -> Var {
    Var::from_vec(v.iter().map(|&x| x as f32).collect(), v.len(), &Device::Cpu).unwrap()
}

pub fn constant(v: &[f64]) -> Tensor {
    Tensor::from_vec(v.iter().map(|&x| x as f32).collect(), v.len(), &Device::Cpu).unwrap()
}

pub fn value(out: &LossOutput) -> f64 {
    assert!(out.loss.dims().is_empty(), "loss must be a scalar");
    f64::from(out.loss.to_scalar::<f32>().unwrap())
}

pub fn grad(out: &LossOutput, v: &Var) -> Vec<f64> {
    let grads = out.loss.backward().unwrap();
    let g = grads.get(v.as_tensor()).expect("variable got no gradient");
    g.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

/// Central finite differences of `f` at `x`.
pub fn numeric_grad(f: &dyn Fn(&[f64]) -> f64, x: &[f64]) -> Vec<f64> {
    let h = 1e-5;
    (0..x.len())
        .map(|i| {
            let mut up = x.to_vec();
            let mut down = x.to_vec();
            up[i] += h;
            down[i] -= h;
            (f(&up) - f(&down)) / (2.0 * h)
        })
        .collect()
}

pub fn assert_close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol * (1.0 + want.abs()),
        "{what}: got {got}, want {want}"
    );
}

pub fn assert_grad(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: gradient length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_close(*g, *w, GRAD_TOL, &format!("{what} d/dx[{i}]"));
    }
}

/// `ln sigmoid(x)` in f64, stable.
pub fn ls(x: f64) -> f64 {
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

pub fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

pub fn mean(v: impl IntoIterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.into_iter().collect();
    v.iter().sum::<f64>() / v.len() as f64
}
