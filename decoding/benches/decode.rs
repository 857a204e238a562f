//! Decode and prefill throughput of the demo policy (SmolLM2-135M-Instruct GGUF) at several
//! batch sizes: a 64-token prompt, prefilled once and forked to the batch, then 128 new tokens
//! per row (EOS ignored, so every row runs the full length).
//!
//! `cargo bench -p thresh-decoding --bench decode -- [--batches 1,8,32,64] [--reps 3] [--model PATH] [--weights auto|dense|q8_0]`
//!
//! Prints one line per batch size with the median over repetitions: aggregate decode
//! tokens/s, prefill tokens/s, the split of decode time between forward passes and sampling,
//! and the process's peak RSS so far (batches run in increasing order).

use std::path::PathBuf;
use std::time::Instant;
use thresh_models::bench::{arg, median, peak_rss_mib};

use thresh_decoding::{SamplingParams, StopConditions, generate};
use thresh_models::{LoadOptions, load, parse_quant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let model = arg("--model")
        .map(PathBuf::from)
        .unwrap_or_else(thresh_models::testing::smollm2_gguf);
    let batches: Vec<usize> = arg("--batches")
        .unwrap_or_else(|| "1,8,32,64".into())
        .split(',')
        .map(|b| b.trim().parse().expect("--batches takes numbers"))
        .collect();
    let reps: usize = arg("--reps").map_or(3, |r| r.parse().expect("--reps takes a number"));
    let new_tokens: usize =
        arg("--new-tokens").map_or(128, |r| r.parse().expect("--new-tokens takes a number"));
    let t0 = Instant::now();
    let weights = arg("--weights").unwrap_or_else(|| "auto".into());
    let opts = LoadOptions {
        quant: parse_quant(&weights, &model.to_string_lossy()).expect("--weights"),
        ..Default::default()
    };
    let m = load(model.to_str().expect("utf-8 path"), &opts).expect("load model");
    println!(
        "weights {weights}; model {} loaded in {:.2} s, peak RSS {:.0} MiB",
        model.display(),
        t0.elapsed().as_secs_f64(),
        peak_rss_mib()
    );
    // A 64-token prompt.
    let text = "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined movable metal type, oil-based ink and a wooden screw press. Within decades, printed books spread across Europe and changed how people learned, argued and prayed. Pamphlets carried news and dissent faster than any scribe could copy them, and the price of a book fell so far that";
    let mut prompt = m.tokenizer.encode(text, false).expect("encode");
    prompt.truncate(64);
    assert_eq!(prompt.len(), 64, "prompt must have 64 tokens");
    let stop = StopConditions {
        max_tokens: new_tokens,
        ignore_eos: true,
        ..Default::default()
    };
    let params = SamplingParams {
        temperature: 0.8,
        top_p: 0.95,
        seed: 0,
        ..Default::default()
    };
    println!(
        "| batch | decode tok/s | prefill tok/s | ms/step | forward % | sampling % | peak RSS MiB |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for &b in &batches {
        let (mut tps, mut pps, mut step_ms, mut fwd, mut smp) =
            (vec![], vec![], vec![], vec![], vec![]);
        for rep in 0..reps {
            let params = SamplingParams {
                seed: rep as u64,
                ..params.clone()
            };
            let t = Instant::now();
            let g =
                generate(&m.decoder, &m.tokenizer, &prompt, b, &params, &stop).expect("generate");
            let wall = t.elapsed().as_secs_f64();
            let s = &g.stats;
            assert_eq!(s.generated_tokens, b * new_tokens);
            let decode = wall - s.prefill_time.as_secs_f64();
            tps.push(s.generated_tokens as f64 / decode);
            pps.push(s.prompt_tokens as f64 / s.prefill_time.as_secs_f64());
            step_ms.push(decode * 1e3 / new_tokens as f64);
            fwd.push(100.0 * s.decode_time.as_secs_f64() / decode);
            smp.push(100.0 * s.sample_time.as_secs_f64() / decode);
        }
        println!(
            "| {b} | {:.1} | {:.0} | {:.1} | {:.0} | {:.0} | {:.0} |",
            median(tps),
            median(pps),
            median(step_ms),
            median(fwd),
            median(smp),
            peak_rss_mib()
        );
    }
}
