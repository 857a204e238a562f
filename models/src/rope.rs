//! Rotary position embedding tables, with Llama 3 and linear frequency scaling.

use std::f64::consts::PI;

use candle_core::{DType, Device, Tensor};

use crate::config::{DecoderConfig, RopeScaling};
use crate::error::Result;

/// Inverse frequencies of the rotary embedding, one per pair of head dimensions.
pub fn inverse_frequencies(cfg: &DecoderConfig) -> Vec<f64> {
    let d = cfg.head_dim as f64;
    let base: Vec<f64> = (0..cfg.head_dim / 2)
        .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / d))
        .collect();
    match &cfg.rope_scaling {
        None => base,
        Some(RopeScaling::Linear { factor }) => base.into_iter().map(|f| f / factor).collect(),
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => {
            let orig = *original_max_position_embeddings as f64;
            let low_wavelen = orig / low_freq_factor;
            let high_wavelen = orig / high_freq_factor;
            base.into_iter()
                .map(|freq| {
                    let wavelen = 2.0 * PI / freq;
                    if wavelen < high_wavelen {
                        freq
                    } else if wavelen > low_wavelen {
                        freq / factor
                    } else {
                        let smooth = (orig / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * freq / factor + smooth * freq
                    }
                })
                .collect()
        }
    }
}

/// `cos` and `sin` tables of shape `(max_positions, head_dim / 2)`.
pub fn tables(cfg: &DecoderConfig, dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
    let inv = inverse_frequencies(cfg);
    let half = inv.len();
    let n = cfg.max_position_embeddings;
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for p in 0..n {
        for f in &inv {
            // Angles in f32 as the reference implementations compute them.
            let angle = (p as f32) * (*f as f32);
            cos.push(angle.cos());
            sin.push(angle.sin());
        }
    }
    let cos = Tensor::from_vec(cos, (n, half), device)?.to_dtype(dtype)?;
    let sin = Tensor::from_vec(sin, (n, half), device)?.to_dtype(dtype)?;
    Ok((cos, sin))
}
