//! Tokenizers: Hugging Face `tokenizer.json`, or rebuilt from GGUF `tokenizer.ggml.*` metadata.

use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use serde_json::json;

use crate::error::{ModelError, Result};

/// GGUF token type of control tokens (`<|im_start|>`, `<|endoftext|>`...).
const GGUF_TOKEN_CONTROL: i32 = 3;
/// GGUF token type of user-defined added tokens.
const GGUF_TOKEN_USER_DEFINED: i32 = 4;

/// The Llama 3 pre-tokenizer split pattern.
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The Qwen2 pre-tokenizer split pattern (digits one by one).
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokenizer that runs on another server (a policy server's `/tokenize` and
/// `/detokenize`), for a remote policy whose tokenizer files thresh does not have.
pub trait RemoteCodec: Send + Sync {
    /// Token ids of `text` (with `add_special_tokens`, what the model expects around plain
    /// text); special tokens written in `text` are read as such.
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>>;
    /// Text of `ids`, special tokens included.
    fn decode(&self, ids: &[u32]) -> Result<String>;
    /// Where it runs, for messages.
    fn describe(&self) -> String;
}

/// What does the tokenizing: a `tokenizers` tokenizer here, or a server.
// One per model, used on every call: boxing the local one would only add a hop.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Codec {
    Local(tokenizers::Tokenizer),
    Remote {
        codec: std::sync::Arc<dyn RemoteCodec>,
        /// The special ids it knows, sorted: left out of text decoded without them.
        special_ids: Vec<u32>,
        /// Its vocabulary's size, where the server says.
        vocab_size: Option<usize>,
    },
}

/// A tokenizer with the special tokens generation needs.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Codec,
    bos_token: Option<String>,
    eos_token: Option<String>,
    eos_ids: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let runs = match &self.inner {
            Codec::Local(_) => "here".to_string(),
            Codec::Remote { codec, .. } => codec.describe(),
        };
        f.debug_struct("Tokenizer")
            .field("runs", &runs)
            .field("vocab_size", &self.vocab_size())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("eos_ids", &self.eos_ids)
            .finish()
    }
}

fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

impl Tokenizer {
    /// Wraps a `tokenizers` tokenizer. `eos_ids` lists every id that ends generation.
    pub fn new(
        inner: tokenizers::Tokenizer,
        bos_token: Option<String>,
        eos_token: Option<String>,
        mut eos_ids: Vec<u32>,
    ) -> Self {
        if let Some(id) = eos_token.as_deref().and_then(|t| inner.token_to_id(t)) {
            eos_ids.push(id);
        }
        eos_ids.sort_unstable();
        eos_ids.dedup();
        Self {
            inner: Codec::Local(inner),
            bos_token,
            eos_token,
            eos_ids,
        }
    }

