//! Loading a model from a Hugging Face directory, a GGUF file or (with the `hub` feature) a
//! hub id.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device};
use serde::Deserialize;

use crate::chat::ChatTemplate;
use crate::config::{DecoderConfig, OneOrMany};
use crate::decoder::Decoder;
use crate::error::{ModelError, Result};
use crate::tokenizer::{Tokenizer, gguf_str};
use crate::weights::WeightFile;

/// Where and how to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Device for weights and activations.
    pub device: Device,
    /// Weight dtype; `None` picks f32 on CPU and bf16 on accelerators.
    pub dtype: Option<DType>,
    /// Keep projection weights GGML-quantised in this format (CPU only); `None` keeps them
    /// dense in `dtype`.
    pub quant: Option<GgmlDType>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: None,
            quant: None,
        }
    }
}

impl LoadOptions {
    /// The dtype these options resolve to.
    pub fn resolved_dtype(&self) -> DType {
        self.dtype.unwrap_or(if self.device.is_cpu() {
            DType::F32
        } else {
            DType::BF16
        })
    }

    /// Rejects combinations the runtime cannot run.
    pub fn validate(&self) -> Result<()> {
        let dtype = self.resolved_dtype();
        if !matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(ModelError::InvalidArgument(format!(
                "weight dtype {dtype:?} is not supported (f32, f16, bf16)"
            )));
        }
        if self.device.is_cpu() && dtype == DType::BF16 {
            return Err(ModelError::InvalidArgument(
                "bf16 matmuls are not available on the CPU: use f32, f16 or quantised weights"
                    .into(),
            ));
        }
        if self.quant.is_some() && !self.device.is_cpu() {
            return Err(ModelError::InvalidArgument(
                "quantised weights are supported on the CPU only".into(),
            ));
        }
        Ok(())
    }
}

/// A decoder with its tokenizer and chat template.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The network.
    pub decoder: Decoder,
    /// Its tokenizer, with every end-of-sequence id.
    pub tokenizer: Tokenizer,
    /// The chat template, where the model ships one.
    pub chat_template: Option<ChatTemplate>,
    /// The directory or file it came from.
    pub source: PathBuf,
}

/// Loads a model from a Hugging Face directory, a `.gguf` file, or (with the `hub` feature)
/// a hub id such as `HuggingFaceTB/SmolLM2-135M-Instruct`.
pub fn load(spec: &str, opts: &LoadOptions) -> Result<LoadedModel> {
    opts.validate()?;
    let path = resolve(spec)?;
    if path.is_dir() {
        load_hf_dir(&path, opts)
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        load_gguf(&path, opts)
    } else {
        Err(ModelError::bad_file(
            &path,
            "expected a Hugging Face model directory or a .gguf file",
        ))
    }
}

/// The tokenizer, chat template and configuration of a model, without its weights: what
/// thresh needs of a policy that another server runs.
#[derive(Clone)]
pub struct TokenizerFiles {
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The chat template, where the model ships one.
    pub chat_template: Option<ChatTemplate>,
    /// The decoder configuration (context, vocabulary).
    pub config: DecoderConfig,
}

/// Reads the tokenizer, chat template and configuration of a Hugging Face directory or a
/// `.gguf` file, without loading its weights.
pub fn load_tokenizer(spec: &str) -> Result<TokenizerFiles> {
    let path = resolve(spec)?;
    if path.is_dir() {
        let config = DecoderConfig::from_hf_json(&path.join("config.json"))?;
        let (tokenizer, chat_template) = load_hf_tokenizer(&path, &config.eos_token_ids)?;
        Ok(TokenizerFiles {
            tokenizer,
            chat_template,
            config,
        })
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        let g = open_gguf(&path, DType::F32, &Device::Cpu)?;
        Ok(TokenizerFiles {
            tokenizer: g.tokenizer,
            chat_template: g.chat_template,
            config: g.cfg,
        })
    } else {
        Err(ModelError::bad_file(
            &path,
            "expected a Hugging Face model directory or a .gguf file",
        ))
    }
}

/// Turns a path or hub id into a local path.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    let path = PathBuf::from(spec);
    if path.exists() {
        return Ok(path);
    }
    #[cfg(feature = "hub")]
    if spec.split('/').count() == 2 && !spec.starts_with('.') && !spec.starts_with('/') {
        return crate::hub::download(spec);
    }
    Err(ModelError::MissingFile {
        path,
        what: if cfg!(feature = "hub") {
            "a model directory, .gguf file or hub id".into()
        } else {
            "a model directory or .gguf file (hub ids need the `hub` feature)".into()
        },
    })
}

