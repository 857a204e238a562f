//! Sentence-embedding rewards on a BERT encoder such as all-MiniLM-L6-v2: mean pooling over
//! real tokens, L2 normalised, with two heads. `relevance` scores the cosine of the prompt's
//! and the response's embeddings (the demo's default reward, no training needed); `linear`
//! scores `w . e(response) + b`, or `w . [e(prompt); e(response)] + b`, from a safetensors
//! file (`weight`, optional `bias`) that the trainer produces.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::BertModel;
use thresh_models::ModelError;
use thresh_models::config::read_json_value;

use crate::RewardModel;
use crate::batching::{plan, truncate_front};
use crate::bert_files::{BertFiles, load_bert, tok_err};
use crate::error::Result;
use crate::input::{RewardInput, Scored, validate};

/// A BERT sentence encoder with mean pooling.
pub struct SentenceEmbedder {
    bert: BertModel,
    tokenizer: tokenizers::Tokenizer,
    max_len: usize,
    budget: usize,
    device: Device,
}

impl SentenceEmbedder {
    /// Loads a sentence-transformers directory (`config.json`, `model.safetensors`,
    /// `tokenizer.json`, optional `sentence_bert_config.json` for the sequence length).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let BertFiles {
            bert,
            config,
            tokenizer,
            ..
        } = load_bert(dir, device)?;
        let st = dir.join("sentence_bert_config.json");
        let max_len = if st.exists() {
            read_json_value(&st)?
                .get("max_seq_length")
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
        } else {
            None
        }
        .unwrap_or(config.max_position_embeddings)
        .max(3);
        Ok(Self {
            bert,
            tokenizer,
            max_len,
            budget: 16384,
            device: device.clone(),
        })
    }

    /// Token ids of `text` with `[CLS]`/`[SEP]`, cut to the sequence length by dropping
    /// content from the front (the end is kept), and whether that happened.
    fn encode(&self, text: &str) -> Result<(Vec<u32>, bool)> {
        let enc = self.tokenizer.encode(text, true).map_err(tok_err)?;
        let ids = enc.get_ids();
        if ids.len() <= self.max_len || ids.len() < 2 {
            return Ok((ids.to_vec(), false));
        }
        let (first, last) = (ids[0], ids[ids.len() - 1]);
        let mut body = ids[1..ids.len() - 1].to_vec();
        truncate_front(&mut body, self.max_len - 2);
        let mut out = Vec::with_capacity(self.max_len);
        out.push(first);
        out.extend(body);
        out.push(last);
        Ok((out, true))
    }

    /// L2-normalised mean-pooled embeddings of `texts`, with token counts and truncation flags.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<(Vec<f32>, usize, bool)>> {
        let encoded: Vec<(Vec<u32>, bool)> = texts
            .iter()
            .map(|t| self.encode(t))
            .collect::<Result<_>>()?;
        let lengths: Vec<usize> = encoded.iter().map(|e| e.0.len()).collect();
        let mut out = vec![(Vec::new(), 0, false); texts.len()];
        for batch in plan(&lengths, self.budget) {
            let longest = batch.iter().map(|&i| lengths[i]).max().unwrap_or(0);
            let mut ids = Vec::with_capacity(batch.len() * longest);
            let mut mask = Vec::with_capacity(batch.len() * longest);
            for &i in &batch {
                let e = &encoded[i].0;
                ids.extend_from_slice(e);
                ids.extend(std::iter::repeat_n(0u32, longest - e.len()));
                mask.extend(std::iter::repeat_n(1f32, e.len()));
                mask.extend(std::iter::repeat_n(0f32, longest - e.len()));
            }
            let shape = (batch.len(), longest);
            let ids = Tensor::from_vec(ids, shape, &self.device)?;
            let mask = Tensor::from_vec(mask, shape, &self.device)?;
            let types = ids.zeros_like()?;
            let hidden = self.bert.forward(&ids, &types, Some(&mask))?; // (b, L, d)
            let m = mask.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&m)?.sum(1)?;
            let counts = m.sum(1)?;
            let mean = summed.broadcast_div(&counts)?;
            let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            let unit = mean.broadcast_div(&norm)?.to_vec2::<f32>()?;
            for (r, &i) in batch.iter().enumerate() {
                out[i] = (unit[r].clone(), lengths[i], encoded[i].1);
            }
        }
        Ok(out)
    }

    /// Embedding width.
    pub fn dim(&self) -> Result<usize> {
        Ok(self.embed(&["x"])?[0].0.len())
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Cosine similarity of prompt and response embeddings.
pub struct RelevanceReward {
    embedder: SentenceEmbedder,
    name: String,
}

impl RelevanceReward {
    /// Loads the encoder from a sentence-transformers directory.
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        Ok(Self {
            embedder: SentenceEmbedder::load(dir, device)?,
            name: format!("relevance:{}", dir.display()),
        })
    }

    /// The encoder.
    pub fn embedder(&self) -> &SentenceEmbedder {
        &self.embedder
    }
}

