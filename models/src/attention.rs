//! A CPU kernel for decode-step attention: one new query per row against the cached keys.
//!
//! The general path runs two batched matmuls, which on the CPU become one small gemm call per
//! (row, kv head) pair: thousands of calls per step at large batch. This kernel walks the
//! cache in place instead, one task per (row, kv head), computing the scores, the softmax and
//! the weighted sum of values for that head's query group. Each row's result depends on that
//! row alone, so it keeps the decoder batch-invariant.

use candle_core::{DType, Device, Storage, Tensor};
use rayon::prelude::*;

use crate::error::{ModelError, Result};

fn as_f32(s: &Storage) -> Result<&[f32]> {
    match s {
        Storage::Cpu(c) => Ok(c.as_slice::<f32>()?),
        _ => Err(ModelError::InvalidArgument(
            "decode attention kernel needs CPU tensors".into(),
        )),
    }
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ac, ar) = a.split_at(a.len() - a.len() % 16);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(16).zip(bc.chunks_exact(16)) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// Whether the kernel applies: f32 tensors on the CPU whose innermost two dimensions of keys
/// and values are row-major.
pub(crate) fn applies(q: &Tensor, k: &Tensor, v: &Tensor) -> bool {
    matches!(q.device(), Device::Cpu)
        && q.dtype() == DType::F32
        && k.dtype() == DType::F32
        && q.is_contiguous()
        && [k, v].iter().all(|t| {
            let st = t.stride();
            st.len() == 4 && st[3] == 1 && st[2] == t.dims()[3]
        })
}

/// `softmax(q k^T) v` for `q` `(b, kv_heads, groups, d)` (already scaled) against `k`, `v`
/// `(b, kv_heads, len, d)` views of the cache. Returns `(b, kv_heads, groups, d)`.
pub(crate) fn decode_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (b, kvh, g, hd) = q.dims4()?;
    let len = k.dim(2)?;
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (qo, ko, vo) = (ql.start_offset(), kl.start_offset(), vl.start_offset());
    let (kst, vst) = (kl.stride(), vl.stride());
    let (qd, kd, vd) = (as_f32(&qs)?, as_f32(&ks)?, as_f32(&vs)?);
    let mut out = vec![0f32; b * kvh * g * hd];
    out.par_chunks_mut(g * hd).enumerate().for_each(|(bh, o)| {
        let (bi, hi) = (bh / kvh, bh % kvh);
        let kb = ko + bi * kst[0] + hi * kst[1];
        let vb = vo + bi * vst[0] + hi * vst[1];
        let mut scores = vec![0f32; len];
        for gi in 0..g {
            let qrow = &qd[qo + (bh * g + gi) * hd..][..hd];
            let mut max = f32::NEG_INFINITY;
            for (j, s) in scores.iter_mut().enumerate() {
                *s = dot(qrow, &kd[kb + j * kst[2]..][..hd]);
                max = max.max(*s);
            }
            let mut sum = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            let inv = 1.0 / sum;
            let orow = &mut o[gi * hd..(gi + 1) * hd];
            for (j, s) in scores.iter().enumerate() {
                let p = s * inv;
                let vrow = &vd[vb + j * vst[2]..][..hd];
                for (x, y) in orow.iter_mut().zip(vrow) {
                    *x += p * y;
                }
            }
        }
    });
    drop((qs, ks, vs));
    Ok(Tensor::from_vec(out, (b, kvh, g, hd), q.device())?)
}
