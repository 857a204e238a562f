//! Constrained decoding: a grammar (a JSON schema, a regular expression or a Lark grammar)
//! compiled once per request by [llguidance](https://github.com/guidance-ai/llguidance), then a
//! token mask per row and step, applied to the logits before sampling.
//!
//! The compiled grammar travels in [`SamplingParams::constraint`](crate::SamplingParams), so
//! every strategy that samples rows samples them valid by construction. Each row's
//! [`Sampler`](crate::Sampler) holds its own matcher state (a clone of the request's), which
//! stays with the row through pruning (`retain_rows`) and continuous batching, since the row,
//! not the cache slot, owns it.

use std::fmt;
use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::earley::SlicedBiasComputer;
use llguidance::toktrie::{
    ApproximateTokEnv, InferenceCapabilities, SimpleVob, TokRxInfo, TokTrie,
};
use llguidance::{Matcher, ParserFactory};
use thresh_models::Tokenizer;

use crate::error::{DecodeError, Result};

/// What the output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// A JSON value valid against this JSON schema (`{"type": "object"}` for OpenAI's
    /// `json_object` mode).
    JsonSchema(serde_json::Value),
    /// Text matching this regular expression, whole.
    Regex(String),
    /// Text in this Lark grammar (llguidance's dialect, which also takes `%json` rules).
    Lark(String),
    /// Exactly one of these strings.
    Choice(Vec<String>),
}

impl Grammar {
    fn top_level(&self) -> Result<TopLevelGrammar> {
        Ok(match self {
            Grammar::JsonSchema(schema) => TopLevelGrammar::from_json_schema(compact(schema)),
            Grammar::Regex(rx) => TopLevelGrammar::from_regex(rx),
            Grammar::Lark(lark) => TopLevelGrammar::from_lark(lark.clone()),
            Grammar::Choice(options) => {
                if options.is_empty() {
                    return Err(DecodeError::InvalidGrammar(
                        "a choice needs at least one option".into(),
                    ));
                }
                let alternatives: Vec<String> = options.iter().map(|o| literal(o)).collect();
                TopLevelGrammar::from_regex(&alternatives.join("|"))
            }
        })
    }
}

/// `text` as a regular expression matching exactly it: letters, digits and spaces as they are,
/// every other character as its code point (`\x{..}`), so no string needs quoting rules.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('(');
    for c in text.chars() {
        if c.is_alphanumeric() || c == ' ' {
            out.push(c);
        } else {
            out.push_str(&format!("\\x{{{:x}}}", c as u32));
        }
    }
    out.push(')');
    out
}

/// `schema` with llguidance's options for compact JSON (`", "` and `": "` between items and
/// keys, no other whitespace) unless it sets its own under `x-guidance`. Free whitespace lets
/// a small model fill its whole budget with blank lines inside an object.
fn compact(schema: &serde_json::Value) -> serde_json::Value {
    let mut schema = schema.clone();
    if let Some(obj) = schema.as_object_mut()
        && !obj.contains_key("x-guidance")
    {
        let options = llguidance::JsonCompileOptions {
            item_separator: ", ".into(),
            key_separator: ": ".into(),
            whitespace_flexible: false,
            ..Default::default()
        };
        if let Ok(v) = serde_json::to_value(&options) {
            obj.insert("x-guidance".into(), v);
        }
    }
    schema
}

/// Compiles grammars against one tokenizer's vocabulary. Built once per policy (the token
/// trie of a 50k vocabulary takes tens of milliseconds), shared by every request.
pub struct ConstraintCompiler {
    factory: ParserFactory,
}

impl fmt::Debug for ConstraintCompiler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConstraintCompiler")
            .field(
                "vocab_size",
                &self.factory.tok_env().tok_trie().vocab_size(),
            )
            .finish()
    }
}

