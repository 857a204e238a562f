//! A batched key/value cache owned by the caller, with row forking and pruning.
//!
//! Every row of the batch holds the same number of tokens: the strategies decode all rows in
//! lock-step and drop finished or rejected rows with [`KvCache::retain_rows`], so one length
//! serves the whole batch. Per layer the cache holds one key and one value tensor of shape
//! `(batch, kv_heads, capacity, head_dim)`; the first `len` positions along the sequence axis
//! are live. Appends write in place, so decoding costs no copy of the past.

use candle_core::{DType, Device, Tensor};

use crate::config::DecoderConfig;
use crate::error::{ModelError, Result};

/// Growth granularity of the sequence axis, in tokens.
const CAPACITY_STEP: usize = 64;

#[derive(Debug, Clone)]
struct LayerKv {
    k: Tensor,
    v: Tensor,
}

/// Key/value cache for a batch of sequences of equal length.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<LayerKv>>,
    batch: usize,
    len: usize,
    capacity: usize,
    num_kv_heads: usize,
    head_dim: usize,
    dtype: DType,
    device: Device,
}

impl KvCache {
    /// An empty cache for a model with this configuration.
    pub fn new(cfg: &DecoderConfig, dtype: DType, device: &Device) -> Self {
        Self {
            layers: vec![None; cfg.num_layers],
            batch: 0,
            len: 0,
            capacity: 0,
            num_kv_heads: cfg.num_kv_heads,
            head_dim: cfg.head_dim,
            dtype,
            device: device.clone(),
        }
    }

    /// Tokens held per row.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rows in the batch (0 before the first forward pass).
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Tokens per row that fit before the next reallocation.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes one token of one row occupies across all layers (keys and values).
    pub fn bytes_per_token(&self) -> usize {
        2 * self.layers.len() * self.num_kv_heads * self.head_dim * self.dtype.size_in_bytes()
    }

    /// Bytes of live keys and values: rows x tokens x bytes per token.
    pub fn bytes_in_use(&self) -> usize {
        self.batch * self.len * self.bytes_per_token()
    }

    /// Bytes allocated, including reserved but unused capacity.
    pub fn bytes_allocated(&self) -> usize {
        self.batch * self.capacity * self.bytes_per_token()
    }

