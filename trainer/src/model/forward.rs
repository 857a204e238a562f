//! The differentiable forward pass: hidden states, logits, response log-probabilities and
//! reward scores of a right-padded batch.

use candle_core::{D, DType, Tensor};
use thresh_models::config::Activation;

use super::batch::Batch;
use super::frozen::frozen_matmul;
use super::ops;
use super::{TrainModel, Tuning};
use crate::error::{Result, TrainError};

impl TrainModel {
    fn weight(&self, name: &str) -> Result<&Tensor> {
        self.weights
            .get(name)
            .ok_or_else(|| TrainError::Config(format!("missing weight {name}")))
    }

    /// RMSNorm weight as applied: Gemma's stored offsets become `1 + w`.
    fn norm(&self, x: &Tensor, name: &str) -> Result<Tensor> {
        let w = self.weight(name)?;
        if self.cfg.norm_weight_offset {
            ops::rms_norm(x, &(w + 1.0)?, self.cfg.rms_norm_eps)
        } else {
            ops::rms_norm(x, w, self.cfg.rms_norm_eps)
        }
    }

    /// `x W^T (+ b) (+ scale (x A^T) B^T)` for the projection `stem` (`...q_proj`), with `x`
    /// `(n, in)`.
    fn linear(&self, x: &Tensor, stem: &str) -> Result<Tensor> {
        let wname = format!("{stem}.weight");
        let w = self.weight(&wname)?;
        let mut y = if self.tuning == Tuning::Full {
            x.matmul(&w.t()?)?
        } else {
            frozen_matmul(x, w)?
        };
        if let Some(b) = self.weights.get(&format!("{stem}.bias")) {
            y = y.broadcast_add(b)?;
        }
        if let Some(ad) = self.lora.get(&wname) {
            let delta = x.matmul(&ad.a.t()?)?.matmul(&ad.b.t()?)?;
            y = (y + (delta * self.lora_scale)?)?;
        }
        Ok(y)
    }