impl ConstraintCompiler {
    /// A compiler for `tokenizer`'s vocabulary (byte-level BPE, as GPT-2, Llama 3 and SmolLM
    /// use, or SentencePiece with byte fallback); its first EOS id ends a constrained row.
    pub fn new(tokenizer: &Tokenizer) -> Result<Self> {
        let unsupported = |why: String| {
            DecodeError::InvalidGrammar(format!(
                "constrained decoding needs the token bytes of this tokenizer, which thresh could not read: {why}"
            ))
        };
        let json = tokenizer
            .inner()
            .ok_or_else(|| unsupported("the tokenizer runs on the policy's server, which does not hand over its vocabulary".into()))?
            .to_string(false)
            .map_err(|e| unsupported(e.to_string()))?;
        let json: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| unsupported(e.to_string()))?;
        // llguidance asserts on vocabularies it does not expect; keep that a clean error.
        let words = std::panic::catch_unwind(|| llguidance::token_bytes_from_tokenizer_json(&json))
            .map_err(|_| unsupported("unexpected vocabulary".into()))?
            .map_err(|e| unsupported(e.to_string()))?;
        let eos = tokenizer
            .eos_ids()
            .first()
            .copied()
            .ok_or_else(|| unsupported("the tokenizer has no end-of-sequence token".into()))?;
        let vocab_size = words
            .len()
            .max(tokenizer.vocab_size())
            .max(eos as usize + 1);
        let mut words = words;
        words.resize(vocab_size, Vec::new());
        let trie = TokTrie::from(&TokRxInfo::new(vocab_size as u32, eos), &words);
        let env: llguidance::toktrie::TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory = ParserFactory::new(
            &env,
            InferenceCapabilities::default(),
            &SlicedBiasComputer::general_slices(),
        )
        .map_err(|e| unsupported(e.to_string()))?;
        factory.quiet();
        Ok(Self { factory })
    }

    /// Compiles `grammar`; an invalid schema, regex or grammar is
    /// [`DecodeError::InvalidGrammar`] with llguidance's reason.
    pub fn compile(&self, grammar: &Grammar) -> Result<Constraint> {
        let parser = self
            .factory
            .create_parser(grammar.top_level()?)
            .map_err(|e| DecodeError::InvalidGrammar(e.to_string()))?;
        let mut matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(DecodeError::InvalidGrammar(e));
        }
        // A grammar that admits nothing at all fails here rather than in the first step.
        matcher
            .compute_mask()
            .map_err(|e| DecodeError::InvalidGrammar(e.to_string()))?;
        Ok(Constraint {
            matcher: Arc::new(matcher),
            grammar: Arc::new(grammar.clone()),
        })
    }
}

/// A compiled grammar, ready to be cloned into each row. Cheap to clone.
#[derive(Clone)]
pub struct Constraint {
    matcher: Arc<Matcher>,
    grammar: Arc<Grammar>,
}

impl Constraint {
    /// The grammar it was compiled from.
    pub fn grammar(&self) -> &Grammar {
        &self.grammar
    }

    /// Whether `tokens`, from the start of an output, are a whole output of the grammar (a
    /// text written elsewhere, such as an aligner's correction, tokenised by the policy's
    /// tokenizer).
    pub fn accepts(&self, tokens: &[u32]) -> bool {
        let mut m = (*self.matcher).clone();
        match m.validate_tokens(tokens) {
            Ok(n) if n == tokens.len() => {}
            _ => return false,
        }
        m.consume_tokens(tokens).is_ok() && (m.is_stopped() || m.is_accepting().unwrap_or(false))
    }

    /// A fresh per-row state at the start of the output.
    pub fn start(&self) -> RowConstraint {
        RowConstraint {
            matcher: (*self.matcher).clone(),
        }
    }
}

impl fmt::Debug for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Constraint").field(&self.grammar).finish()
    }
}

impl PartialEq for Constraint {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.matcher, &other.matcher) || self.grammar == other.grammar
    }
}

/// One row's place in the grammar.
#[derive(Clone)]
pub struct RowConstraint {
    matcher: Matcher,
}

impl fmt::Debug for RowConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowConstraint")
            .field("stopped", &self.matcher.is_stopped())
            .finish()
    }
}

impl RowConstraint {
    /// Sets every logit the grammar does not allow next to minus infinity (EOS stays only
    /// where the output may end). Returns whether any token other than those in `eos` stays
    /// allowed. A row whose matcher failed allows EOS alone.
    pub fn mask(&mut self, logits: &mut [f32], eos: &[u32]) -> bool {
        let mask = match self.matcher.compute_mask_or_eos() {
            Ok(m) => m,
            Err(_) => {
                for (i, l) in logits.iter_mut().enumerate() {
                    if !eos.contains(&(i as u32)) {
                        *l = f32::NEG_INFINITY;
                    }
                }
                return false;
            }
        };
        apply(&mask, logits);
        let mut other = false;
        mask.iter_set_entries(|t| other |= !eos.contains(&(t as u32)) && t < logits.len());
        other
    }