    /// Loads a Hugging Face `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<tokenizers::Tokenizer> {
        if !path.exists() {
            return Err(ModelError::MissingFile {
                path: path.to_path_buf(),
                what: "the tokenizer".into(),
            });
        }
        let bytes = std::fs::read(path).map_err(|e| ModelError::bad_file(path, e))?;
        Self::from_json(&bytes, path)
    }

    /// Parses the bytes of a Hugging Face `tokenizer.json` (`path` names it in errors): the
    /// byte-level entry point of [`Tokenizer::from_file`].
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<tokenizers::Tokenizer> {
        // tokenizers 0.23 panics (`expect("Helper")` in its decoder deserialiser) on any JSON
        // error inside the `decoder` object (bad syntax, invalid UTF-8, a lone surrogate
        // escape); parsing the whole file first makes that path unreachable, so a malformed
        // file is an error. (`IgnoredAny` would not do: it skips strings unchecked.)
        serde_json::from_slice::<serde_json::Value>(bytes)
            .map_err(|e| ModelError::bad_file(path, format!("not valid JSON: {e}")))?;
        let tokenizer =
            tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| ModelError::bad_file(path, e))?;
        // The check reads the post-processor tokenizers built, in its own serialisation: its
        // deserialiser is lenient (an unknown `type` tag can still yield a template), so the
        // file's JSON is not what runs.
        let built = serde_json::to_value(tokenizer.get_post_processor())
            .map_err(|e| ModelError::bad_file(path, format!("post_processor: {e}")))?;
        check_post_processor(&built)
            .map_err(|e| ModelError::bad_file(path, format!("post_processor: {e}")))?;
        Ok(tokenizer)
    }

    /// Rebuilds the tokenizer of a GGUF file from its `tokenizer.ggml.*` metadata.
    pub fn from_gguf(content: &Content, path: &Path) -> Result<Self> {
        let md = &content.metadata;
        let bad = |reason: String| ModelError::bad_file(path, reason);
        let model = gguf_str(md.get("tokenizer.ggml.model")).unwrap_or_default();
        if model != "gpt2" {
            return Err(bad(format!(
                "GGUF tokenizer model {model:?} is not supported (byte-level BPE, \"gpt2\", is); load the Hugging Face directory instead"
            )));
        }
        let tokens: Vec<String> = gguf_array(md.get("tokenizer.ggml.tokens"))
            .ok_or_else(|| bad("tokenizer.ggml.tokens missing".into()))?
            .iter()
            .map(|v| v.to_string().cloned().map_err(|e| bad(e.to_string())))
            .collect::<Result<_>>()?;
        let merges: Vec<String> = gguf_array(md.get("tokenizer.ggml.merges"))
            .ok_or_else(|| bad("tokenizer.ggml.merges missing".into()))?
            .iter()
            .map(|v| v.to_string().cloned().map_err(|e| bad(e.to_string())))
            .collect::<Result<_>>()?;
        let types: Vec<i32> = gguf_array(md.get("tokenizer.ggml.token_type"))
            .map(|a| a.iter().map(|v| v.to_i32().unwrap_or(1)).collect())
            .unwrap_or_default();
        let pre = gguf_str(md.get("tokenizer.ggml.pre")).unwrap_or_else(|| "default".into());
        let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
        let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
        let (normalizer, pre_tokenizer) = match pre.as_str() {
            "default" | "gpt2" | "gpt-2" => (json!(null), byte_level(true)),
            // SmolLM splits digits one by one before the GPT-2 byte-level regex.
            "smollm" => (
                json!(null),
                json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Digits", "individual_digits": true}, byte_level(true)]}),
            ),
            "llama-bpe" | "llama3" | "llama-v3" => (
                json!(null),
                json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_PATTERN), byte_level(false)]}),
            ),
            "qwen2" => (
                json!({"type": "NFC"}),
                json!({"type": "Sequence", "pretokenizers": [split(QWEN2_PATTERN), byte_level(false)]}),
            ),
            other => {
                return Err(bad(format!(
                    "GGUF pre-tokenizer {other:?} is not supported (default, gpt2, smollm, llama-bpe, qwen2)"
                )));
            }
        };
        let vocab: serde_json::Map<String, serde_json::Value> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect();
        let added: Vec<serde_json::Value> = tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let ty = types.get(i).copied().unwrap_or(1);
                (ty == GGUF_TOKEN_CONTROL || ty == GGUF_TOKEN_USER_DEFINED).then(|| {
                    json!({"id": i, "content": t, "single_word": false, "lstrip": false,
                           "rstrip": false, "normalized": ty != GGUF_TOKEN_CONTROL,
                           "special": ty == GGUF_TOKEN_CONTROL})
                })
            })
            .collect();
        let id = |key: &str| md.get(key).and_then(|v| v.to_u32().ok());
        let bos_id = id("tokenizer.ggml.bos_token_id");
        let eos_id = id("tokenizer.ggml.eos_token_id");
        let add_bos = md
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let bos_token = bos_id.and_then(|i| tokens.get(i as usize).cloned());
        let eos_token = eos_id.and_then(|i| tokens.get(i as usize).cloned());
        let post_processor = match (&bos_token, bos_id) {
            (Some(bos), Some(bid)) if add_bos => json!({
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos.clone(): {"id": bos, "ids": [bid], "tokens": [bos]}}
            }),
            _ => json!(null),
        };
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": normalizer,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": post_processor,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": false, "vocab": vocab, "merges": merges
            }
        });
        let inner: tokenizers::Tokenizer = spec
            .to_string()
            .parse()
            .map_err(|e| bad(format!("cannot rebuild tokenizer: {e}")))?;
        let mut eos = vec![];
        eos.extend(eos_id);
        // Chat models end turns with these; llama.cpp treats them as end-of-generation too.
        for t in [
            "<|im_end|>",
            "<|eot_id|>",
            "<|end_of_text|>",
            "<|endoftext|>",
        ] {
            if let Some(i) = inner.token_to_id(t)
                && types.get(i as usize) == Some(&GGUF_TOKEN_CONTROL)
                && (t != "<|endoftext|>" || eos_id == Some(i))
            {
                eos.push(i);
            }
        }
        let eot = id("tokenizer.ggml.eot_token_id");
        eos.extend(eot);
        Ok(Self::new(inner, bos_token, eos_token, eos))
    }

    /// A tokenizer whose encoding and decoding run on a server (`codec`). `bos_token` and
    /// `eos_token` are the texts of its special tokens, as the server tells; their ids, and
    /// those of `eos_ids` and `special_ids`, are left out of text decoded without special
    /// tokens; `eos_token`'s and `eos_ids` end generation.
    pub fn remote(
        codec: std::sync::Arc<dyn RemoteCodec>,
        bos_token: Option<String>,
        eos_token: Option<String>,
        mut eos_ids: Vec<u32>,
        mut special_ids: Vec<u32>,
        vocab_size: Option<usize>,
    ) -> Result<Self> {
        let single = |t: &str| -> Result<Option<u32>> {
            let ids = codec.encode(t, false)?;
            Ok((ids.len() == 1).then(|| ids[0]))
        };
        if let Some(id) = eos_token.as_deref().map(single).transpose()?.flatten() {
            eos_ids.push(id);
        }
        if let Some(id) = bos_token.as_deref().map(single).transpose()?.flatten() {
            special_ids.push(id);
        }
        eos_ids.sort_unstable();
        eos_ids.dedup();
        special_ids.extend_from_slice(&eos_ids);
        special_ids.sort_unstable();
        special_ids.dedup();
        Ok(Self {
            inner: Codec::Remote {
                codec,
                special_ids,
                vocab_size,
            },
            bos_token,
            eos_token,
            eos_ids,
        })
    }

    /// Token ids of `text`. With `add_special_tokens` the tokenizer's post-processor adds
    /// what the model expects around plain text (a BOS for Llama); rendered chat prompts
    /// already carry their special tokens and are encoded without.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        match &self.inner {
            Codec::Local(t) => Ok(t
                .encode(text, add_special_tokens)
                .map_err(tok_err)?
                .get_ids()
                .to_vec()),
            Codec::Remote { codec, .. } => codec.encode(text, add_special_tokens),
        }
    }

    /// Text of `ids`. A remote tokenizer leaves out, without special tokens, the special
    /// ids it was told of.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        match &self.inner {
            Codec::Local(t) => t.decode(ids, skip_special_tokens).map_err(tok_err),
            Codec::Remote {
                codec, special_ids, ..
            } => {
                if ids.is_empty() {
                    return Ok(String::new());
                }
                if !skip_special_tokens {
                    return codec.decode(ids);
                }
                let kept: Vec<u32> = ids
                    .iter()
                    .copied()
                    .filter(|i| special_ids.binary_search(i).is_err())
                    .collect();
                if kept.is_empty() {
                    return Ok(String::new());
                }
                codec.decode(&kept)
            }
        }
    }

    /// Id of a token's exact text, if it is in the vocabulary (remotely: if the server
    /// reads the text as one token).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match &self.inner {
            Codec::Local(t) => t.token_to_id(token),
            Codec::Remote { codec, .. } => codec
                .encode(token, false)
                .ok()
                .filter(|ids| ids.len() == 1)
                .map(|ids| ids[0]),
        }
    }

    /// Number of ids, added tokens included (0 for a remote tokenizer whose server does not
    /// say).
    pub fn vocab_size(&self) -> usize {
        match &self.inner {
            Codec::Local(t) => t.get_vocab_size(true),
            Codec::Remote { vocab_size, .. } => vocab_size.unwrap_or(0),
        }
    }

    /// Every id that ends generation.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Whether `id` ends generation.
    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.binary_search(&id).is_ok()
    }

    /// Text of the beginning-of-sequence token, if any.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// Text of the end-of-sequence token, if any.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The special tokens it knows, by id, with their text: a local tokenizer's special added
    /// tokens; a remote one's that the server told of.
    pub fn special_tokens(&self) -> Result<Vec<(u32, String)>> {
        let mut all: Vec<(u32, String)> = match &self.inner {
            Codec::Local(t) => t
                .get_added_tokens_decoder()
                .into_iter()
                .filter(|(_, a)| a.special)
                .map(|(id, a)| (id, a.content))
                .collect(),
            Codec::Remote {
                codec, special_ids, ..
            } => special_ids
                .iter()
                .map(|&id| Ok((id, codec.decode(&[id])?)))
                .collect::<Result<_>>()?,
        };
        all.sort_unstable_by_key(|(id, _)| *id);
        Ok(all)
    }

    /// Whether encoding and decoding run on a server.
    pub fn is_remote(&self) -> bool {
        matches!(self.inner, Codec::Remote { .. })
    }

    /// The underlying `tokenizers` tokenizer, with its vocabulary; none for a remote one.
    pub fn inner(&self) -> Option<&tokenizers::Tokenizer> {
        match &self.inner {
            Codec::Local(t) => Some(t),
            Codec::Remote { .. } => None,
        }
    }
}

