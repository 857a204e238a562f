//! A CPU kernel for decode-step attention: one new query per row against the cached keys.
//!
//! The general path runs two batched matmuls, which on the CPU become one small gemm call per
//! (row, kv head) pair: thousands of calls per step at large batch. This kernel walks the
//! cache in place instead, one task per (row, kv head), computing the scores, the softmax and
//! the weighted sum of values for that head's query group. Each row's result depends on that
//! row alone, so it keeps the decoder batch-invariant.

use candle_core::{DType, Device, Storage, Tensor};

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

/// Softmax of one row of scores, in place.
fn softmax_in_place(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for s in row.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|s| *s *= inv);
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

/// `softmax(scale q k^T) v` for `q` `(b, kv_heads, groups, d)` against `k`, `v`
/// `(b, kv_heads, len, d)` views of the cache. Returns `(b, kv_heads, groups, d)`.
pub(crate) fn decode_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> Result<Tensor> {
    let (b, kvh, g, hd) = q.dims4()?;
    let len = k.dim(2)?;
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (qo, ko, vo) = (ql.start_offset(), kl.start_offset(), vl.start_offset());
    let (kst, vst) = (kl.stride(), vl.stride());
    let (qd, kd, vd) = (as_f32(&qs)?, as_f32(&ks)?, as_f32(&vs)?);
    let mut out = vec![0f32; b * kvh * g * hd];
    let mut heads: Vec<&mut [f32]> = out.chunks_mut(g * hd).collect();
    crate::parallel::parallel_for_each_mut(&mut heads, |bh, o| {
        let (bi, hi) = (bh / kvh, bh % kvh);
        let kb = ko + bi * kst[0] + hi * kst[1];
        let vb = vo + bi * vst[0] + hi * vst[1];
        let qrows: Vec<&[f32]> = (0..g)
            .map(|gi| &qd[qo + (bh * g + gi) * hd..][..hd])
            .collect();
        // scores[gi * len + j]: every key row is loaded once for the whole query group.
        let mut scores = vec![0f32; g * len];
        for j in 0..len {
            let krow = &kd[kb + j * kst[2]..][..hd];
            for (gi, q) in qrows.iter().enumerate() {
                scores[gi * len + j] = scale * dot(q, krow);
            }
        }
        for row in scores.chunks_mut(len) {
            softmax_in_place(row);
        }
        for j in 0..len {
            let vrow = &vd[vb + j * vst[2]..][..hd];
            for gi in 0..g {
                let p = scores[gi * len + j];
                let orow = &mut o[gi * hd..(gi + 1) * hd];
                for (x, y) in orow.iter_mut().zip(vrow) {
                    *x += p * y;
                }
            }
        }
    });
    drop(heads);
    drop((qs, ks, vs));
    Ok(Tensor::from_vec(out, (b, kvh, g, hd), q.device())?)
}

/// `silu(x[.., :n]) * x[.., n:]` for the fused gate/up projection output `(rows, 2n)`, in one
/// pass over contiguous f32 CPU memory; `None` where it does not apply.
pub(crate) fn silu_mul(gate_up: &Tensor, n: usize) -> Result<Option<Tensor>> {
    if !matches!(gate_up.device(), Device::Cpu)
        || gate_up.dtype() != DType::F32
        || !gate_up.is_contiguous()
    {
        return Ok(None);
    }
    let dims = gate_up.dims().to_vec();
    let rows = gate_up.elem_count() / (2 * n);
    let (st, layout) = gate_up.storage_and_layout();
    let data = &as_f32(&st)?[layout.start_offset()..];
    let mut out = vec![0f32; rows * n];
    let mut chunks: Vec<&mut [f32]> = out.chunks_mut(n).collect();
    crate::parallel::parallel_for_each_mut(&mut chunks, |r, o| {
        let (gate, up) = data[r * 2 * n..(r + 1) * 2 * n].split_at(n);
        for ((o, g), u) in o.iter_mut().zip(gate).zip(up) {
            *o = g / (1.0 + (-g).exp()) * u;
        }
    });
    drop(chunks);
    drop(st);
    let mut shape = dims;
    if let Some(last) = shape.last_mut() {
        *last = n;
    }
    Ok(Some(Tensor::from_vec(out, shape, gate_up.device())?))
}

/// Causal attention for `s` new queries per row at positions `offset..offset + s`:
/// `q` `(b, kv_heads, groups * s, d)` (row `g * s + i` is query `i` of group `g`) against
/// `k`, `v` `(b, kv_heads, len, d)`. Query `i` sees keys `0..=offset + i` (and, with a
/// sliding window `w`, only the last `w` of them). Keys a query cannot see are never read,
/// so right padding after a row's real tokens, or the length the batch is padded to, cannot
/// change its result: prefill is batch-invariant, as decoding is.
pub(crate) fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    s: usize,
    offset: usize,
    window: Option<usize>,
    scale: f32,
) -> Result<Tensor> {
    let (b, kvh, gs, hd) = q.dims4()?;
    let len = k.dim(2)?;
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (qo, ko, vo) = (ql.start_offset(), kl.start_offset(), vl.start_offset());
    let (kst, vst) = (kl.stride(), vl.stride());
    let (qd, kd, vd) = (as_f32(&qs)?, as_f32(&ks)?, as_f32(&vs)?);
    let mut out = vec![0f32; b * kvh * gs * hd];
    // One task per (row, kv head, query): enough parallelism for short prompts.
    let mut rows: Vec<&mut [f32]> = out.chunks_mut(hd).collect();
    crate::parallel::parallel_for_each_mut(&mut rows, |idx, o| {
        let bh = idx / gs;
        let r = idx % gs;
        let i = r % s;
        let (bi, hi) = (bh / kvh, bh % kvh);
        let kb = ko + bi * kst[0] + hi * kst[1];
        let vb = vo + bi * vst[0] + hi * vst[1];
        let pos = offset + i;
        let hi_key = (pos + 1).min(len);
        let lo_key = window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let qrow = &qd[qo + (bh * gs + r) * hd..][..hd];
        let mut scores: Vec<f32> = (lo_key..hi_key)
            .map(|j| scale * dot(qrow, &kd[kb + j * kst[2]..][..hd]))
            .collect();
        softmax_in_place(&mut scores);
        for (j, &p) in (lo_key..hi_key).zip(&scores) {
            let vrow = &vd[vb + j * vst[2]..][..hd];
            for (x, y) in o.iter_mut().zip(vrow) {
                *x += p * y;
            }
        }
    });
    drop(rows);
    drop((qs, ks, vs));
    Ok(Tensor::from_vec(out, (b, kvh, gs, hd), q.device())?)
}
