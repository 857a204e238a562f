//! A `tokenizer.json`: parsed as thresh loads it, then used to encode and decode.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use thresh_models::Tokenizer;

fuzz_target!(|data: &[u8]| {
    let Ok(inner) = Tokenizer::from_json(data, Path::new("tokenizer.json")) else {
        return;
    };
    let tok = Tokenizer::new(inner, Some("<s>".into()), Some("</s>".into()), vec![0]);
    let n = tok.vocab_size().min(512) as u32;
    let ids: Vec<u32> = (0..n).chain([n, n + 1, u32::MAX]).collect();
    let _ = tok.decode(&ids, false);
    let _ = tok.decode(&ids, true);
    for text in [
        "",
        "Hello, world! 123",
        "<|im_start|>user\nhé 😀<|im_end|>",
        "  \n\t ",
    ] {
        if let Ok(enc) = tok.encode(text, true) {
            let _ = tok.decode(&enc, false);
        }
        let _ = tok.encode(text, false);
    }
});
