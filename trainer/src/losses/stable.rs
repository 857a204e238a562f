//! Numerically stable softplus, log-sigmoid and sigmoid built from differentiable candle ops.
//!
//! `softplus(x) = m + ln(e^{-m} + e^{x-m})` with `m = max(x, 0)` detached. Both exponents
//! are `<= 0`, so nothing overflows, and because `m` is a constant to autograd the gradient
//! is exactly `e^{x-m} / (e^{-m} + e^{x-m}) = sigmoid(x)`, smooth at 0 (formulations
//! through `relu`/`abs` depend on how the backward pass breaks the tie at 0).

use candle_core::Tensor;

use crate::error::Result;

/// `ln(1 + e^x)`, elementwise.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    let m = x.relu()?.detach();
    let a = m.neg()?.exp()?;
    let b = (x - &m)?.exp()?;
    Ok((m + (a + b)?.log()?)?)
}

/// `ln sigmoid(x) = -softplus(-x)`, elementwise.
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(softplus(&x.neg()?)?.neg()?)
}

/// `sigmoid(x) = exp(ln sigmoid(x))`, elementwise.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    Ok(log_sigmoid(x)?.exp()?)
}
