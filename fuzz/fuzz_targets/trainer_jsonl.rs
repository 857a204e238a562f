//! The trainer's data readers: the first byte picks the format (auto-detection or one of the
//! seven layouts), the rest is the JSONL text. What loads goes through every training view,
//! and a thresh-schema line written back must read back equal.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use thresh_trainer::data::{self, Format};

const FORMATS: [Format; 8] = [
    Format::Auto,
    Format::Thresh,
    Format::HhRlhf,
    Format::UltraFeedback,
    Format::PkuSafeRlhf,
    Format::Aligner,
    Format::Kldo,
    Format::TrlUnpaired,
];

fuzz_target!(|input: &[u8]| {
    let Some((&pick, rest)) = input.split_first() else {
        return;
    };
    let format = FORMATS[usize::from(pick) % FORMATS.len()];
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(examples) = data::parse_jsonl(text, Path::new("fuzz.jsonl"), format) else {
        return;
    };
    let _ = data::pairs(&examples);
    let _ = data::binary(&examples);
    let _ = data::scalar(&examples);
    let _ = data::corrections(&examples);
    for ex in &examples {
        let line = ex.to_thresh_json();
        let back = data::parse_value(line.clone(), Format::Thresh)
            .unwrap_or_else(|e| panic!("{line} does not read back: {e}"));
        assert_eq!(&back, ex, "{line}");
    }
});
