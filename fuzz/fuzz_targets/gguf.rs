//! A GGUF file: the bounded header reader, the configuration, tokenizer and chat template
//! read from its metadata, and (when those succeed) the whole load, weights included.
#![no_main]

use std::io::Cursor;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use thresh_models::{ChatTemplate, DecoderConfig, LoadOptions, Tokenizer};

fuzz_target!(|data: &[u8]| {
    let Ok(content) = thresh_models::gguf::read_content(&mut Cursor::new(data)) else {
        return;
    };
    let path = Path::new("fuzz.gguf");
    let cfg = DecoderConfig::from_gguf(&content, path);
    if let Ok(tok) = Tokenizer::from_gguf(&content, path) {
        let _ = tok.encode("hello world <|im_end|>", true);
        let _ = tok.decode(&[0, 1, 2, 3, u32::MAX], false);
    }
    if let Some(Ok(src)) = content
        .metadata
        .get("tokenizer.chat_template")
        .map(|v| v.to_string())
    {
        let _ = ChatTemplate::new(src, "<s>", "</s>");
    }
    if cfg.is_err() {
        return;
    }
    // The full path of `thresh serve --policy file.gguf`, through a file as the loader reads.
    let file = std::env::temp_dir().join(format!("thresh-fuzz-{}.gguf", std::process::id()));
    std::fs::write(&file, data).expect("temp file");
    let _ = thresh_models::load_gguf(&file, &LoadOptions::default());
    let _ = std::fs::remove_file(&file);
});