impl RewardModel for RelevanceReward {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, inputs: &[RewardInput]) -> Result<Vec<Scored>> {
        validate(inputs)?;
        let prompts: Vec<String> = inputs.iter().map(|i| i.prompt.text()).collect();
        let mut texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
        texts.extend(inputs.iter().map(|i| i.response.as_str()));
        let e = self.embedder.embed(&texts)?;
        let n = inputs.len();
        Ok((0..n)
            .map(|i| Scored {
                score: dot(&e[i].0, &e[n + i].0),
                tokens: e[i].1 + e[n + i].1,
                truncated: e[i].2 || e[n + i].2,
            })
            .collect())
    }
}

/// A linear head over sentence embeddings.
pub struct LinearReward {
    embedder: SentenceEmbedder,
    weight: Vec<f32>,
    bias: f32,
    pair: bool,
    name: String,
}

impl LinearReward {
    /// Loads the encoder and a head file with `weight` (`dim` for the response alone, or
    /// `2 dim` for `[prompt; response]`) and optional scalar `bias`.
    pub fn load(dir: &Path, head: &Path, device: &Device) -> Result<Self> {
        let embedder = SentenceEmbedder::load(dir, device)?;
        let dim = embedder.dim()?;
        if !head.exists() {
            return Err(ModelError::MissingFile {
                path: head.to_path_buf(),
                what: "the linear reward head".into(),
            }
            .into());
        }
        let tensors = candle_core::safetensors::load(head, &Device::Cpu)
            .map_err(|e| ModelError::bad_file(head, e))?;
        let weight = tensors
            .get("weight")
            .ok_or_else(|| ModelError::MissingTensor {
                tensor: "weight".into(),
                path: head.to_path_buf(),
            })?
            .flatten_all()?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        let pair = match weight.len() {
            n if n == dim => false,
            n if n == 2 * dim => true,
            n => {
                return Err(ModelError::ShapeMismatch {
                    tensor: "weight".into(),
                    path: head.to_path_buf(),
                    expected: vec![dim],
                    actual: vec![n],
                }
                .into());
            }
        };
        let bias = match tensors.get("bias") {
            Some(b) => b
                .flatten_all()?
                .to_dtype(DType::F32)?
                .to_vec1::<f32>()?
                .first()
                .copied()
                .unwrap_or(0.0),
            None => 0.0,
        };
        Ok(Self {
            embedder,
            weight,
            bias,
            pair,
            name: format!("linear:{}", head.display()),
        })
    }
}

impl RewardModel for LinearReward {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, inputs: &[RewardInput]) -> Result<Vec<Scored>> {
        validate(inputs)?;
        let n = inputs.len();
        let prompts: Vec<String> = inputs.iter().map(|i| i.prompt.text()).collect();
        let mut texts: Vec<&str> = inputs.iter().map(|i| i.response.as_str()).collect();
        if self.pair {
            texts.extend(prompts.iter().map(String::as_str));
        }
        let e = self.embedder.embed(&texts)?;
        let dim = e[0].0.len();
        Ok((0..n)
            .map(|i| {
                let (resp, rt, rtr) = &e[i];
                if self.pair {
                    let (prompt, pt, ptr) = &e[n + i];
                    Scored {
                        score: dot(&self.weight[..dim], prompt)
                            + dot(&self.weight[dim..], resp)
                            + self.bias,
                        tokens: rt + pt,
                        truncated: *rtr || *ptr,
                    }
                } else {
                    Scored {
                        score: dot(&self.weight, resp) + self.bias,
                        tokens: *rt,
                        truncated: *rtr,
                    }
                }
            })
            .collect())
    }
}