    /// Drops every token and row.
    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
        self.batch = 0;
        self.len = 0;
        self.capacity = 0;
    }

    fn alloc(&self, batch: usize, capacity: usize) -> Result<Tensor> {
        Ok(Tensor::zeros(
            (batch, self.num_kv_heads, capacity, self.head_dim),
            self.dtype,
            &self.device,
        )?)
    }

    /// Makes room for `extra` more tokens per row without reallocating during decoding.
    pub fn reserve(&mut self, extra: usize) -> Result<()> {
        let needed = self.len + extra;
        if needed <= self.capacity || self.batch == 0 {
            return Ok(());
        }
        let new_cap = needed.div_ceil(CAPACITY_STEP) * CAPACITY_STEP;
        for layer in self.layers.iter_mut().flatten() {
            let k = Tensor::zeros(
                (self.batch, self.num_kv_heads, new_cap, self.head_dim),
                self.dtype,
                &self.device,
            )?;
            let v = k.zeros_like()?;
            if self.len > 0 {
                k.slice_set(&layer.k.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                v.slice_set(&layer.v.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
            }
            *layer = LayerKv { k, v };
        }
        self.capacity = new_cap;
        Ok(())
    }

    /// Writes `k` and `v` (`(batch, kv_heads, s, head_dim)`) for `layer` at the current end
    /// and returns the live keys and values including them. The length advances once every
    /// layer has been written, through [`KvCache::advance`].
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (b, _, s, _) = k.dims4()?;
        if self.batch == 0 {
            self.batch = b;
        } else if b != self.batch {
            return Err(ModelError::InvalidArgument(format!(
                "batch of {b} rows does not match the cache's {} rows",
                self.batch
            )));
        }
        if self.len + s > self.capacity {
            let missing_layers = self.layers.iter().all(|l| l.is_none());
            if missing_layers {
                self.capacity = (self.len + s).div_ceil(CAPACITY_STEP) * CAPACITY_STEP;
            } else {
                // Double so that a long generation reallocates O(log n) times.
                let extra = (self.len + s).max(2 * self.capacity) - self.len;
                self.reserve(extra)?;
            }
        }
        if self.layers[layer].is_none() {
            let k0 = self.alloc(self.batch, self.capacity)?;
            let v0 = k0.zeros_like()?;
            self.layers[layer] = Some(LayerKv { k: k0, v: v0 });
        }
        let slot = self.layers[layer].as_ref().ok_or_else(|| {
            ModelError::InvalidArgument(format!("layer {layer} missing from the cache"))
        })?;
        slot.k.slice_set(&k.contiguous()?, 2, self.len)?;
        slot.v.slice_set(&v.contiguous()?, 2, self.len)?;
        let live = self.len + s;
        Ok((slot.k.narrow(2, 0, live)?, slot.v.narrow(2, 0, live)?))
    }

    /// Marks `s` more tokens as written in every layer.
    pub(crate) fn advance(&mut self, s: usize) {
        self.len += s;
    }

    /// A new cache holding a copy of the first `len` tokens of every row, with room for
    /// `extra` more per row. It shares no memory with `self`, so both can be appended to
    /// independently (a cached prompt prefix handed to several requests).
    pub fn prefix_copy(&self, len: usize, extra: usize) -> Result<KvCache> {
        if len > self.len {
            return Err(ModelError::InvalidArgument(format!(
                "prefix of {len} tokens from a cache of {}",
                self.len
            )));
        }
        let mut out = Self {
            layers: vec![None; self.layers.len()],
            batch: 0,
            len: 0,
            capacity: 0,
            num_kv_heads: self.num_kv_heads,
            head_dim: self.head_dim,
            dtype: self.dtype,
            device: self.device.clone(),
        };
        if len == 0 || self.batch == 0 {
            return Ok(out);
        }
        let capacity = (len + extra).div_ceil(CAPACITY_STEP) * CAPACITY_STEP;
        for (dst, src) in out.layers.iter_mut().zip(&self.layers) {
            let Some(src) = src else { continue };
            let k = self.alloc(self.batch, capacity)?;
            let v = k.zeros_like()?;
            k.slice_set(&src.k.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
            v.slice_set(&src.v.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
            *dst = Some(LayerKv { k, v });
        }
        out.batch = self.batch;
        out.len = len;
        out.capacity = capacity;
        Ok(out)
    }

    /// Turns a one-row cache into `n` identical rows, so that one prefill serves `n` samples.
    pub fn fork(&mut self, n: usize) -> Result<()> {
        if self.batch != 1 {
            return Err(ModelError::InvalidArgument(format!(
                "fork needs a one-row cache, this one has {} rows",
                self.batch
            )));
        }
        if n == 0 {
            return Err(ModelError::InvalidArgument(
                "fork(0) would leave no rows".into(),
            ));
        }
        let capacity = self.capacity;
        for layer in self.layers.iter_mut().flatten() {
            let dims = (n, self.num_kv_heads, capacity, self.head_dim);
            let k = layer.k.broadcast_as(dims)?.contiguous()?;
            let v = layer.v.broadcast_as(dims)?.contiguous()?;
            *layer = LayerKv { k, v };
        }
        self.batch = n;
        Ok(())
    }

    /// Keeps only the given rows, in the given order, and releases the memory of the others.
    ///
    /// The kept rows' keys and values are copied bit for bit, so their next logits are
    /// identical to those of an unpruned run.
    pub fn retain_rows(&mut self, rows: &[usize]) -> Result<()> {
        let mut seen = vec![false; self.batch];
        for &r in rows {
            if r >= self.batch {
                return Err(ModelError::InvalidArgument(format!(
                    "row {r} out of range for a batch of {}",
                    self.batch
                )));
            }
            if std::mem::replace(&mut seen[r], true) {
                return Err(ModelError::InvalidArgument(format!("row {r} listed twice")));
            }
        }
        if rows.is_empty() {
            self.clear();
            return Ok(());
        }
        if rows.len() == self.batch && rows.iter().enumerate().all(|(i, &r)| i == r) {
            return Ok(());
        }
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::new(idx.as_slice(), &self.device)?;
        for layer in self.layers.iter_mut().flatten() {
            let k = layer.k.index_select(&idx, 0)?;
            let v = layer.v.index_select(&idx, 0)?;
            *layer = LayerKv { k, v };
        }
        self.batch = rows.len();
        Ok(())
    }
}