/// Checks what tokenizers' `TemplateProcessing` builder checks and its deserialiser does not
/// (tokenizers 0.23 panics at encode time otherwise): every special token a template names is
/// defined, each definition has as many ids as tokens, and the single-sequence template uses
/// sequence `A` only. `Sequence` post-processors are checked member by member.
fn check_post_processor(v: &serde_json::Value) -> std::result::Result<(), String> {
    match v["type"].as_str() {
        Some("Sequence") => v["processors"]
            .as_array()
            .map_or(Ok(()), |ps| ps.iter().try_for_each(check_post_processor)),
        Some("TemplateProcessing") => {
            let specials = v["special_tokens"].as_object();
            for (name, token) in specials.into_iter().flatten() {
                let ids = token["ids"].as_array().map_or(0, Vec::len);
                let tokens = token["tokens"].as_array().map_or(0, Vec::len);
                if ids != tokens {
                    return Err(format!(
                        "special token {name:?} has {ids} ids but {tokens} tokens"
                    ));
                }
            }
            for which in ["single", "pair"] {
                for piece in v[which].as_array().into_iter().flatten() {
                    if let Some(id) = piece["SpecialToken"]["id"].as_str()
                        && !specials.is_some_and(|m| m.contains_key(id))
                    {
                        return Err(format!(
                            "the {which} template names special token {id:?}, which special_tokens does not define"
                        ));
                    }
                    if which == "single" && piece["Sequence"]["id"].as_str() == Some("B") {
                        return Err("the single template uses sequence B".into());
                    }
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

pub(crate) fn gguf_str(v: Option<&Value>) -> Option<String> {
    v.and_then(|v| v.to_string().ok()).cloned()
}

fn gguf_array(v: Option<&Value>) -> Option<&Vec<Value>> {
    v.and_then(|v| v.to_vec().ok())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::Tokenizer;

    /// Found by `fuzz/fuzz_targets/tokenizer.rs`: a syntax error inside `decoder` panicked in
    /// tokenizers' decoder deserialiser ("Helper: key must be a string").
    #[test]
    fn a_syntax_error_in_the_decoder_is_an_error_not_a_panic() {
        let json = r#"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": null, "post_processor": null,
            "decoder": {!type": "Metaspace", "replacement": "x", "prepend_scheme": "always", "split": true},
            "model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}}"#;
        let err = Tokenizer::from_json(json.as_bytes(), Path::new("tokenizer.json")).unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        // Invalid UTF-8 and a lone surrogate inside the decoder panicked the same way.
        let bad_utf8 = json.replace("{!type", "{\"type").into_bytes();
        let at = bad_utf8.windows(7).position(|w| w == b"prepend").unwrap();
        let mut bad_utf8 = bad_utf8;
        bad_utf8[at + 1] = 0x9e;
        let surrogate = json
            .replace("{!type", "{\"type")
            .replace("\"x\"", "\"\\ud800\"");
        for bytes in [&bad_utf8[..], surrogate.as_bytes()] {
            let err = Tokenizer::from_json(bytes, Path::new("tokenizer.json")).unwrap_err();
            assert!(err.to_string().contains("not valid JSON"), "{err}");
        }
        let fixed = json.replace("{!type", "{\"type");
        // Found next: a template naming an undefined special token panicked at encode time
        // ("no entry found for key"); so would ids and tokens of different lengths, and
        // sequence B in the single template.
        let template = |single: &str, specials: &str| {
            fixed.replace(
                "\"post_processor\": null",
                &format!(
                    r#""post_processor": {{"type": "Sequence", "processors": [{{"type": "TemplateProcessing",
                    "single": {single}, "pair": [{{"Sequence": {{"id": "A", "type_id": 0}}}},
                    {{"Sequence": {{"id": "B", "type_id": 1}}}}], "special_tokens": {specials}}}]}}"#
                ),
            )
        };
        let cls = r#"{"SpecialToken": {"id": "[CLS]", "type_id": 0}}"#;
        let a = r#"{"Sequence": {"id": "A", "type_id": 0}}"#;
        let b = r#"{"Sequence": {"id": "B", "type_id": 0}}"#;
        let defined = r#"{"[CLS]": {"id": "[CLS]", "ids": [0], "tokens": ["a"]}}"#;
        for (single, specials, what) in [
            (format!("[{cls}, {a}]"), "{}", "does not define"),
            (
                format!("[{cls}, {a}]"),
                r#"{"[CLS]": {"id": "[CLS]", "ids": [0, 0], "tokens": ["a"]}}"#,
                "2 ids but 1 tokens",
            ),
            (format!("[{a}, {b}]"), defined, "sequence B"),
        ] {
            let json = template(&single, specials);
            let err = Tokenizer::from_json(json.as_bytes(), Path::new("t.json")).unwrap_err();
            assert!(err.to_string().contains(what), "{err}");
        }
        // Found next: with a misspelt `type` tag the file's template escaped the check but
        // tokenizers still built it (and panicked at encode time); the check reads what was built.
        let misspelt = template(&format!("[{cls}, {a}]"), "{}")
            .replace("\"TemplateProcessing\"", "\"TemplatePro+++cessing\"");
        let err = Tokenizer::from_json(misspelt.as_bytes(), Path::new("t.json")).unwrap_err();
        assert!(err.to_string().contains("does not define"), "{err}");
        let good = template(&format!("[{cls}, {a}]"), defined);
        let tok = Tokenizer::from_json(good.as_bytes(), Path::new("t.json")).unwrap();
        assert_eq!(tok.encode("a", true).unwrap().get_ids(), [0, 0]);
        assert!(Tokenizer::from_json(fixed.as_bytes(), Path::new("tokenizer.json")).is_ok());
    }
}