    /// Advances past `token` (already sampled under [`RowConstraint::mask`]).
    pub fn consume(&mut self, token: u32) {
        // A token the mask allowed is always accepted; a failure leaves the matcher stopped,
        // which ends the row.
        let _ = self.matcher.consume_token(token);
    }

    /// Whether the grammar is complete and nothing more may follow (the row ends here).
    pub fn is_done(&self) -> bool {
        self.matcher.is_stopped()
    }
}

/// Minus infinity on every logit whose bit in `mask` is clear.
fn apply(mask: &SimpleVob, logits: &mut [f32]) {
    let words = mask.as_slice();
    for (w, chunk) in logits.chunks_mut(32).enumerate() {
        let bits = words.get(w).copied().unwrap_or(0);
        if bits == u32::MAX {
            continue;
        }
        for (b, l) in chunk.iter_mut().enumerate() {
            if bits & (1 << b) == 0 {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-level test tokenizer: one token per byte, EOS `<|im_end|>` (257).
    fn byte_tokenizer() -> Tokenizer {
        let dir = tempfile::tempdir().unwrap();
        thresh_models::testing::write_byte_tokenizer(dir.path()).unwrap();
        let inner = Tokenizer::from_file(&dir.path().join("tokenizer.json")).unwrap();
        Tokenizer::new(inner, None, Some("<|im_end|>".into()), vec![])
    }

    /// Walks a row through `text` byte by byte; every byte must be allowed when it comes.
    fn accepts(c: &Constraint, text: &str) -> bool {
        let mut row = c.start();
        for b in text.bytes() {
            let mut logits = vec![0.0f32; 258];
            row.mask(&mut logits, &[257]);
            if logits[b as usize] == f32::NEG_INFINITY {
                return false;
            }
            row.consume(b as u32);
        }
        let mut logits = vec![0.0f32; 258];
        row.mask(&mut logits, &[257]);
        logits[257] == 0.0 || row.is_done()
    }

    #[test]
    fn choices_of_any_characters_compile_and_admit_exactly_their_options() {
        let compiler = ConstraintCompiler::new(&byte_tokenizer()).unwrap();
        let options: Vec<String> = ["a\"b", "x|y", "(.*)", "tab\there", "ü", "yes"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let c = compiler.compile(&Grammar::Choice(options.clone())).unwrap();
        for o in &options {
            assert!(accepts(&c, o), "{o:?} refused");
        }
        for o in ["a", "xy", "(", "ye", "yess", "x|yy"] {
            assert!(!accepts(&c, o), "{o:?} accepted");
        }
    }

    #[test]
    fn whole_outputs_are_accepted_and_others_not() {
        let compiler = ConstraintCompiler::new(&byte_tokenizer()).unwrap();
        let c = compiler
            .compile(&Grammar::Regex("[0-9]{2}-[a-z]+".into()))
            .unwrap();
        let ids = |s: &str| s.bytes().map(u32::from).collect::<Vec<u32>>();
        assert!(c.accepts(&ids("12-abc")));
        assert!(!c.accepts(&ids("12-")), "a prefix is not a whole output");
        assert!(!c.accepts(&ids("1x-abc")));
        assert!(!c.accepts(&ids("12-abc9")));
    }

    #[test]
    fn json_schemas_are_compact_unless_they_say_otherwise() {
        let compiler = ConstraintCompiler::new(&byte_tokenizer()).unwrap();
        let schema = serde_json::json!({"type": "object", "properties": {"a": {"type": "integer"}},
                                        "required": ["a"], "additionalProperties": false});
        let c = compiler
            .compile(&Grammar::JsonSchema(schema.clone()))
            .unwrap();
        assert!(accepts(&c, r#"{"a": 12}"#));
        assert!(!accepts(&c, "{\n  \"a\": 12}"));
        let mut free = schema;
        free["x-guidance"] = serde_json::json!({"whitespace_flexible": true});
        let c = compiler.compile(&Grammar::JsonSchema(free)).unwrap();
        assert!(accepts(&c, "{\n  \"a\": 12}"));
    }
}
