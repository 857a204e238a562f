//! thresh-bench's JSONL workload reader.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = thresh_bench::dataset::parse_jsonl(&text, Path::new("fuzz.jsonl"));
});
