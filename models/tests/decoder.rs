//! Decoder parity with candle-transformers and the KV cache's fork / retain_rows contracts,
//! on tiny random models in Hugging Face layout.

use std::path::Path;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::{gemma, llama, qwen2, qwen3};
use thresh_models::config::DecoderConfig;
use thresh_models::testing::TinySpec;
use thresh_models::{Decoder, Family, KvCache, WeightFile};

fn load_ours(dir: &Path) -> Decoder {
    load_with(dir, None)
}

fn load_with(dir: &Path, quant: Option<GgmlDType>) -> Decoder {
    let cfg = DecoderConfig::from_hf_json(&dir.join("config.json")).unwrap();
    let mut w = WeightFile::safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu)
        .unwrap();
    Decoder::load(&cfg, &mut w, DType::F32, &Device::Cpu, quant).unwrap()
}

fn vb(dir: &Path) -> VarBuilder<'static> {
    unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
        .unwrap()
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    thresh_models::testing::max_abs_diff(a, b).unwrap()
}

fn argmax_rows(logits: &Tensor) -> Vec<u32> {
    logits.argmax(1).unwrap().to_vec1::<u32>().unwrap()
}

const PROMPT: [[u32; 7]; 2] = [[1, 17, 33, 5, 90, 64, 3], [1, 100, 2, 45, 45, 8, 127]];

/// Runs a prefill of PROMPT and 8 greedy decode steps through `step` (which returns
/// (b, vocab) last-position logits) and through our decoder, comparing every step.
fn compare(ours: &Decoder, mut reference: impl FnMut(&Tensor, usize) -> Tensor) {
    let dev = Device::Cpu;
    let mut cache = ours.new_cache();
    let mut input = Tensor::new(&PROMPT, &dev).unwrap();
    let mut pos = 0;
    for step in 0..9 {
        let a = ours.forward_last(&input, &mut cache).unwrap();
        let b = reference(&input, pos);
        let d = max_abs_diff(&a, &b);
        assert!(d < 1e-4, "step {step}: max |diff| = {d}");
        pos += input.dim(1).unwrap();
        let next = argmax_rows(&a);
        input = Tensor::new(next.as_slice(), &dev)
            .unwrap()
            .unsqueeze(1)
            .unwrap();
    }
    assert_eq!(cache.len(), 7 + 8);
}

#[test]
fn llama_matches_candle_transformers() {
    for (tie, llama3) in [(false, false), (true, true)] {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = TinySpec::new(Family::Llama);
        spec.tie_word_embeddings = tie;
        spec.llama3_rope = llama3;
        spec.write(dir.path()).unwrap();
        let ours = load_ours(dir.path());
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        let cfg: llama::LlamaConfig = serde_json::from_str(&text).unwrap();
        let cfg = cfg.into_config(false);
        let reference = llama::Llama::load(vb(dir.path()), &cfg).unwrap();
        let mut cache = llama::Cache::new(true, DType::F32, &cfg, &Device::Cpu).unwrap();
        compare(&ours, |x, pos| {
            reference.forward(x, pos, &mut cache).unwrap()
        });
    }
}

#[test]
fn qwen2_matches_candle_transformers() {
    let dir = tempfile::tempdir().unwrap();
    TinySpec::new(Family::Qwen2).write(dir.path()).unwrap();
    let ours = load_ours(dir.path());
    let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    let cfg: qwen2::Config = serde_json::from_str(&text).unwrap();
    let mut reference = qwen2::ModelForCausalLM::new(&cfg, vb(dir.path())).unwrap();
    compare(&ours, |x, pos| {
        reference.forward(x, pos).unwrap().squeeze(1).unwrap()
    });
}

#[test]
fn qwen3_matches_candle_transformers() {
    let dir = tempfile::tempdir().unwrap();
    TinySpec::new(Family::Qwen3).write(dir.path()).unwrap();
    let ours = load_ours(dir.path());
    let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    let cfg: qwen3::Config = serde_json::from_str(&text).unwrap();
    let mut reference = qwen3::ModelForCausalLM::new(&cfg, vb(dir.path())).unwrap();
    compare(&ours, |x, pos| {
        reference.forward(x, pos).unwrap().squeeze(1).unwrap()
    });
}

#[test]
fn gemma_matches_candle_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = TinySpec::new(Family::Gemma);
    spec.tie_word_embeddings = true;
    spec.write(dir.path()).unwrap();
    let ours = load_ours(dir.path());
    assert!(ours.config().scale_embeddings && ours.config().norm_weight_offset);
    let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
    let cfg: gemma::Config = serde_json::from_str(&text).unwrap();
    let mut reference = gemma::Model::new(false, &cfg, vb(dir.path())).unwrap();
    compare(&ours, |x, pos| {
        reference.forward(x, pos).unwrap().squeeze(1).unwrap()
    });
}

fn tiny_llama() -> (tempfile::TempDir, Decoder) {
    tiny_llama_with(None)
}

