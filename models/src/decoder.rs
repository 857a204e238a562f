//! The Llama-family decoder: Llama 2/3/3.x, SmolLM2, Mistral, Qwen2/2.5 and Qwen3 from one
//! implementation, switched by [`DecoderConfig`].
//!
//! Unlike candle-transformers' models, the KV cache belongs to the caller ([`KvCache`]) and
//! the forward pass can return final hidden states, all-position logits or last-position
//! logits.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{D, DType, Device, IndexOp, Tensor};

use crate::config::{Activation, DecoderConfig};
use crate::error::{ModelError, Result};
use crate::kv_cache::KvCache;
use crate::rope;
use crate::weights::WeightFile;

/// The weight of a linear layer.
#[derive(Debug, Clone)]
enum LinearWeight {
    /// `W^T`, `(in, out)`, contiguous.
    Dense(Tensor),
    /// GGML-quantised `W` (`(out, in_padded)`), multiplied with on-the-fly quantised
    /// activations. `in_padded` rounds `in` up to a multiple of 256 with zero columns: candle's
    /// AVX-512 VNNI kernels need whole 256-value superblocks and run several times faster than
    /// the generic dot products, which more than pays for the padding (576 -> 768 for SmolLM2).
    Quant(Arc<QTensor>, usize),
}

/// Superblock size of candle's repacked x86 quantised kernels.
const QUANT_K_ALIGN: usize = 256;

/// A linear layer `y = x W^T + b`.
///
/// Batch invariance: a row's output must not depend on how many rows share the batch, so that
/// pruning rows leaves the survivors' logits bit-identical. candle's CPU gemm is invariant in
/// the row count for a contiguous `(in, out)` right-hand side and two or more rows; one row
/// takes a different (gemv) path, so a single row is computed as two. Quantised matmuls
/// compute every output as its own dot product and are invariant as they are. On a GPU,
/// cuBLAS picks its kernel by shape, so rows agree only to rounding across batch sizes.
#[derive(Debug, Clone)]
struct Linear {
    w: LinearWeight,
    b: Option<Tensor>,
}

impl Linear {
    /// From a weight in PyTorch layout `(out, in)`, quantised when `quant` says so.
    fn new(w: Tensor, b: Option<Tensor>, quant: Option<GgmlDType>) -> Result<Self> {
        let w = match quant {
            Some(q) => {
                let (out_dim, in_dim) = w.dims2()?;
                let padded = in_dim.div_ceil(QUANT_K_ALIGN) * QUANT_K_ALIGN;
                let w = w.to_dtype(DType::F32)?;
                let w = if padded > in_dim {
                    let zeros = Tensor::zeros((out_dim, padded - in_dim), DType::F32, w.device())?;
                    Tensor::cat(&[&w, &zeros], 1)?
                } else {
                    w
                };
                LinearWeight::Quant(Arc::new(QTensor::quantize(&w, q)?), padded)
            }
            _ => LinearWeight::Dense(w.t()?.contiguous()?),
        };
        Ok(Self { w, b })
    }

