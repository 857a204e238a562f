//! A raw JSON body through the server's parsing and validation on every route, and, for a
//! generation request that validates, tokenisation against a tiny byte-level model.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use thresh_server::serve::fuzzing;
use thresh_server::serve::validation::model_info::ModelInfo;
use thresh_server::serve::validation::{Limits, TokenLimits};

const LIMITS: Limits = Limits {
    max_n: 16,
    kv_budget_tokens: 65536,
    score_plain: false,
    tokens: TokenLimits {
        max_input_tokens: None,
        max_tokens_limit: None,
        default_chat_max_tokens: 512,
        default_completion_max_tokens: 16,
    },
};

fn info() -> &'static ModelInfo {
    static INFO: OnceLock<ModelInfo> = OnceLock::new();
    INFO.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("thresh-fuzz-request-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        thresh_models::testing::write_byte_tokenizer(&dir).expect("byte tokenizer");
        let (tokenizer, chat_template) =
            thresh_models::loader::load_hf_tokenizer(&dir, &[]).expect("byte tokenizer loads");
        let _ = std::fs::remove_dir_all(&dir);
        ModelInfo {
            id: "tiny".into(),
            reward_id: "tiny-rm".into(),
            aligner_id: Some("tiny-aligner".into()),
            aligner_context: Some(2048),
            aligner_template: None,
            vocab_size: Some(tokenizer.vocab_size()),
            tokenizer,
            chat_template,
            context: 2048,
            remote_policy: false,
            constraints: Default::default(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::request(data, LIMITS, Some(info()), 2048);
});
