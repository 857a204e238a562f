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
                let alternatives: Vec<String> = options
                    .iter()
                    .map(|o| serde_json::Value::String(o.clone()).to_string())
                    .collect();
                TopLevelGrammar::from_lark(format!("start: {}", alternatives.join(" | ")))
            }
        })
    }
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