    fn out_dim(&self) -> Result<usize> {
        Ok(match &self.w {
            LinearWeight::Dense(wt) => wt.dim(1)?,
            LinearWeight::Quant(q, _) => q.shape().dims()[0],
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // Flatten leading dimensions so that the projection is a single gemm.
        let dims = x.dims().to_vec();
        let (in_dim, lead) = match dims.split_last() {
            Some((last, lead)) => (*last, lead.to_vec()),
            None => return Err(ModelError::InvalidArgument("linear on a scalar".into())),
        };
        let rows: usize = lead.iter().product();
        let x2 = x.reshape((rows, in_dim))?;
        let y = match &self.w {
            LinearWeight::Dense(wt) if rows == 1 && x.device().is_cpu() => {
                Tensor::cat(&[&x2, &x2], 0)?.matmul(wt)?.narrow(0, 0, 1)?
            }
            LinearWeight::Dense(wt) => x2.matmul(wt)?,
            LinearWeight::Quant(q, padded) => {
                let x32 = x2.to_dtype(DType::F32)?;
                let x32 = if *padded > in_dim {
                    let zeros = Tensor::zeros((rows, padded - in_dim), DType::F32, x.device())?;
                    Tensor::cat(&[&x32, &zeros], 1)?
                } else {
                    x32.contiguous()?
                };
                x32.apply_op1_no_bwd(q.as_ref())?.to_dtype(x.dtype())?
            }
        };
        let y = match &self.b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        let mut out = lead;
        out.push(self.out_dim()?);
        Ok(y.reshape(out)?)
    }
}

#[derive(Debug, Clone)]
struct Layer {
    input_norm: Tensor,
    /// q, k and v projections fused into one `(q + 2 kv, hidden)` weight.
    qkv: Linear,
    o: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    post_norm: Tensor,
    /// gate and up projections fused into one `(2 intermediate, hidden)` weight.
    gate_up: Linear,
    down: Linear,
}

/// Which output head to load.
#[derive(Debug, Clone, Copy)]
enum Head {
    Lm,
    None,
}

/// Rows of one batch inside a decoder pass, and the cache they continue.
struct Part<'c> {
    rows: usize,
    cache: Option<&'c mut KvCache>,
}

/// Rotary tables and causal mask for one part's positions.
struct PartRope {
    cos: Tensor,
    sin: Tensor,
    mask: Option<Tensor>,
}

/// A Llama-family causal decoder with caller-owned KV cache.
#[derive(Debug, Clone)]
pub struct Decoder {
    cfg: DecoderConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    /// `None` for backbones loaded without an LM head (sequence classifiers).
    lm_head: Option<Linear>,
    cos: Tensor,
    sin: Tensor,
    dtype: DType,
    device: Device,
}

/// An RMSNorm weight as the fused kernel applies it: Gemma stores `w` and scales by `1 + w`.
fn norm_weight(cfg: &DecoderConfig, w: Tensor) -> Result<Tensor> {
    Ok(if cfg.norm_weight_offset {
        (w.to_dtype(DType::F32)? + 1.0)?.to_dtype(w.dtype())?
    } else {
        w
    })
}

fn cat_rows(parts: &[Tensor]) -> Result<Tensor> {
    Ok(Tensor::cat(parts, 0)?.contiguous()?)
}

impl Decoder {
    /// Loads the decoder's weights (Hugging Face names) from `weights`.
    ///
    /// With `quant`, the projection and LM-head weights are kept GGML-quantised in that
    /// format (CPU only); embeddings and norms stay dense.
    pub fn load(
        cfg: &DecoderConfig,
        weights: &mut WeightFile,
        dtype: DType,
        device: &Device,
        quant: Option<GgmlDType>,
    ) -> Result<Self> {
        Self::load_with_head(cfg, weights, dtype, device, quant, Head::Lm)
    }

    /// Loads the blocks and final norm only, for checkpoints without an LM head
    /// (`*ForSequenceClassification`): [`Decoder::forward_hidden`] works, logits do not.
    pub fn load_backbone(
        cfg: &DecoderConfig,
        weights: &mut WeightFile,
        dtype: DType,
        device: &Device,
        quant: Option<GgmlDType>,
    ) -> Result<Self> {
        Self::load_with_head(cfg, weights, dtype, device, quant, Head::None)
    }

