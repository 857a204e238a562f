//! thresh's model runtime.
//!
//! One decoder implementation for the Llama family ([`Decoder`]), driven by a normalised
//! [`DecoderConfig`], with a caller-owned batched [`KvCache`] that can fork one prefill into
//! many rows and prune rows mid-generation. Models load from Hugging Face directories
//! (memory-mapped safetensors) or single GGUF files (weights dequantised, tokenizer rebuilt
//! from metadata) through [`load`].

mod attention;
pub mod bench;
pub mod chat;
pub mod config;
pub mod decoder;
pub mod device;
pub mod error;
pub mod gguf;
#[cfg(feature = "hub")]
pub mod hub;
pub mod kv_cache;
pub mod loader;
pub mod parallel;
pub mod rope;
pub mod testing;
pub mod tokenizer;
pub mod weights;

pub use chat::{ChatMessage, ChatTemplate};
pub use config::{DecoderConfig, Family, RopeScaling};
pub use decoder::Decoder;
pub use device::parse_device;
pub use error::{ModelError, Result};
pub use kv_cache::KvCache;
pub use loader::{
    HfTokenizerTexts, LoadOptions, LoadedModel, TokenizerFiles, hf_tokenizer_from_texts, load,
    load_gguf, load_hf_dir, load_tokenizer, parse_quant, parse_weights,
};
pub use tokenizer::{RemoteCodec, Tokenizer};
pub use weights::WeightFile;

pub use candle_core::quantized::GgmlDType;
pub use candle_core::{DType, Device, Tensor};
