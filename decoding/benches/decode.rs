//! Decode and prefill throughput of the demo policy (SmolLM2-135M-Instruct GGUF) at several
//! batch sizes: a 64-token prompt, prefilled once and forked to the batch, then 128 new tokens
//! per row (EOS ignored, so every row runs the full length).
//!
//! `cargo bench -p thresh-decoding --bench decode -- [--batches 1,8,32,64] [--reps 3] [--model PATH] [--weights auto|dense|q8_0] [--grammar none|json|both]`
//!
//! Prints one line per batch size with the median over repetitions: aggregate decode
//! tokens/s, prefill tokens/s, the split of decode time between forward passes and sampling,
//! and the process's peak RSS so far (batches run in increasing order).
//!
//! `--grammar json` decodes every row under a JSON schema (an array of at least 1,000 objects
//! with string, integer, enum and array fields, so no row can end before the budget) and adds
//! the grammar masks' CPU time per step and its share of the step's CPU time (wall time times
//! the sampling threads, as rows are masked in parallel); `both` runs free and constrained
//! rows alternately at each batch size, and prints their throughput ratio.

use std::path::PathBuf;
use std::time::Instant;
use thresh_models::bench::{arg, median, peak_rss_mib};

use thresh_decoding::{ConstraintCompiler, Grammar, SamplingParams, StopConditions, generate};
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
    let grammar = arg("--grammar").unwrap_or_else(|| "none".into());
    let modes: &[bool] = match grammar.as_str() {
        "none" => &[false],
        "json" => &[true],
        "both" => &[false, true],
        other => panic!("--grammar takes none, json or both, got {other}"),
    };
    let constraint = modes.contains(&true).then(|| {
        let t = Instant::now();
        let compiler = ConstraintCompiler::new(&m.tokenizer).expect("grammar compiler");
        let built = t.elapsed();
        let item = serde_json::json!({"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "role": {"enum": ["admin", "user", "guest"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3}},
            "required": ["name", "age", "role", "tags"], "additionalProperties": false});
        let schema = serde_json::json!({"type": "array", "items": item, "minItems": 1000});
        let t = Instant::now();
        let c = compiler
            .compile(&Grammar::JsonSchema(schema))
            .expect("compile");
        println!(
            "grammar compiler built in {:.0} ms; schema compiled in {:.1} ms",
            built.as_secs_f64() * 1e3,
            t.elapsed().as_secs_f64() * 1e3
        );
        c
    });
    let threads = candle_core::utils::get_num_threads().max(1);
    println!(
        "| batch | grammar | decode tok/s | prefill tok/s | ms/step | forward % | sampling % | mask ms/step (CPU) | mask % of step CPU | peak RSS MiB |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &b in &batches {
        let mut rates = Vec::new();
        for &constrained in modes {
            let (mut tps, mut pps, mut step_ms, mut fwd, mut smp, mut mask_ms, mut mask_pct) =
                (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
            for rep in 0..reps {
                let params = SamplingParams {
                    seed: rep as u64,
                    constraint: if constrained {
                        constraint.clone()
                    } else {
                        None
                    },
                    ..params.clone()
                };
                let t = Instant::now();
                let g = generate(&m.decoder, &m.tokenizer, &prompt, b, &params, &stop)
                    .expect("generate");
                let wall = t.elapsed().as_secs_f64();
                let s = &g.stats;
                assert_eq!(s.generated_tokens, b * new_tokens);
                let decode = wall - s.prefill_time.as_secs_f64();
                tps.push(s.generated_tokens as f64 / decode);
                pps.push(s.prompt_tokens as f64 / s.prefill_time.as_secs_f64());
                step_ms.push(decode * 1e3 / new_tokens as f64);
                fwd.push(100.0 * s.decode_time.as_secs_f64() / decode);
                smp.push(100.0 * s.sample_time.as_secs_f64() / decode);
                mask_ms.push(s.mask_time.as_secs_f64() * 1e3 / new_tokens as f64);
                mask_pct.push(100.0 * s.mask_time.as_secs_f64() / (decode * threads as f64));
            }
            let rate = median(tps);
            rates.push(rate);
            println!(
                "| {b} | {} | {rate:.1} | {:.0} | {:.1} | {:.0} | {:.0} | {:.2} | {:.1} | {:.0} |",
                if constrained { "json" } else { "none" },
                median(pps),
                median(step_ms),
                median(fwd),
                median(smp),
                median(mask_ms),
                median(mask_pct),
                peak_rss_mib()
            );
        }
        if let [free, json] = rates[..] {
            println!("| {b} | json / none | {:.3} | | | | | | | |", json / free);
        }
    }
}