    fn load_with_head(
        cfg: &DecoderConfig,
        weights: &mut WeightFile,
        dtype: DType,
        device: &Device,
        quant: Option<GgmlDType>,
        head: Head,
    ) -> Result<Self> {
        if quant.is_some() && !device.is_cpu() {
            return Err(ModelError::InvalidArgument(
                "quantised weights are supported on the CPU only".into(),
            ));
        }
        let h = cfg.hidden_size;
        let hd = cfg.head_dim;
        let qd = cfg.num_heads * hd;
        let kvd = cfg.num_kv_heads * hd;
        let i = cfg.intermediate_size;
        let prefix = if weights.contains("model.embed_tokens.weight")
            || !weights.contains("embed_tokens.weight")
        {
            "model."
        } else {
            ""
        };
        let embed = weights.get(
            &format!("{prefix}embed_tokens.weight"),
            &[cfg.vocab_size, h],
        )?;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for l in 0..cfg.num_layers {
            let p = format!("{prefix}layers.{l}.");
            let mut w = |name: &str, shape: &[usize]| weights.get(&format!("{p}{name}"), shape);
            let q = w("self_attn.q_proj.weight", &[qd, h])?;
            let k = w("self_attn.k_proj.weight", &[kvd, h])?;
            let v = w("self_attn.v_proj.weight", &[kvd, h])?;
            let o = w("self_attn.o_proj.weight", &[h, qd])?;
            let qkv_b = if cfg.qkv_bias {
                Some(cat_rows(&[
                    w("self_attn.q_proj.bias", &[qd])?,
                    w("self_attn.k_proj.bias", &[kvd])?,
                    w("self_attn.v_proj.bias", &[kvd])?,
                ])?)
            } else {
                None
            };
            let o_b = if cfg.o_bias {
                Some(w("self_attn.o_proj.bias", &[h])?)
            } else {
                None
            };
            let (q_norm, k_norm) = if cfg.qk_norm {
                (
                    Some(w("self_attn.q_norm.weight", &[hd])?),
                    Some(w("self_attn.k_norm.weight", &[hd])?),
                )
            } else {
                (None, None)
            };
            let gate = w("mlp.gate_proj.weight", &[i, h])?;
            let up = w("mlp.up_proj.weight", &[i, h])?;
            let down = w("mlp.down_proj.weight", &[h, i])?;
            let input_norm = norm_weight(cfg, w("input_layernorm.weight", &[h])?)?;
            let post_norm = norm_weight(cfg, w("post_attention_layernorm.weight", &[h])?)?;
            layers.push(Layer {
                input_norm,
                qkv: Linear::new(cat_rows(&[q, k, v])?, qkv_b, quant)?,
                o: Linear::new(o, o_b, quant)?,
                q_norm,
                k_norm,
                post_norm,
                gate_up: Linear::new(cat_rows(&[gate, up])?, None, quant)?,
                down: Linear::new(down, None, quant)?,
            });
        }
        let norm = norm_weight(cfg, weights.get(&format!("{prefix}norm.weight"), &[h])?)?;
        let lm_head = match head {
            Head::Lm if cfg.tie_word_embeddings => Some(Linear::new(embed.clone(), None, quant)?),
            Head::Lm => Some(Linear::new(
                weights.get("lm_head.weight", &[cfg.vocab_size, h])?,
                None,
                quant,
            )?),
            Head::None => None,
        };
        let (cos, sin) = rope::tables(cfg, dtype, device)?;
        Ok(Self {
            cfg: cfg.clone(),
            embed,
            layers,
            norm,
            lm_head,
            cos,
            sin,
            dtype,
            device: device.clone(),
        })
    }

    /// The configuration the decoder was built from.
    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    /// Dtype of weights and activations.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A new, empty cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(&self.cfg, self.dtype, &self.device)
    }

    /// Runs the blocks on `ids` (`(batch, seq)`, u32) and returns the final-normed hidden
    /// states `(batch, seq, hidden)`. With a cache, the tokens continue its sequences (the
    /// cache's batch must match) and are appended to it; without one they start at position 0.
    pub fn forward_hidden(&self, ids: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let rows = ids.dims2()?.0;
        self.blocks(ids, &mut [Part { rows, cache }])
    }

    /// One decoder pass over the rows of several independent batches, each continuing its
    /// own cache: `ids[i]` is `(rows_i, seq)` (the same `seq` for all) and continues
    /// `caches[i]`. The projections and the MLP run once on all rows together, so their
    /// weights are read once per step whatever the number of batches; rotary positions,
    /// masks and attention stay per batch. Returns each batch's last-position logits
    /// `(rows_i, vocab)`, equal to what [`Decoder::forward_last`] gives for it alone.
    pub fn forward_last_many(
        &self,
        ids: &[Tensor],
        caches: &mut [&mut KvCache],
    ) -> Result<Vec<Tensor>> {
        if ids.len() != caches.len() || ids.is_empty() {
            return Err(ModelError::InvalidArgument(format!(
                "{} inputs for {} caches",
                ids.len(),
                caches.len()
            )));
        }
        let mut parts = Vec::with_capacity(ids.len());
        for (t, c) in ids.iter().zip(caches.iter_mut()) {
            parts.push(Part {
                rows: t.dims2()?.0,
                cache: Some(&mut **c),
            });
        }
        let hidden = self.blocks(&Tensor::cat(ids, 0)?, &mut parts)?;
        let s = hidden.dim(1)?;
        let logits = self.logits(&hidden.i((.., s - 1, ..))?.contiguous()?)?;
        let mut out = Vec::with_capacity(parts.len());
        let mut start = 0;
        for p in &parts {
            out.push(logits.narrow(0, start, p.rows)?);
            start += p.rows;
        }
        Ok(out)
    }

