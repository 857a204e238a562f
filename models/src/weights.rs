//! Weight files: memory-mapped safetensors (single or sharded) and GGUF, behind one lookup by
//! Hugging Face tensor name.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};

/// A source of named tensors. Names are always Hugging Face names (`model.layers.0.mlp.up_proj.weight`);
/// GGUF files are looked up through [`gguf_name`].
pub struct WeightFile {
    inner: Inner,
    dtype: DType,
    device: Device,
}

enum Inner {
    Safetensors {
        st: MmapedSafetensors,
        /// Where each tensor lives, for error messages.
        paths: HashMap<String, PathBuf>,
        first: PathBuf,
    },
    Gguf {
        content: gguf_file::Content,
        reader: BufReader<File>,
        path: PathBuf,
        /// `(heads, kv_heads)` where q/k rows carry llama.cpp's rotary permutation.
        permuted: Option<(usize, usize)>,
    },
}

impl WeightFile {
    /// Memory-maps one or more safetensors files.
    pub fn safetensors(files: &[PathBuf], dtype: DType, device: &Device) -> Result<Self> {
        let mut paths = HashMap::new();
        for f in files {
            if !f.exists() {
                return Err(ModelError::MissingFile {
                    path: f.clone(),
                    what: "model weights".into(),
                });
            }
            // Read each header once to map names to files for error messages.
            let st =
                unsafe { MmapedSafetensors::new(f) }.map_err(|e| ModelError::bad_file(f, e))?;
            for (name, _) in st.tensors() {
                paths.insert(name, f.clone());
            }
        }
        // SAFETY: the files are memory-mapped read-only; thresh never writes model files while
        // serving them, as every mmap-based loader assumes.
        let st = unsafe { MmapedSafetensors::multi(files) }
            .map_err(|e| ModelError::bad_file(&files[0], e))?;
        Ok(Self {
            inner: Inner::Safetensors {
                st,
                paths,
                first: files[0].clone(),
            },
            dtype,
            device: device.clone(),
        })
    }

    /// Opens a GGUF file whose metadata has already been read. `permuted` gives the head
    /// counts where llama.cpp permuted the q/k rows (Llama-architecture files), to undo it.
    pub(crate) fn gguf(
        path: &Path,
        content: gguf_file::Content,
        reader: BufReader<File>,
        permuted: Option<(usize, usize)>,
        dtype: DType,
        device: &Device,
    ) -> Self {
        Self {
            inner: Inner::Gguf {
                content,
                reader,
                path: path.to_path_buf(),
                permuted,
            },
            dtype,
            device: device.clone(),
        }
    }

    /// The path reported in errors about `name`.
    pub fn path_of(&self, name: &str) -> PathBuf {
        match &self.inner {
            Inner::Safetensors { paths, first, .. } => {
                paths.get(name).cloned().unwrap_or_else(|| first.clone())
            }
            Inner::Gguf { path, .. } => path.clone(),
        }
    }

    /// Whether the file holds a tensor with this Hugging Face name.
    pub fn contains(&self, name: &str) -> bool {
        match &self.inner {
            Inner::Safetensors { paths, .. } => paths.contains_key(name),
            Inner::Gguf { content, .. } => gguf_name(name)
                .map(|g| content.tensor_infos.contains_key(&g))
                .unwrap_or(false),
        }
    }

    /// Loads a tensor, checks its shape and converts it to the target dtype and device.
    pub fn get(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let path = self.path_of(name);
        let missing = || ModelError::MissingTensor {
            tensor: name.to_string(),
            path: path.clone(),
        };
        let tensor = match &mut self.inner {
            Inner::Safetensors { st, paths, .. } => {
                if !paths.contains_key(name) {
                    return Err(missing());
                }
                let view = st.get(name).map_err(|e| ModelError::bad_file(&path, e))?;
                check_shape(name, &path, shape, view.shape())?;
                st.load(name, &self.device)
                    .map_err(|e| ModelError::bad_file(&path, format!("tensor {name}: {e}")))?
            }
            Inner::Gguf {
                content,
                reader,
                permuted,
                ..
            } => {
                let gname = gguf_name(name).ok_or_else(missing)?;
                let info = content.tensor_infos.get(&gname).ok_or_else(missing)?;
                check_shape(name, &path, shape, info.shape.dims())?;
                // Dequantised on the CPU, where every GGML type has a kernel, then moved.
                let q = content
                    .tensor(reader, &gname, &Device::Cpu)
                    .map_err(|e| ModelError::bad_file(&path, format!("tensor {gname}: {e}")))?;
                let t = q.dequantize(&Device::Cpu)?;
                // llama.cpp stores Llama q/k rows interleaved for its rotary kernel; restore the
                // Hugging Face order so one rotary implementation serves both formats.
                match permuted {
                    Some((heads, _))
                        if gname.ends_with("attn_q.weight") || gname.ends_with("attn_q.bias") =>
                    {
                        unpermute_rotary(&t, *heads)?
                    }
                    Some((_, kv_heads))
                        if gname.ends_with("attn_k.weight") || gname.ends_with("attn_k.bias") =>
                    {
                        unpermute_rotary(&t, *kv_heads)?
                    }
                    _ => t,
                }
                .to_device(&self.device)?
            }
        };
        Ok(tensor.to_dtype(self.dtype)?)
    }

    /// Loads a tensor if present.
    pub fn get_opt(&mut self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        if self.contains(name) {
            self.get(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }
}

fn check_shape(name: &str, path: &Path, expected: &[usize], actual: &[usize]) -> Result<()> {
    if expected != actual {
        return Err(ModelError::ShapeMismatch {
            tensor: name.to_string(),
            path: path.to_path_buf(),
            expected: expected.to_vec(),
            actual: actual.to_vec(),
        });
    }
    Ok(())
}

/// Undoes llama.cpp's `permute(w, n_head)`: GGUF row `h*d + 2j + p` is HF row `h*d + p*d/2 + j`.
fn unpermute_rotary(t: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = t.dims().to_vec();
    let rows = dims[0];
    let rest: usize = dims[1..].iter().product();
    let head_dim = rows / heads;
    let t = t
        .reshape((heads, head_dim / 2, 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?;
    Ok(t)
}

/// Maps a Hugging Face tensor name to its GGUF name.
pub fn gguf_name(hf: &str) -> Option<String> {
    let top = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(t) = top {
        return Some(t.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (idx, tail) = rest.split_once('.')?;
    let idx: usize = idx.parse().ok()?;
    let mapped = match tail {
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "self_attn.q_proj.bias" => "attn_q.bias",
        "self_attn.k_proj.bias" => "attn_k.bias",
        "self_attn.v_proj.bias" => "attn_v.bias",
        "self_attn.o_proj.bias" => "attn_output.bias",
        "self_attn.q_norm.weight" => "attn_q_norm.weight",
        "self_attn.k_norm.weight" => "attn_k_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        _ => return None,
    };
    Some(format!("blk.{idx}.{mapped}"))
}
