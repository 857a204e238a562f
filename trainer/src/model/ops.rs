//! Differentiable building blocks.
//!
//! candle's fused `rms_norm`, `rope*` and `softmax_last_dim` kernels have no backward pass, so
//! gradients silently stop at them. Everything here is composed from elementary tensor
//! operations that candle differentiates.

use candle_core::{D, DType, Device, Tensor};

use crate::error::Result;

/// RMSNorm over the last dimension: `x / sqrt(mean(x^2) + eps) * w`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let inv = (ms + eps)?.sqrt()?.recip()?;
    Ok(x.broadcast_mul(&inv)?.broadcast_mul(w)?)
}

/// Softmax over the last dimension, stabilised by the (detached) row maximum.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    Ok(e.broadcast_div(&sum)?)
}

/// Log-softmax over the last dimension: `x - logsumexp(x)`.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&lse)?)
}

/// Full-width rotary tables `(len, head_dim)` from the half-width ones `(len, head_dim / 2)`.
pub fn full_tables(cos: &Tensor, sin: &Tensor) -> Result<(Tensor, Tensor)> {
    Ok((
        Tensor::cat(&[cos, cos], D::Minus1)?,
        Tensor::cat(&[sin, sin], D::Minus1)?,
    ))
}

/// Rotary embedding in the rotate-half convention on `(b, heads, t, d)`, with full-width
/// tables `(t, d)`: `x cos + rotate_half(x) sin`, `rotate_half([x1, x2]) = [-x2, x1]`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let half = d / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    Ok((x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?)?)
}

/// Additive attention mask `(b, 1, groups * t, t)` for right-padded rows: query `i` (row
/// `g * t + i` of every group `g`) sees key `j` when `j <= i`, `i - j` is inside the sliding
/// window, and `j` is a real token of its row (`j < lengths[b]`).
pub fn attention_mask(
    lengths: &[usize],
    t: usize,
    groups: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Tensor> {
    let b = lengths.len();
    let window = window.unwrap_or(usize::MAX);
    let rows = groups * t;
    let mut m = vec![0f32; b * rows * t];
    for (bi, &len) in lengths.iter().enumerate() {
        for g in 0..groups {
            for i in 0..t {
                let row = &mut m[((bi * groups + g) * t + i) * t..][..t];
                for (j, v) in row.iter_mut().enumerate() {
                    // A padding query keeps its real keys, so no row is fully masked.
                    let padded_key = j >= len && i < len;
                    if j > i || i - j >= window || padded_key {
                        *v = f32::NEG_INFINITY;
                    }
                }
            }
        }
    }
    Ok(Tensor::from_vec(m, (b, 1, rows, t), device)?.to_dtype(DType::F32)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &Tensor, b: &Tensor, tol: f32) {
        let d = thresh_models::testing::max_abs_diff(a, b).unwrap();
        assert!(d < tol, "max difference {d}");
    }

    #[test]
    fn compositions_match_fused_kernels() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 5, 8), &dev).unwrap();
        let w = Tensor::randn(1f32, 0.1, 8, &dev).unwrap();
        close(
            &rms_norm(&x, &w, 1e-5).unwrap(),
            &candle_nn::ops::rms_norm(&x, &w, 1e-5).unwrap(),
            1e-5,
        );
        close(
            &softmax(&x).unwrap(),
            &candle_nn::ops::softmax_last_dim(&x).unwrap(),
            1e-6,
        );
        close(
            &log_softmax(&x).unwrap(),
            &candle_nn::ops::log_softmax(&x, D::Minus1).unwrap(),
            1e-5,
        );
        let cos = Tensor::randn(0f32, 1.0, (5, 4), &dev).unwrap();
        let sin = Tensor::randn(0f32, 1.0, (5, 4), &dev).unwrap();
        let (fc, fs) = full_tables(&cos, &sin).unwrap();
        close(
            &rope(&x, &fc, &fs).unwrap(),
            &candle_nn::rotary_emb::rope(&x.contiguous().unwrap(), &cos, &sin).unwrap(),
            1e-5,
        );
    }

    #[test]
    fn composed_ops_backpropagate() {
        let dev = Device::Cpu;
        let x = candle_core::Var::randn(0f32, 1.0, (2, 4, 8), &dev).unwrap();
        let w = candle_core::Var::randn(1f32, 0.1, 8, &dev).unwrap();
        let y = softmax(&rms_norm(x.as_tensor(), w.as_tensor(), 1e-5).unwrap()).unwrap();
        let loss = y.sqr().unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        for v in [&x, &w] {
            let g = grads.get(v.as_tensor()).unwrap();
            let n = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(n > 0.0);
        }
    }
}