    /// The blocks over `ids`, whose rows are split into `parts` that each continue their own
    /// cache (or start at position 0 without one).
    fn blocks(&self, ids: &Tensor, parts: &mut [Part<'_>]) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        if s == 0 || b == 0 {
            return Err(ModelError::InvalidArgument("empty input".into()));
        }
        if parts.iter().map(|p| p.rows).sum::<usize>() != b {
            return Err(ModelError::InvalidArgument(
                "the parts do not cover the input rows".into(),
            ));
        }
        let mut ropes = Vec::with_capacity(parts.len());
        for p in parts.iter() {
            let offset = p.cache.as_ref().map(|c| c.len()).unwrap_or(0);
            if let Some(c) = p.cache.as_ref()
                && c.batch_size() != 0
                && c.batch_size() != p.rows
            {
                return Err(ModelError::InvalidArgument(format!(
                    "input has {} rows, the cache {}",
                    p.rows,
                    c.batch_size()
                )));
            }
            if offset + s > self.cfg.max_position_embeddings {
                return Err(ModelError::InvalidArgument(format!(
                    "sequence of {} tokens exceeds the model's context of {}",
                    offset + s,
                    self.cfg.max_position_embeddings
                )));
            }
            ropes.push(PartRope {
                cos: self.cos.narrow(0, offset, s)?,
                sin: self.sin.narrow(0, offset, s)?,
                mask: self.mask(s, offset)?,
            });
        }
        let mut x = self.embed.index_select(&ids.flatten_all()?, 0)?.reshape((
            b,
            s,
            self.cfg.hidden_size,
        ))?;
        if self.cfg.scale_embeddings {
            // Gemma: the normaliser is rounded to the activation dtype, as transformers does.
            let scale = Tensor::new((self.cfg.hidden_size as f32).sqrt(), &self.device)?
                .to_dtype(self.dtype)?;
            x = x.broadcast_mul(&scale)?;
        }
        for (l, layer) in self.layers.iter().enumerate() {
            let residual = &x;
            let hn = candle_nn::ops::rms_norm(&x, &layer.input_norm, self.cfg.rms_norm_eps as f32)?;
            let qkv = layer.qkv.forward(&hn)?;
            let attn = if parts.len() == 1 {
                let p = &mut parts[0];
                self.attention(l, layer, &qkv, &ropes[0], p.cache.as_deref_mut())?
            } else {
                let mut outs = Vec::with_capacity(parts.len());
                let mut start = 0;
                for (p, r) in parts.iter_mut().zip(&ropes) {
                    let q = qkv.narrow(0, start, p.rows)?;
                    outs.push(self.attention(l, layer, &q, r, p.cache.as_deref_mut())?);
                    start += p.rows;
                }
                Tensor::cat(&outs, 0)?
            };
            x = (layer.o.forward(&attn)? + residual)?;
            let hn = candle_nn::ops::rms_norm(&x, &layer.post_norm, self.cfg.rms_norm_eps as f32)?;
            let gu = layer.gate_up.forward(&hn)?;
            let i = self.cfg.intermediate_size;
            let act = match self.cfg.activation {
                Activation::Silu => match crate::attention::silu_mul(&gu, i)? {
                    Some(a) => a,
                    None => {
                        (candle_nn::ops::silu(&gu.narrow(D::Minus1, 0, i)?)?
                            * gu.narrow(D::Minus1, i, i)?)?
                    }
                },
                Activation::GeluTanh => {
                    (gu.narrow(D::Minus1, 0, i)?.gelu()? * gu.narrow(D::Minus1, i, i)?)?
                }
            };
            x = (layer.down.forward(&act)? + &x)?;
        }
        for p in parts.iter_mut() {
            if let Some(c) = p.cache.as_deref_mut() {
                c.advance(s);
            }
        }
        Ok(candle_nn::ops::rms_norm(
            &x,
            &self.norm,
            self.cfg.rms_norm_eps as f32,
        )?)
    }

    /// Additive causal (and sliding-window) mask `(groups * s, offset + s)`, or `None` when
    /// every key is visible (one new token within the window).
    fn mask(&self, s: usize, offset: usize) -> Result<Option<Tensor>> {
        let total = offset + s;
        let window = self.cfg.sliding_window.unwrap_or(usize::MAX);
        if s == 1 && total <= window {
            return Ok(None);
        }
        let groups = self.cfg.gqa_groups();
        let mut m = vec![0f32; groups * s * total];
        for g in 0..groups {
            for i in 0..s {
                let q_pos = offset + i;
                let row = &mut m[(g * s + i) * total..(g * s + i + 1) * total];
                for (j, v) in row.iter_mut().enumerate() {
                    if j > q_pos || q_pos - j >= window {
                        *v = f32::NEG_INFINITY;
                    }
                }
            }
        }
        Ok(Some(
            Tensor::from_vec(m, (groups * s, total), &self.device)?.to_dtype(DType::F32)?,
        ))
    }