fn tiny_llama_with(quant: Option<GgmlDType>) -> (tempfile::TempDir, Decoder) {
    let dir = tempfile::tempdir().unwrap();
    TinySpec::new(Family::Llama).write(dir.path()).unwrap();
    let d = load_with(dir.path(), quant);
    (dir, d)
}

/// Prefill one prompt, fork to 4 rows and give each row its own 3 tokens, so rows differ.
fn diverged_cache(d: &Decoder) -> (KvCache, Vec<Vec<u32>>) {
    let dev = Device::Cpu;
    let mut cache = d.new_cache();
    d.forward_last(&Tensor::new(&[PROMPT[0]], &dev).unwrap(), &mut cache)
        .unwrap();
    cache.fork(4).unwrap();
    let rows: Vec<Vec<u32>> = (0..4u32)
        .map(|r| vec![10 + r, 20 + 3 * r, 40 + 5 * r])
        .collect();
    for t in 0..3 {
        let col: Vec<u32> = rows.iter().map(|r| r[t]).collect();
        d.forward_last(
            &Tensor::new(col.as_slice(), &dev)
                .unwrap()
                .unsqueeze(1)
                .unwrap(),
            &mut cache,
        )
        .unwrap();
    }
    (cache, rows)
}

#[test]
fn retain_rows_keeps_logits_bit_identical_and_frees_bytes() {
    for quant in [None, Some(GgmlDType::Q8_0)] {
        retain_rows_case(quant);
    }
}

fn retain_rows_case(quant: Option<GgmlDType>) {
    let (_dir, d) = tiny_llama_with(quant);
    let dev = Device::Cpu;
    let (mut full, _) = diverged_cache(&d);
    let mut pruned = full.clone();
    let mut single = full.clone();
    single.retain_rows(&[2]).unwrap();
    let before = pruned.bytes_in_use();
    assert_eq!(before, 4 * pruned.len() * pruned.bytes_per_token());
    pruned.retain_rows(&[3, 1]).unwrap();
    assert_eq!(pruned.batch_size(), 2);
    assert_eq!(pruned.bytes_in_use() * 2, before);
    assert!(pruned.bytes_allocated() * 2 <= full.bytes_allocated());
    let next_full: Vec<u32> = vec![7, 8, 9, 11];
    for step in 0..4 {
        let a = d
            .forward_last(
                &Tensor::new(next_full.as_slice(), &dev)
                    .unwrap()
                    .unsqueeze(1)
                    .unwrap(),
                &mut full,
            )
            .unwrap();
        let kept = [next_full[3], next_full[1]];
        let b = d
            .forward_last(
                &Tensor::new(&kept, &dev).unwrap().unsqueeze(1).unwrap(),
                &mut pruned,
            )
            .unwrap();
        for (pr, fr) in [(0usize, 3usize), (1, 1)] {
            let x = a.i(fr).unwrap().to_vec1::<f32>().unwrap();
            let y = b.i(pr).unwrap().to_vec1::<f32>().unwrap();
            assert!(x == y, "step {step}: row {fr} differs after pruning");
        }
        // Down to one row, the last survivor of Speculative Rejection.
        let c = d
            .forward_last(&Tensor::new(&[[next_full[2]]], &dev).unwrap(), &mut single)
            .unwrap();
        assert!(
            a.i(2).unwrap().to_vec1::<f32>().unwrap() == c.i(0).unwrap().to_vec1::<f32>().unwrap(),
            "step {step}: single surviving row differs"
        );
    }
    // Invalid requests are errors, not panics.
    assert!(pruned.retain_rows(&[2]).is_err());
    assert!(pruned.retain_rows(&[0, 0]).is_err());
    pruned.retain_rows(&[]).unwrap();
    assert_eq!(pruned.bytes_in_use(), 0);
}

#[test]
fn fork_matches_prefilling_copies() {
    let (_dir, d) = tiny_llama();
    let dev = Device::Cpu;
    let mut forked = d.new_cache();
    d.forward_last(&Tensor::new(&[PROMPT[1]], &dev).unwrap(), &mut forked)
        .unwrap();
    forked.fork(3).unwrap();
    let mut copies = d.new_cache();
    d.forward_last(&Tensor::new(&[PROMPT[1]; 3], &dev).unwrap(), &mut copies)
        .unwrap();
    assert_eq!(forked.bytes_in_use(), copies.bytes_in_use());
    let mut tokens = vec![5u32, 6, 7];
    for _ in 0..4 {
        let x = Tensor::new(tokens.as_slice(), &dev)
            .unwrap()
            .unsqueeze(1)
            .unwrap();
        let a = d.forward_last(&x, &mut forked).unwrap();
        let b = d.forward_last(&x, &mut copies).unwrap();
        let diff = max_abs_diff(&a, &b);
        assert!(diff < 1e-5, "fork differs from copies by {diff}");
        tokens = argmax_rows(&a);
    }
    let mut two = d.new_cache();
    d.forward_last(
        &Tensor::new(&[PROMPT[0], PROMPT[1]], &dev).unwrap(),
        &mut two,
    )
    .unwrap();
    assert!(two.fork(2).is_err(), "fork needs a one-row cache");
}