#[derive(Debug, Deserialize, Default)]
struct GenerationConfig {
    eos_token_id: Option<OneOrMany>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TokenSpec {
    Text(String),
    Object { content: String },
}

impl TokenSpec {
    fn text(self) -> String {
        match self {
            TokenSpec::Text(s) | TokenSpec::Object { content: s } => s,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TemplateSpec {
    One(String),
    Named(Vec<NamedTemplate>),
}

#[derive(Debug, Deserialize)]
struct NamedTemplate {
    name: String,
    template: String,
}

#[derive(Debug, Deserialize, Default)]
struct TokenizerConfig {
    bos_token: Option<TokenSpec>,
    eos_token: Option<TokenSpec>,
    chat_template: Option<TemplateSpec>,
}

/// The text of an optional file: `None` when it does not exist.
fn read_text(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ModelError::bad_file(path, e)),
    }
}

/// Parses an optional JSON file's text (`path` names it in errors); absent is the default.
fn parse_json<T: for<'de> Deserialize<'de> + Default>(
    text: Option<&str>,
    path: &Path,
) -> Result<T> {
    match text {
        Some(text) => serde_json::from_str(text).map_err(|e| ModelError::bad_file(path, e)),
        None => Ok(T::default()),
    }
}

/// The safetensors files of a directory: `model.safetensors`, or the shards its index names.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| ModelError::bad_file(&index, e))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ModelError::bad_file(&index, e))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| ModelError::bad_file(&index, "no weight_map"))?;
        let mut files: Vec<PathBuf> = map
            .values()
            .filter_map(|f| f.as_str())
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files);
    }
    Err(ModelError::MissingFile {
        path: single,
        what: "model weights (model.safetensors or model.safetensors.index.json)".into(),
    })
}

/// Loads tokenizer, special tokens and chat template of a Hugging Face directory.
pub fn load_hf_tokenizer(
    dir: &Path,
    config_eos: &[u32],
) -> Result<(Tokenizer, Option<ChatTemplate>)> {
    let tokenizer_path = dir.join("tokenizer.json");
    if !tokenizer_path.exists() {
        return Err(ModelError::MissingFile {
            path: tokenizer_path,
            what: "the tokenizer".into(),
        });
    }
    let tokenizer_json =
        std::fs::read(&tokenizer_path).map_err(|e| ModelError::bad_file(&tokenizer_path, e))?;
    let tokenizer_config = read_text(&dir.join("tokenizer_config.json"))?;
    let generation_config = read_text(&dir.join("generation_config.json"))?;
    let jinja = dir.join("chat_template.jinja");
    let chat_template = read_text(&jinja)?;
    hf_tokenizer_from_texts(
        &HfTokenizerTexts {
            tokenizer_json: &tokenizer_json,
            tokenizer_config: tokenizer_config.as_deref(),
            generation_config: generation_config.as_deref(),
            chat_template_jinja: chat_template.as_deref(),
        },
        config_eos,
        dir,
    )
}

/// The tokenizer files of a Hugging Face directory, read into memory: the byte-level input
/// of [`hf_tokenizer_from_texts`].
#[derive(Debug, Clone, Copy)]
pub struct HfTokenizerTexts<'a> {
    /// `tokenizer.json`.
    pub tokenizer_json: &'a [u8],
    /// `tokenizer_config.json`, where present.
    pub tokenizer_config: Option<&'a str>,
    /// `generation_config.json`, where present.
    pub generation_config: Option<&'a str>,
    /// `chat_template.jinja`, where present (used when `tokenizer_config.json` has no
    /// `chat_template`).
    pub chat_template_jinja: Option<&'a str>,
}

/// Builds the tokenizer, special tokens and chat template from the files of a Hugging Face
/// directory already in memory, as [`load_hf_tokenizer`] does from `dir` (which names the
/// files in errors).
pub fn hf_tokenizer_from_texts(
    texts: &HfTokenizerTexts<'_>,
    config_eos: &[u32],
    dir: &Path,
) -> Result<(Tokenizer, Option<ChatTemplate>)> {
    let inner = Tokenizer::from_json(texts.tokenizer_json, &dir.join("tokenizer.json"))?;
    let tc: TokenizerConfig =
        parse_json(texts.tokenizer_config, &dir.join("tokenizer_config.json"))?;
    let gc: GenerationConfig =
        parse_json(texts.generation_config, &dir.join("generation_config.json"))?;
    let bos = tc.bos_token.map(TokenSpec::text);
    let eos = tc.eos_token.map(TokenSpec::text);
    let mut eos_ids = config_eos.to_vec();
    eos_ids.extend(gc.eos_token_id.map(OneOrMany::into_vec).unwrap_or_default());
    let tokenizer = Tokenizer::new(inner, bos.clone(), eos.clone(), eos_ids);
    let source = match tc.chat_template {
        Some(TemplateSpec::One(s)) => Some(s),
        Some(TemplateSpec::Named(list)) => list
            .into_iter()
            .find(|t| t.name == "default")
            .map(|t| t.template),
        None => texts.chat_template_jinja.map(str::to_string),
    };
    let template = source
        .map(|s| {
            ChatTemplate::new(
                &s,
                bos.as_deref().unwrap_or(""),
                eos.as_deref().unwrap_or(""),
            )
        })
        .transpose()?;
    Ok((tokenizer, template))
}