    /// Attention of one part's rows from their fused q/k/v projection `(b, s, (h + 2 kvh) d)`,
    /// before the output projection: returns `(b, s, h d)`.
    fn attention(
        &self,
        l: usize,
        layer: &Layer,
        qkv: &Tensor,
        rope: &PartRope,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (cos, sin, mask) = (&rope.cos, &rope.sin, rope.mask.as_ref());
        let (b, s, _) = qkv.dims3()?;
        let cfg = &self.cfg;
        let (h, kvh, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let groups = cfg.gqa_groups();
        let q = qkv.narrow(D::Minus1, 0, h * hd)?.reshape((b, s, h, hd))?;
        let k = qkv
            .narrow(D::Minus1, h * hd, kvh * hd)?
            .reshape((b, s, kvh, hd))?;
        let v = qkv
            .narrow(D::Minus1, (h + kvh) * hd, kvh * hd)?
            .reshape((b, s, kvh, hd))?;
        let eps = cfg.rms_norm_eps as f32;
        let q = match &layer.q_norm {
            Some(w) => candle_nn::ops::rms_norm(&q.contiguous()?, w, eps)?,
            None => q,
        };
        let k = match &layer.k_norm {
            Some(w) => candle_nn::ops::rms_norm(&k.contiguous()?, w, eps)?,
            None => k,
        };
        // Rotary embeddings on (b, s, heads, d), then heads-major layout.
        let q = candle_nn::rotary_emb::rope_thd(&q.contiguous()?, cos, sin)?;
        let k = candle_nn::rotary_emb::rope_thd(&k.contiguous()?, cos, sin)?;
        let scale = 1.0 / (hd as f64).sqrt();
        // Grouped-query attention without repeating keys: the `groups` query heads of each
        // kv head become extra rows of one matmul against that head's keys.
        let q = q
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, kvh, groups * s, hd))?;
        let k = k.transpose(1, 2)?.contiguous()?;
        let v = v.transpose(1, 2)?.contiguous()?;
        let (k, v) = match cache {
            Some(c) => c.append(l, &k, &v)?,
            None => (k, v),
        };
        let total = k.dim(2)?;
        let (k, v) = match cfg.sliding_window {
            Some(w) if s == 1 && total > w => {
                (k.narrow(2, total - w, w)?, v.narrow(2, total - w, w)?)
            }
            _ => (k, v),
        };
        if crate::attention::applies(&q, &k, &v) {
            let out = if s == 1 {
                crate::attention::decode_attention(&q, &k, &v, scale as f32)? // (b, kvh, groups, hd)
            } else {
                let offset = total - s;
                crate::attention::causal_attention(
                    &q,
                    &k,
                    &v,
                    s,
                    offset,
                    cfg.sliding_window,
                    scale as f32,
                )?
            };
            return Ok(out
                .reshape((b, h, s, hd))?
                .transpose(1, 2)?
                .reshape((b, s, h * hd))?);
        }
        let scores = (q.matmul(&k.t()?)?.to_dtype(DType::F32)? * scale)?;
        let scores = match mask {
            Some(m) => scores.broadcast_add(m)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(self.dtype)?;
        let out = probs.matmul(&v)?; // (b, kvh, groups * s, hd)
        Ok(out
            .reshape((b, h, s, hd))?
            .transpose(1, 2)?
            .reshape((b, s, h * hd))?)
    }

    /// Projects hidden states (`(..., hidden)`) to f32 logits (`(..., vocab)`).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let head = self.lm_head.as_ref().ok_or_else(|| {
            ModelError::InvalidArgument("this decoder was loaded without an LM head".into())
        })?;
        Ok(head.forward(hidden)?.to_dtype(DType::F32)?)
    }

    /// Decoding step: appends `ids` to the cache and returns the logits of each row's last
    /// position, `(batch, vocab)`.
    pub fn forward_last(&self, ids: &Tensor, cache: &mut KvCache) -> Result<Tensor> {
        let hidden = self.forward_hidden(ids, Some(cache))?;
        let s = hidden.dim(1)?;
        self.logits(&hidden.i((.., s - 1, ..))?.contiguous()?)
    }

    /// Logits of every position, `(batch, seq, vocab)`, for scoring and training.
    pub fn forward_all(&self, ids: &Tensor, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let hidden = self.forward_hidden(ids, cache)?;
        self.logits(&hidden)
    }
}