#[test]
fn hidden_and_all_logits_agree_with_decoding() {
    let (_dir, d) = tiny_llama();
    let dev = Device::Cpu;
    let ids = Tensor::new(&PROMPT, &dev).unwrap();
    let all = d.forward_all(&ids, None).unwrap();
    assert_eq!(all.dims(), &[2, 7, 128]);
    // Position t of a full pass equals the last position of a prefill of t+1 tokens.
    for t in [0usize, 3, 6] {
        let mut c = d.new_cache();
        let last = d
            .forward_last(&ids.narrow(1, 0, t + 1).unwrap(), &mut c)
            .unwrap();
        let diff = max_abs_diff(&all.i((.., t, ..)).unwrap(), &last);
        assert!(diff < 1e-4, "position {t}: {diff}");
    }
    let hidden = d.forward_hidden(&ids, None).unwrap();
    assert_eq!(hidden.dims(), &[2, 7, 64]);
    // Out-of-context and mismatched batches are errors.
    let mut c = d.new_cache();
    let long = Tensor::zeros((1, 129), DType::U32, &dev).unwrap();
    assert!(d.forward_last(&long, &mut c).is_err());
    d.forward_last(&Tensor::new(&[[1u32, 2]], &dev).unwrap(), &mut c)
        .unwrap();
    assert!(
        d.forward_last(&Tensor::new(&[[1u32], [2]], &dev).unwrap(), &mut c)
            .is_err()
    );
}

#[test]
fn quantised_weights_stay_close_to_dense() {
    let dir = tempfile::tempdir().unwrap();
    TinySpec::new(Family::Llama).write(dir.path()).unwrap();
    let dense = load_with(dir.path(), None);
    let q8 = load_with(dir.path(), Some(GgmlDType::Q8_0));
    let ids = Tensor::new(&PROMPT, &Device::Cpu).unwrap();
    let a = dense.forward_all(&ids, None).unwrap();
    let b = q8.forward_all(&ids, None).unwrap();
    let scale = a
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let diff = max_abs_diff(&a, &b);
    assert!(diff > 0.0, "q8_0 must actually quantise");
    // Random tiny weights make the drift vary from run to run (seen up to about 6% of the
    // largest logit); broken quantisation would be of the order of the logits themselves.
    assert!(
        diff < 0.1 * scale,
        "q8_0 logits drift {diff} (scale {scale})"
    );
}

#[test]
fn one_pass_over_several_caches_matches_each_alone() {
    for quant in [None, Some(GgmlDType::Q8_0)] {
        let (_dir, d) = tiny_llama_with(quant);
        let dev = Device::Cpu;
        // Three batches at different lengths and row counts: a diverged 4-row batch (7 + 3
        // tokens), a fresh 1-row prompt of 7, and a 2-row batch of 5 prompt tokens.
        let (a, _) = diverged_cache(&d);
        let mut b = d.new_cache();
        d.forward_last(&Tensor::new(&[PROMPT[1]], &dev).unwrap(), &mut b)
            .unwrap();
        let mut c = d.new_cache();
        d.forward_last(
            &Tensor::new(&[[3u32, 4, 5, 6, 7], [9, 8, 7, 6, 5]], &dev).unwrap(),
            &mut c,
        )
        .unwrap();
        let (mut alone, mut together) = ([a.clone(), b.clone(), c.clone()], [a, b, c]);
        for step in 0..4u32 {
            let ids: Vec<Tensor> = [4usize, 1, 2]
                .iter()
                .enumerate()
                .map(|(i, &rows)| {
                    let col: Vec<u32> = (0..rows as u32)
                        .map(|r| 7 * step + 3 * r + i as u32)
                        .collect();
                    Tensor::new(col.as_slice(), &dev)
                        .unwrap()
                        .unsqueeze(1)
                        .unwrap()
                })
                .collect();
            let expected: Vec<Tensor> = ids
                .iter()
                .zip(alone.iter_mut())
                .map(|(t, cache)| d.forward_last(t, cache).unwrap())
                .collect();
            let mut refs: Vec<&mut KvCache> = together.iter_mut().collect();
            let got = d.forward_last_many(&ids, &mut refs).unwrap();
            for (e, g) in expected.iter().zip(&got) {
                assert_eq!(e.dims(), g.dims());
                let diff = max_abs_diff(e, g);
                assert!(diff < 1e-5, "step {step} quant {quant:?}: diff {diff}");
            }
        }
        for (x, y) in alone.iter().zip(&together) {
            assert_eq!(x.len(), y.len());
            assert_eq!(x.batch_size(), y.batch_size());
        }
    }
    let (_dir, d) = tiny_llama();
    let mut cache = d.new_cache();
    let ids = [Tensor::new(&[[1u32]], &Device::Cpu).unwrap()];
    assert!(d.forward_last_many(&ids, &mut []).is_err());
    assert!(d.forward_last_many(&[], &mut [&mut cache]).is_err());
}
