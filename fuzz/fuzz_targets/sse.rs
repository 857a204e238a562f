//! thresh-bench's SSE parser: the same bytes fed whole and in chunks (cut where the input's
//! first bytes say) must give the same events; each event is then read as the load client
//! reads it (JSON).
#![no_main]

use libfuzzer_sys::fuzz_target;
use thresh_bench::sse::SseParser;

fn events(chunks: &[&[u8]]) -> Vec<String> {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    for c in chunks {
        out.extend(p.feed(c));
    }
    out.extend(p.finish());
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let size = usize::from(cut % 17) + 1;
    let whole = events(&[stream]);
    let chunked = events(&stream.chunks(size).collect::<Vec<_>>());
    assert_eq!(whole, chunked, "chunks of {size} bytes");
    for ev in &whole {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(ev) {
            let _ = v["choices"][0]["delta"]["content"].as_str();
        }
    }
});
