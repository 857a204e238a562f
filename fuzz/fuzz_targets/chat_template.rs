//! Chat templates: the first byte picks how the rest is read. Even: the text of a template,
//! compiled and rendered. Odd: a `tokenizer_config.json` beside a byte tokenizer, through
//! thresh's Hugging Face tokenizer loading (special tokens, template lists), then rendered.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use thresh_models::{ChatMessage, ChatTemplate, HfTokenizerTexts, hf_tokenizer_from_texts};

fn tokenizer_json() -> &'static [u8] {
    static JSON: OnceLock<Vec<u8>> = OnceLock::new();
    JSON.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("thresh-fuzz-chat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        thresh_models::testing::write_byte_tokenizer(&dir).expect("tokenizer");
        let json = std::fs::read(dir.join("tokenizer.json")).expect("tokenizer.json");
        let _ = std::fs::remove_dir_all(&dir);
        json
    })
}

fn render(t: &ChatTemplate) {
    let msgs = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hi {{ there }}"),
        ChatMessage::new("assistant", "Hello."),
        ChatMessage::new("user", "Why?"),
    ];
    let _ = t.render(&msgs, true);
    let _ = t.render(&msgs[1..2], false);
    let _ = t.render(&[], true);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    if mode % 2 == 0 {
        if let Ok(t) = ChatTemplate::new(&text, "<s>", "</s>") {
            render(&t);
        }
    } else {
        let texts = HfTokenizerTexts {
            tokenizer_json: tokenizer_json(),
            tokenizer_config: Some(&text),
            generation_config: None,
            chat_template_jinja: Some("{{ messages[0]['content'] }}"),
        };
        if let Ok((_, Some(t))) = hf_tokenizer_from_texts(&texts, &[1], Path::new("fuzz")) {
            render(&t);
        }
    }
});
