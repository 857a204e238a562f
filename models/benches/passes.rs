//! Cost of one decoder pass over several requests' caches (`Decoder::forward_last_many`, the
//! server's continuous batching) against the same rows in one cache (`Decoder::forward_last`).
//!
//! `cargo bench -p thresh-models --bench passes -- [--parts 1,4,8,16] [--steps 64] [--reps 3] [--model PATH]`
//!
//! Each request's 64-token prompt is prefilled once; then `--steps` decode passes feed a fixed
//! token (no sampling), so the figures are the decoder alone. Prints the median ms per pass for
//! both layouts and their ratio.

use std::path::PathBuf;
use std::time::Instant;
use thresh_models::bench::{arg, median};

use candle_core::Tensor;
use thresh_models::{KvCache, LoadOptions, load, parse_quant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let model = arg("--model")
        .map(PathBuf::from)
        .unwrap_or_else(thresh_models::testing::smollm2_gguf);
    let parts: Vec<usize> = arg("--parts")
        .unwrap_or_else(|| "1,4,8,16".into())
        .split(',')
        .map(|b| b.trim().parse().expect("--parts takes numbers"))
        .collect();
    let reps: usize = arg("--reps").map_or(3, |r| r.parse().expect("--reps takes a number"));
    let steps: usize = arg("--steps").map_or(64, |r| r.parse().expect("--steps takes a number"));
    let spec = model.to_string_lossy().to_string();
    let opts = LoadOptions {
        quant: parse_quant("auto", &spec).expect("quant"),
        ..Default::default()
    };
    let m = load(&spec, &opts).expect("load model");
    let dev = m.decoder.device().clone();
    let prompt: Vec<u32> = (0..64u32).map(|i| 100 + 7 * i).collect();
    let ids = Tensor::new(prompt.as_slice(), &dev)
        .and_then(|t| t.unsqueeze(0))
        .expect("ids");
    let mut base = m.decoder.new_cache();
    m.decoder.forward_last(&ids, &mut base).expect("prefill");
    let token = |rows: usize| Tensor::from_vec(vec![42u32; rows], (rows, 1), &dev).expect("token");
    println!("| requests | one cache ms/pass | one cache per request ms/pass | ratio |");
    println!("|---:|---:|---:|---:|");
    for &p in &parts {
        let (mut one, mut many) = (vec![], vec![]);
        for _ in 0..reps {
            let mut cache = base.clone();
            cache.fork(p).expect("fork");
            cache.reserve(steps).expect("reserve");
            let t = Instant::now();
            for _ in 0..steps {
                m.decoder.forward_last(&token(p), &mut cache).expect("step");
            }
            one.push(t.elapsed().as_secs_f64() * 1e3 / steps as f64);

            let mut caches: Vec<KvCache> = (0..p).map(|_| base.clone()).collect();
            caches
                .iter_mut()
                .for_each(|c| c.reserve(steps).expect("reserve"));
            let ids: Vec<Tensor> = (0..p).map(|_| token(1)).collect();
            let t = Instant::now();
            for _ in 0..steps {
                let mut refs: Vec<&mut KvCache> = caches.iter_mut().collect();
                m.decoder.forward_last_many(&ids, &mut refs).expect("step");
            }
            many.push(t.elapsed().as_secs_f64() * 1e3 / steps as f64);
        }
        let (o, n) = (median(one), median(many));
        println!("| {p} | {o:.2} | {n:.2} | {:.2} |", n / o);
    }
}
