//! The real SmolLM2-135M-Instruct GGUF (fetched by `scripts/fetch-models.sh`): loading,
//! tokenizer, chat template and a greedy answer.

use std::path::PathBuf;

use candle_core::{IndexOp, Tensor};
use thresh_models::{ChatMessage, LoadOptions, load};

fn smollm2_path() -> PathBuf {
    thresh_models::testing::smollm2_gguf()
}

#[test]
fn loads_tokenizes_templates_and_answers() {
    let m = load(smollm2_path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    check_model(&m);
}

#[test]
fn q8_0_weights_answer_too() {
    let opts = LoadOptions {
        quant: Some(thresh_models::GgmlDType::Q8_0),
        ..Default::default()
    };
    let m = load(smollm2_path().to_str().unwrap(), &opts).unwrap();
    check_model(&m);
}

fn check_model(m: &thresh_models::LoadedModel) {
    let cfg = m.decoder.config();
    assert_eq!(
        (
            cfg.num_layers,
            cfg.hidden_size,
            cfg.num_heads,
            cfg.num_kv_heads
        ),
        (30, 576, 9, 3)
    );
    assert!(cfg.tie_word_embeddings);

    // Tokenizer: round trip, digits one by one, special tokens atomic.
    let tok = &m.tokenizer;
    let text = "Hello world! The year 2024 has 366 days, naïve café.";
    let ids = tok.encode(text, false).unwrap();
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
    let digits = tok.encode("12345", false).unwrap();
    assert_eq!(digits.len(), 5, "digits must split one by one: {digits:?}");
    let pieces: Vec<String> = digits
        .iter()
        .map(|&d| tok.decode(&[d], false).unwrap())
        .collect();
    assert_eq!(pieces, ["1", "2", "3", "4", "5"]);
    let im_start = tok.token_to_id("<|im_start|>").unwrap();
    assert_eq!(tok.encode("<|im_start|>user", false).unwrap()[0], im_start);
    assert!(tok.is_eos(tok.token_to_id("<|im_end|>").unwrap()));

    // Chat template: SmolLM2's ChatML format with its default system prompt.
    let tmpl = m
        .chat_template
        .as_ref()
        .expect("GGUF carries a chat template");
    let prompt = tmpl
        .render(
            &[ChatMessage::new("user", "What is the capital of France?")],
            true,
        )
        .unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    );

    // Greedy decoding with the KV cache.
    let mut ids = tok.encode(&prompt, false).unwrap();
    let prompt_len = ids.len();
    let mut cache = m.decoder.new_cache();
    let dev = m.decoder.device().clone();
    let mut input = Tensor::new(ids.as_slice(), &dev)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    for _ in 0..24 {
        let logits = m.decoder.forward_last(&input, &mut cache).unwrap();
        let next = logits
            .i(0)
            .unwrap()
            .argmax(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        if tok.is_eos(next) {
            break;
        }
        ids.push(next);
        input = Tensor::new(&[[next]], &dev).unwrap();
    }
    let answer = tok.decode(&ids[prompt_len..], true).unwrap();
    assert!(answer.contains("Paris"), "answer: {answer:?}");
}

#[test]
fn hf_directory_reads_tokenizer_config_and_generation_config() {
    // A tiny random decoder with SmolLM2's real tokenizer, in Hugging Face layout.
    let gguf = load(smollm2_path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = thresh_models::testing::TinySpec::new(thresh_models::Family::Llama);
    spec.vocab_size = gguf.tokenizer.vocab_size();
    spec.tie_word_embeddings = true;
    spec.write(dir.path()).unwrap();
    gguf.tokenizer
        .inner()
        .unwrap()
        .save(dir.path().join("tokenizer.json"), false)
        .unwrap();
    let template = gguf.chat_template.as_ref().unwrap().source().to_string();
    let tc = serde_json::json!({
        "bos_token": {"content": "<|im_start|>", "lstrip": false},
        "eos_token": "<|im_end|>",
        "chat_template": template,
    });
    std::fs::write(dir.path().join("tokenizer_config.json"), tc.to_string()).unwrap();
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"eos_token_id": [2, 0]}"#,
    )
    .unwrap();

    let m = load(dir.path().to_str().unwrap(), &LoadOptions::default()).unwrap();
    // config.json names eos 2; generation_config adds 0; tokenizer_config's eos is id 2.
    assert_eq!(m.tokenizer.eos_ids(), &[0, 2]);
    assert_eq!(m.tokenizer.bos_token(), Some("<|im_start|>"));
    let text = "Numbers 42 and 7 stay digits.";
    let ids = m.tokenizer.encode(text, false).unwrap();
    assert_eq!(ids, gguf.tokenizer.encode(text, false).unwrap());
    assert_eq!(m.tokenizer.decode(&ids, false).unwrap(), text);
    let msgs = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hi"),
    ];
    assert_eq!(
        m.chat_template
            .as_ref()
            .unwrap()
            .render(&msgs, true)
            .unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    // The tiny decoder runs on the real vocabulary.
    let logits = m
        .decoder
        .forward_all(
            &Tensor::new(ids.as_slice(), m.decoder.device())
                .unwrap()
                .unsqueeze(0)
                .unwrap(),
            None,
        )
        .unwrap();
    assert_eq!(logits.dims(), &[1, ids.len(), spec.vocab_size]);
}