/// Loads a Hugging Face model directory.
pub fn load_hf_dir(dir: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
    let cfg = DecoderConfig::from_hf_json(&dir.join("config.json"))?;
    let dtype = opts.resolved_dtype();
    let files = safetensors_files(dir)?;
    let mut weights = WeightFile::safetensors(&files, dtype, &opts.device)?;
    let decoder = Decoder::load(&cfg, &mut weights, dtype, &opts.device, opts.quant)?;
    let (tokenizer, chat_template) = load_hf_tokenizer(dir, &cfg.eos_token_ids)?;
    Ok(LoadedModel {
        decoder,
        tokenizer,
        chat_template,
        source: dir.to_path_buf(),
    })
}

/// A GGUF file opened for loading: its configuration, tokenizer and chat template from the
/// metadata, and its tensors, read on demand.
pub struct GgufModel {
    /// The decoder configuration.
    pub cfg: DecoderConfig,
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The chat template, where the file has one.
    pub chat_template: Option<ChatTemplate>,
    /// The tensors under Hugging Face names (Llama q/k rows un-permuted).
    pub weights: WeightFile,
}

/// Opens a GGUF file; its tensors are dequantised to `dtype` on `device` as they are read.
pub fn open_gguf(path: &Path, dtype: DType, device: &Device) -> Result<GgufModel> {
    let file = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ModelError::MissingFile {
                path: path.to_path_buf(),
                what: "the GGUF model".into(),
            }
        } else {
            ModelError::bad_file(path, e)
        }
    })?;
    let mut reader = BufReader::new(file);
    let content = crate::gguf::read_content(&mut reader)
        .map_err(|e| ModelError::bad_file(path, format!("not a readable GGUF file: {e}")))?;
    let cfg = DecoderConfig::from_gguf(&content, path)?;
    let tokenizer = Tokenizer::from_gguf(&content, path)?;
    let chat_template = gguf_str(content.metadata.get("tokenizer.chat_template"))
        .map(|s| {
            ChatTemplate::new(
                &s,
                tokenizer.bos_token().unwrap_or(""),
                tokenizer.eos_token().unwrap_or(""),
            )
        })
        .transpose()?;
    let arch = gguf_str(content.metadata.get("general.architecture")).unwrap_or_default();
    // llama.cpp permutes q/k rows of Llama-architecture models (Mistral included) only.
    let permuted =
        (arch == "llama" || arch == "mistral").then_some((cfg.num_heads, cfg.num_kv_heads));
    let weights = WeightFile::gguf(path, content, reader, permuted, dtype, device);
    Ok(GgufModel {
        cfg,
        tokenizer,
        chat_template,
        weights,
    })
}

/// Loads a single GGUF file: configuration and tokenizer from its metadata, weights
/// dequantised to the target dtype.
pub fn load_gguf(path: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
    let dtype = opts.resolved_dtype();
    let GgufModel {
        cfg,
        tokenizer,
        chat_template,
        mut weights,
    } = open_gguf(path, dtype, &opts.device)?;
    let decoder = Decoder::load(&cfg, &mut weights, dtype, &opts.device, opts.quant)?;
    Ok(LoadedModel {
        decoder,
        tokenizer,
        chat_template,
        source: path.to_path_buf(),
    })
}

/// Parses a weight format name for `device`: as [`parse_quant`], except that `auto` keeps
/// accelerator weights dense (bf16 by default), since the quantised kernels are the CPU's.
pub fn parse_weights(name: &str, spec: &str, device: &Device) -> Result<Option<GgmlDType>> {
    if name.eq_ignore_ascii_case("auto") && !device.is_cpu() {
        return Ok(None);
    }
    parse_quant(name, spec)
}

/// Parses a weight format name for the model at `spec`: `dense` (or `f32`, `none`) keeps
/// weights dense; `q8_0`, `q4_0`, `q4_1`, `q4k`, `q6k` keep projections GGML-quantised;
/// `auto` picks q8_0 for GGUF files (already quantised, and several times faster than dense
/// f32 on the CPU, see BENCHMARKS.md) and dense for Hugging Face directories.
pub fn parse_quant(name: &str, spec: &str) -> Result<Option<GgmlDType>> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "auto" => spec
            .to_ascii_lowercase()
            .ends_with(".gguf")
            .then_some(GgmlDType::Q8_0),
        "dense" | "f32" | "none" => None,
        "q8_0" => Some(GgmlDType::Q8_0),
        "q4_0" => Some(GgmlDType::Q4_0),
        "q4_1" => Some(GgmlDType::Q4_1),
        "q4k" | "q4_k" => Some(GgmlDType::Q4K),
        "q6k" | "q6_k" => Some(GgmlDType::Q6K),
        other => {
            return Err(ModelError::InvalidArgument(format!(
                "unknown weight format {other:?} (auto, dense, q8_0, q4_0, q4_1, q4k, q6k)"
            )));
        }
    })
}
