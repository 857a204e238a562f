//! The corrector: renders (question, answer) through the Aligner template and generates the
//! correction, on the local runtime or on a remote OpenAI-compatible server that runs the
//! Aligner (token-id prompt and answer, as a remote policy is driven).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use thresh_decoding::remote::{RemoteBatch, RemotePolicy};
use thresh_decoding::strategy::RowBatch;
use thresh_decoding::{BatchStats, DecodeBatch, FinishReason, Row, SamplingParams, StopConditions};
use thresh_models::{LoadedModel, Tokenizer};
use thresh_reward::Prompt;

use crate::error::{AlignerError, Result};
use crate::template::AlignerTemplate;

/// One pair to correct.
#[derive(Debug, Clone)]
pub struct CorrectionInput {
    /// The question, as text or as a conversation (its last user turn is the question, the
    /// turns before it are kept as context lines).
    pub question: Prompt,
    /// The upstream answer, from any model.
    pub answer: String,
}

impl CorrectionInput {
    /// A pair from plain text.
    pub fn new(question: impl Into<String>, answer: impl Into<String>) -> Self {
        Self {
            question: Prompt::Text(question.into()),
            answer: answer.into(),
        }
    }

    /// The question as the template's `{question}` text.
    pub fn question_text(&self) -> String {
        match &self.question {
            Prompt::Text(t) => t.clone(),
            Prompt::Messages(m) if m.len() == 1 => m[0].content.clone(),
            Prompt::Messages(m) => m
                .iter()
                .map(|m| format!("{}: {}", m.role, m.content))
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// A corrected answer.
#[derive(Debug, Clone)]
pub struct Correction {
    /// The corrected text, without the leading whitespace the template leaves.
    pub text: String,
    /// Tokens of the rendered prompt.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Why generation stopped.
    pub finish: FinishReason,
    /// Counters and timings of the generation.
    pub stats: BatchStats,
}

/// Where the Aligner runs.
enum Runtime {
    /// Loaded here.
    Local(Arc<LoadedModel>),
    /// On a server, with its tokenizer here.
    Remote(Box<Remote>),
}

/// An Aligner on a server.
struct Remote {
    client: Arc<RemotePolicy>,
    tokenizer: Tokenizer,
    context: usize,
}

/// An Aligner corrector: a causal LM plus its prompt template.
pub struct Corrector {
    runtime: Runtime,
    template: AlignerTemplate,
}

impl Corrector {
    /// A corrector from a loaded model and a template.
    pub fn new(model: Arc<LoadedModel>, template: AlignerTemplate) -> Self {
        Self {
            runtime: Runtime::Local(model),
            template,
        }
    }

    /// A corrector whose model runs on the server `client` drives (checked with
    /// [`RemotePolicy::check_fleet`] beforehand), with the model's `tokenizer` and the
    /// `context` the server allows.
    pub fn remote(
        client: Arc<RemotePolicy>,
        tokenizer: Tokenizer,
        context: usize,
        template: AlignerTemplate,
    ) -> Self {
        Self {
            runtime: Runtime::Remote(Box::new(Remote {
                client,
                tokenizer,
                context,
            })),
            template,
        }
    }

    /// The template in use.
    pub fn template(&self) -> &AlignerTemplate {
        &self.template
    }

    /// The model's context, in tokens.
    pub fn context(&self) -> usize {
        match &self.runtime {
            Runtime::Local(m) => m.decoder.config().max_position_embeddings,
            Runtime::Remote(r) => r.context,
        }
    }

    /// The model, where it is loaded here (`None` for a remote one).
    pub fn model(&self) -> Option<&LoadedModel> {
        match &self.runtime {
            Runtime::Local(m) => Some(m),
            Runtime::Remote(_) => None,
        }
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        match &self.runtime {
            Runtime::Local(m) => &m.tokenizer,
            Runtime::Remote(r) => &r.tokenizer,
        }
    }

    /// Renders and tokenises one pair, checking it against the model's context.
    pub fn prompt_ids(&self, input: &CorrectionInput, max_tokens: usize) -> Result<Vec<u32>> {
        let question = input.question_text();
        if question.trim().is_empty() {
            return Err(AlignerError::InvalidInput(
                "question must not be empty".into(),
            ));
        }
        if input.answer.trim().is_empty() {
            return Err(AlignerError::InvalidInput(
                "answer must not be empty".into(),
            ));
        }
        let text = self.template.render(&question, &input.answer);
        let ids = self.tokenizer().encode(&text, true)?;
        let context = self.context();
        if ids.len() + max_tokens > context {
            return Err(AlignerError::InvalidInput(format!(
                "question and answer take {} tokens; with max_tokens {max_tokens} that exceeds the \
                 corrector's context of {context} tokens",
                ids.len()
            )));
        }
        Ok(ids)
    }

    /// Corrects each pair (one decode batch per pair, since their prompts differ). All inputs
    /// are validated before any generation starts. `cancel` stops generation at the next step.
    pub fn correct(
        &self,
        inputs: &[CorrectionInput],
        sampling: &SamplingParams,
        stop: &StopConditions,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Result<Vec<Correction>> {
        if inputs.is_empty() {
            return Err(AlignerError::InvalidInput(
                "at least one question/answer pair is needed".into(),
            ));
        }
        let prompts = inputs
            .iter()
            .map(|i| self.prompt_ids(i, stop.max_tokens))
            .collect::<Result<Vec<_>>>()?;
        let mut out = Vec::with_capacity(inputs.len());
        for ids in prompts {
            let (rows, stats) = self.generate(&ids, sampling, stop, cancel.clone())?;
            let row = rows.into_iter().next().ok_or_else(|| {
                AlignerError::InvalidInput("the corrector produced no output".into())
            })?;
            out.push(Correction {
                text: row.text.trim_start().to_string(),
                prompt_tokens: ids.len(),
                completion_tokens: row.tokens.len(),
                finish: row.finish.unwrap_or(FinishReason::Length),
                stats,
            });
        }
        Ok(out)
    }

    /// One continuation of `ids`, here or on the server.
    fn generate(
        &self,
        ids: &[u32],
        sampling: &SamplingParams,
        stop: &StopConditions,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Result<(Vec<Row>, BatchStats)> {
        match &self.runtime {
            Runtime::Local(m) => {
                let mut batch = DecodeBatch::new(&m.decoder, &m.tokenizer, ids, 1, sampling, stop)?;
                if let Some(flag) = cancel {
                    batch.set_cancel_flag(flag);
                }
                batch.run_to_end()?;
                Ok(batch.into_parts())
            }
            Runtime::Remote(r) => {
                let mut batch =
                    RemoteBatch::new(&r.client, &r.tokenizer, ids, 1, sampling, stop, cancel)?;
                batch.advance(None)?;
                Ok(batch.finish())
            }
        }
    }
}
