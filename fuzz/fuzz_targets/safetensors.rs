//! A `model.safetensors` file beside a tiny Llama `config.json` and byte tokenizer: the header
//! through thresh's `WeightFile`, every tensor it names loaded with the shape it claims, and
//! the whole `load_hf_dir`.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use thresh_models::testing::{TinySpec, write_byte_tokenizer};
use thresh_models::{DType, Device, Family, LoadOptions, WeightFile};

/// The tiny model of `fuzz/corpus/safetensors/` (written by `fuzz/make_seeds.py`).
fn spec() -> TinySpec {
    let mut s = TinySpec::new(Family::Llama);
    s.hidden_size = 16;
    s.intermediate_size = 24;
    s.num_layers = 1;
    s.num_heads = 2;
    s.num_kv_heads = 1;
    s.vocab_size = 32;
    s.max_position_embeddings = 64;
    s.tie_word_embeddings = true;
    s
}

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("thresh-fuzz-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("config.json"), spec().config_json().to_string()).expect("config");
        write_byte_tokenizer(&dir).expect("tokenizer");
        dir
    })
}

/// Names and shapes the header claims, read as a plain JSON object (what a caller who trusts
/// the header would ask `WeightFile` for).
fn claimed(data: &[u8]) -> Vec<(String, Vec<usize>)> {
    let Some(len) = data
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    else {
        return vec![];
    };
    let Some(header) = usize::try_from(len)
        .ok()
        .and_then(|l| data.get(8..8usize.checked_add(l)?))
    else {
        return vec![];
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(header) else {
        return vec![];
    };
    map.into_iter()
        .filter_map(|(name, v)| {
            let shape = v
                .get("shape")?
                .as_array()?
                .iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect::<Option<Vec<_>>>()?;
            Some((name, shape))
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    let file = dir.join("model.safetensors");
    std::fs::write(&file, data).expect("temp file");
    if let Ok(mut w) =
        WeightFile::safetensors(std::slice::from_ref(&file), DType::F32, &Device::Cpu)
    {
        for (name, shape) in claimed(data) {
            let _ = w.contains(&name);
            let _ = w.get(&name, &shape);
        }
        let _ = thresh_models::load_hf_dir(dir, &LoadOptions::default());
    }
});