    /// Final-normed hidden states `(B, T, hidden)` of a right-padded batch.
    pub fn hidden(&self, batch: &Batch) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (b, t) = batch.ids.dims2()?;
        if t > cfg.max_position_embeddings {
            return Err(TrainError::Config(format!(
                "sequence of {t} tokens exceeds the model's context of {}",
                cfg.max_position_embeddings
            )));
        }
        let (h, nh, kvh, hd) = (
            cfg.hidden_size,
            cfg.num_heads,
            cfg.num_kv_heads,
            cfg.head_dim,
        );
        let groups = cfg.gqa_groups();
        let n = b * t;
        let cos = self.cos.narrow(0, 0, t)?;
        let sin = self.sin.narrow(0, 0, t)?;
        let mask =
            ops::attention_mask(&batch.lengths, t, groups, cfg.sliding_window, &self.device)?;
        let embed = self.weight("model.embed_tokens.weight")?;
        // A frozen table needs no (vocab, hidden) gradient.
        let embed = if self.tuning == Tuning::Full {
            embed.clone()
        } else {
            embed.detach()
        };
        let mut x = embed.index_select(&batch.ids.flatten_all()?, 0)?; // (n, h)
        if cfg.scale_embeddings {
            x = (x * (h as f64).sqrt() as f32 as f64)?;
        }
        let scale = 1.0 / (hd as f64).sqrt();
        for l in 0..cfg.num_layers {
            let p = format!("model.layers.{l}.");
            let hn = self.norm(&x, &format!("{p}input_layernorm.weight"))?;
            let q = self.linear(&hn, &format!("{p}self_attn.q_proj"))?;
            let k = self.linear(&hn, &format!("{p}self_attn.k_proj"))?;
            let v = self.linear(&hn, &format!("{p}self_attn.v_proj"))?;
            let mut q = q.reshape((b, t, nh, hd))?;
            let mut k = k.reshape((b, t, kvh, hd))?;
            let v = v.reshape((b, t, kvh, hd))?.transpose(1, 2)?.contiguous()?;
            if cfg.qk_norm {
                q = ops::rms_norm(
                    &q,
                    self.weight(&format!("{p}self_attn.q_norm.weight"))?,
                    cfg.rms_norm_eps,
                )?;
                k = ops::rms_norm(
                    &k,
                    self.weight(&format!("{p}self_attn.k_norm.weight"))?,
                    cfg.rms_norm_eps,
                )?;
            }
            let q = ops::rope(&q.transpose(1, 2)?.contiguous()?, &cos, &sin)?; // (b, nh, t, hd)
            let k = ops::rope(&k.transpose(1, 2)?.contiguous()?, &cos, &sin)?; // (b, kvh, t, hd)
            // The `groups` query heads of each kv head as extra rows of one matmul.
            let q = q.reshape((b, kvh, groups * t, hd))?;
            let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&mask)?;
            let probs = ops::softmax(&scores)?;
            let out = probs
                .matmul(&v)? // (b, kvh, groups * t, hd)
                .reshape((b, nh, t, hd))?
                .transpose(1, 2)?
                .reshape((n, nh * hd))?;
            let attn = self.linear(&out, &format!("{p}self_attn.o_proj"))?;
            x = (x + attn)?;
            let hn = self.norm(&x, &format!("{p}post_attention_layernorm.weight"))?;
            let gate = self.linear(&hn, &format!("{p}mlp.gate_proj"))?;
            let up = self.linear(&hn, &format!("{p}mlp.up_proj"))?;
            let act = match cfg.activation {
                Activation::Silu => gate.silu()?,
                Activation::GeluTanh => gate.gelu()?,
            };
            x = (x + self.linear(&(act * up)?, &format!("{p}mlp.down_proj"))?)?;
        }
        let x = self.norm(&x, "model.norm.weight")?;
        Ok(x.reshape((b, t, h))?)
    }

    /// Projects hidden states `(B, T, hidden)` to logits `(B, T, vocab)`.
    pub fn project(&self, hidden: &Tensor) -> Result<Tensor> {
        let (b, t, h) = hidden.dims3()?;
        let head = if self.cfg.tie_word_embeddings {
            self.weight("model.embed_tokens.weight")?
        } else {
            self.weight("lm_head.weight")?
        };
        let hidden = hidden.reshape((b * t, h))?;
        let logits = if self.tuning == Tuning::Full {
            hidden.matmul(&head.t()?)?
        } else {
            frozen_matmul(&hidden, head)?
        };
        Ok(logits.reshape((b, t, self.cfg.vocab_size))?)
    }

    /// Logits `(B, T, vocab)` of every position.
    pub fn logits(&self, batch: &Batch) -> Result<Tensor> {
        self.project(&self.hidden(batch)?)
    }

    /// Per-row summed log-probabilities of the response tokens, `(B,)` f32 (prompt and
    /// padding masked).
    ///
    /// Only the response positions are projected to the vocabulary: prompts (often long chat
    /// templates) and padding cost no `(tokens, vocab)` logits.
    pub fn sequence_logps(&self, batch: &Batch) -> Result<Tensor> {
        let hidden = self.hidden(batch)?;
        let (b, t, h) = hidden.dims3()?;
        let (targets, mask) = batch.targets()?;
        let mask_host = mask.flatten_all()?.to_vec1::<f32>()?;
        let positions: Vec<u32> = (0..b * t)
            .filter(|&i| mask_host[i] > 0.0)
            .map(|i| i as u32)
            .collect();
        let n = positions.len();
        if n == 0 {
            return Ok(Tensor::zeros(b, DType::F32, &self.device)?);
        }
        // Row `r` of `owner` sums the positions that belong to sequence `r`.
        let mut owner = vec![0f32; b * n];
        for (j, &p) in positions.iter().enumerate() {
            owner[(p as usize / t) * n + j] = 1.0;
        }
        let positions = Tensor::from_vec(positions, n, &self.device)?;
        let picked = hidden.reshape((b * t, h))?.index_select(&positions, 0)?;
        let logits = self.project(&picked.unsqueeze(0)?)?.squeeze(0)?; // (n, vocab)
        let tgt = targets.flatten_all()?.index_select(&positions, 0)?;
        let logp = ops::log_softmax(&logits)?.gather(&tgt.unsqueeze(1)?, 1)?; // (n, 1)
        let owner = Tensor::from_vec(owner, (b, n), &self.device)?;
        Ok(owner.matmul(&logp)?.squeeze(1)?)
    }

    /// Hidden state of each row's last real token, `(B, hidden)`.
    pub fn last_hidden(&self, batch: &Batch) -> Result<Tensor> {
        let hidden = self.hidden(batch)?;
        let (b, t, h) = hidden.dims3()?;
        let idx: Vec<u32> = batch
            .lengths
            .iter()
            .enumerate()
            .map(|(r, &len)| (r * t + len - 1) as u32)
            .collect();
        let idx = Tensor::from_vec(idx, b, &self.device)?;
        Ok(hidden.reshape((b * t, h))?.index_select(&idx, 0)?)
    }

    /// Reward-model scores `(B,)`: `score.weight` applied to the last real token's state.
    pub fn rewards(&self, batch: &Batch) -> Result<Tensor> {
        let score = self
            .score
            .as_ref()
            .ok_or_else(|| TrainError::Config("the model has no score head".into()))?;
        let last = self.last_hidden(batch)?;
        Ok(last.broadcast_mul(score)?.sum(D::Minus1)?)
    }
}

/// Per-row sums of the log-probabilities of `targets` under `logits` where `mask` is 1:
/// `logits` `(B, T, V)`, `targets` `(B, T)` u32, `mask` `(B, T)` f32; returns `(B,)` f32.
pub fn response_logps(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let logp = ops::log_softmax(&logits.to_dtype(DType::F32)?)?;
    let picked = logp
        .gather(&targets.unsqueeze(D::Minus1)?, D::Minus1)?
        .squeeze(D::Minus1)?;
    Ok((picked * mask)?.sum(D::Minus1)?)
}
