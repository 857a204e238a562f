//! The raw OpenAI request bodies as clients send them (every field optional), before
//! [`validation`](crate::serve::validation) turns them into typed requests. A field the
//! completion routes do not implement is kept in [`GenerationBody::other`] so that validation
//! can name it in a 400 instead of dropping it; `/v1/rewards` and `/correct` reject unknown
//! fields while parsing.

use serde::Deserialize;
use utoipa::ToSchema;

/// `prompt` of `/v1/completions`: text, a one-element list of texts, or token ids.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PromptInput {
    /// A text prompt.
    Text(String),
    /// Token ids.
    #[schema(value_type = Vec<u32>)]
    Ids(Vec<super::integers::TokenId>),
    /// A list of text prompts (only one is supported).
    Texts(Vec<String>),
}

/// `content` of a chat message: text or a list of parts.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts; only `{"type": "text", "text": ...}` is supported.
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ContentPart {
    /// The part's type (`text`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    pub text: Option<String>,
}

/// A chat message as sent.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct RawMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The content (null is read as empty).
    pub content: Option<MessageContent>,
    /// An assistant turn's tool calls (shown to the model in the form it calls tools in).
    pub tool_calls: Option<Vec<RawToolCall>>,
    /// A `tool` turn: the call it answers (accepted; the order of the turns carries it).
    pub tool_call_id: Option<String>,
    /// The author's name (accepted and ignored).
    pub name: Option<String>,
}

/// A tool call of an earlier assistant turn, as OpenAI returned it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct RawToolCall {
    /// The call's id.
    pub id: Option<String>,
    /// `function`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The function called.
    pub function: RawFunctionCall,
}

/// The function of a [`RawToolCall`].
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct RawFunctionCall {
    /// The function's name.
    pub name: String,
    /// Its arguments, as a JSON text.
    pub arguments: String,
}

/// One entry of `tools`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolInput {
    /// `function`, the only kind.
    #[serde(rename = "type")]
    pub kind: ToolKind,
    /// The function.
    pub function: FunctionInput,
}

/// The kinds of tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolKind {
    /// A function the model may call.
    Function,
}

/// A function the model may call.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionInput {
    /// Its name: letters, digits, `_` and `-`, at most 64.
    pub name: String,
    /// What it does (shown to the model).
    pub description: Option<String>,
    /// A JSON schema of its arguments (an object); absent: any object.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<serde_json::Value>,
    /// OpenAI's strict mode; the arguments always follow `parameters` here.
    pub strict: Option<bool>,
}

/// `tool_choice`: `none`, `auto`, `required`, or one named function.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ToolChoiceInput {
    /// `none`, `auto` or `required`.
    Mode(String),
    /// `{"type": "function", "function": {"name": ...}}`.
    Named(NamedToolChoice),
}

/// A `tool_choice` that names a function.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NamedToolChoice {
    /// `function`.
    #[serde(rename = "type")]
    pub kind: ToolKind,
    /// The function to call.
    pub function: NamedFunction,
}

/// The name in a [`NamedToolChoice`].
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NamedFunction {
    /// A function of `tools`.
    pub name: String,
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StopInput {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with the token usage.
    pub include_usage: Option<bool>,
}

/// The `alignment` extension object.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlignmentInput {
    /// `none`, `best_of_n`, `speculative_rejection`, `soft_best_of_n` or `rejection_sampling`.
    pub strategy: Option<String>,
    /// Candidates sampled (Speculative Rejection: the initial batch; rejection sampling: per
    /// batch): at most the server's `--max-n`, and at least the request's `n` under an aligned
    /// strategy. Given without `strategy`, it means `best_of_n`.
    #[serde(default, deserialize_with = "super::integers::optional")]
    pub candidates: Option<u64>,
    /// Speculative Rejection: fraction rejected at each decision, in [0, 1) (default 0.5),
    /// or `"auto"` to decide at each decision from the scores.
    pub alpha: Option<AlphaInput>,
    /// Soft Best-of-N: temperature of the reward softmax, > 0.
    pub lambda: Option<f64>,
    /// Rejection sampling: the reward to reach.
    pub threshold: Option<f64>,
    /// Rejection sampling: batches drawn at most.
    #[serde(default, deserialize_with = "super::integers::optional")]
    pub max_tries: Option<u64>,
    /// Speculative Rejection: the request's KV budget in tokens (capped by the server's);
    /// decisions then follow the paper's budget rule.
    #[serde(default, deserialize_with = "super::integers::optional")]
    pub kv_budget_tokens: Option<u64>,
    /// Speculative Rejection: decide when the rows have generated these token counts
    /// (positive, strictly increasing; at most 64). One decision schedule per request:
    /// `decision_tokens`, `first_decision_tokens` or `kv_budget_tokens`.
    pub decision_tokens: Option<Vec<u64>>,
    /// Speculative Rejection: the first decision after this many tokens, each later one
    /// after twice as many. Without any schedule parameter: `max(8, max_tokens / 8)`.
    #[serde(default, deserialize_with = "super::integers::optional")]
    pub first_decision_tokens: Option<u64>,
    /// Return every candidate with its score and fate.
    pub return_candidates: Option<bool>,
    /// Strategy `none`: score the answers with the reward model (default: the server's
    /// `--score-plain`, off). Aligned strategies always score their answers.
    pub score: Option<bool>,
    /// Correct the chosen answers with the aligner: `true`, or `"guarded"` to keep the
    /// correction only when the reward model scores it at least as high as the original.
    /// Not with `stream: true`.
    pub correct: Option<CorrectInput>,
}

/// `alignment.alpha` as sent: a fraction or `"auto"`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AlphaInput {
    /// The fraction rejected at each decision, in [0, 1).
    Fraction(f64),
    /// `"auto"`.
    Name(String),
}

/// `alignment.correct` as sent: a flag or a mode name.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CorrectInput {
    /// `true` or `false`.
    Flag(bool),
    /// `"guarded"` (or `"on"`, `"off"`).
    Mode(String),
}

/// The body of `/v1/completions` and `/v1/chat/completions`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct GenerationBody {
    /// The model id (see `/v1/models`).
    pub model: Option<String>,
    /// Completions: the prompt.
    pub prompt: Option<PromptInput>,
    /// Chat: the conversation.
    pub messages: Option<Vec<RawMessage>>,
    /// New tokens per answer at most.
    #[serde(default, deserialize_with = "super::integers::optional")]
    pub max_tokens: Option<u64>,
    /// Chat: the newer name of `max_tokens`.
    #[serde(default, deserialize_with = "super::integers::optional")]
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature in [0, 2].
    pub temperature: Option<f64>,
    /// Nucleus mass in (0, 1].
    pub top_p: Option<f64>,
    /// Keep the k most likely tokens (0 or -1: off).
    #[serde(default, deserialize_with = "super::integers::optional")]
    pub top_k: Option<i64>,
    /// Minimum probability relative to the most likely token, in [0, 1].
    pub min_p: Option<f64>,
    /// OpenAI frequency penalty in [-2, 2].
    pub frequency_penalty: Option<f64>,
    /// OpenAI presence penalty in [-2, 2].
    pub presence_penalty: Option<f64>,
    /// Hugging Face repetition penalty, > 0.
    pub repetition_penalty: Option<f64>,
    /// Stop strings.
    pub stop: Option<StopInput>,
    /// Base seed (row r samples with seed + r).
    #[serde(default, deserialize_with = "super::integers::optional")]
    pub seed: Option<i64>,
    /// Answers to return.
    #[serde(default, deserialize_with = "super::integers::optional")]
    pub n: Option<u64>,
    /// Best-of-N candidates (1 or null: no alignment).
    #[serde(default, deserialize_with = "super::integers::optional")]
    pub best_of: Option<u64>,
    /// Stream server-sent events.
    pub stream: Option<bool>,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// End-user id (logged only).
    pub user: Option<String>,
    /// Keep generating through end-of-sequence tokens.
    pub ignore_eos: Option<bool>,
    /// New tokens before end-of-sequence may be sampled.
    #[serde(default, deserialize_with = "super::integers::optional")]
    pub min_tokens: Option<u64>,
    /// The sampled tokens' log-probabilities: 0 (completions) or true (chat).
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<serde_json::Value>,
    /// Chat: alternatives per token (not supported: only null or 0).
    #[serde(default, deserialize_with = "super::integers::optional")]
    pub top_logprobs: Option<u64>,
    /// Completions: echo the prompt (not supported: only false).
    pub echo: Option<bool>,
    /// Also return the prompt's and each answer's token ids (vLLM's `return_token_ids`:
    /// `prompt_token_ids` and `token_ids`), so a client can continue from them exactly.
    pub return_token_ids: Option<bool>,
    /// The alignment extension.
    pub alignment: Option<AlignmentInput>,
    /// Structured output: `{"type": "json_object"}`, `{"type": "json_schema", "json_schema":
    /// {"name", "schema", "strict"}}` or `{"type": "text"}` (free text, the default). Every
    /// candidate of every strategy is decoded under it.
    pub response_format: Option<ResponseFormatInput>,
    /// vLLM's guided decoding: the output is JSON valid against this schema (an object, or
    /// the schema as a JSON string).
    #[schema(value_type = Option<Object>)]
    pub guided_json: Option<serde_json::Value>,
    /// vLLM's guided decoding: the output matches this regular expression, whole.
    pub guided_regex: Option<String>,
    /// vLLM's guided decoding: the output is in this Lark grammar (llguidance's dialect).
    pub guided_grammar: Option<String>,
    /// vLLM's guided decoding: the output is exactly one of these strings.
    pub guided_choice: Option<Vec<String>>,
    /// Chat: functions the model may call; answers that call one come back as
    /// `message.tool_calls` with `finish_reason: "tool_calls"`.
    pub tools: Option<Vec<ToolInput>>,
    /// Chat: `auto` (the default with tools), `none`, `required`, or a named function.
    pub tool_choice: Option<ToolChoiceInput>,
    /// Chat: whether one answer may call several functions (default true).
    pub parallel_tool_calls: Option<bool>,
    /// Every other field, kept so that validation can reject it by name (or accept the few
    /// that are ignored on purpose: `metadata`, `store`).
    #[serde(flatten)]
    #[schema(ignore)]
    pub other: std::collections::BTreeMap<String, serde_json::Value>,
}

/// `response_format`'s `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormatKind {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON valid against `json_schema.schema`.
    JsonSchema,
}

/// `response_format` as OpenAI's clients send it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseFormatInput {
    /// What the output must be.
    #[serde(rename = "type")]
    pub kind: ResponseFormatKind,
    /// The schema, for `json_schema`.
    pub json_schema: Option<JsonSchemaInput>,
}

/// `response_format.json_schema`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonSchemaInput {
    /// The schema's name (OpenAI requires one; thresh only reports it).
    pub name: String,
    /// What the schema is for.
    pub description: Option<String>,
    /// The JSON schema the output follows.
    #[schema(value_type = Option<Object>)]
    pub schema: Option<serde_json::Value>,
    /// OpenAI's strict mode. Constrained decoding always follows the schema; accepted either way.
    pub strict: Option<bool>,
}

/// One pair of `/v1/rewards`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RewardPair {
    /// The prompt text.
    pub prompt: Option<String>,
    /// Or the conversation.
    pub messages: Option<Vec<RawMessage>>,
    /// The response to score.
    pub response: String,
}

/// The body of `/v1/rewards`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RewardsBody {
    /// The reward model id (optional).
    pub model: Option<String>,
    /// The pairs to score.
    pub input: Vec<RewardPair>,
}

/// One (question, answer) pair as sent.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPair {
    /// The question as text.
    pub question: Option<String>,
    /// Or as a conversation (its last user turn is the question).
    pub messages: Option<Vec<RawMessage>>,
    /// The upstream answer to correct.
    pub answer: String,
}

/// The body of `/correct`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CorrectBody {
    /// The aligner's id (optional).
    pub model: Option<String>,
    /// One pair: the question as text.
    pub question: Option<String>,
    /// One pair: the question as chat messages.
    pub messages: Option<Vec<RawMessage>>,
    /// One pair: the answer.
    pub answer: Option<String>,
    /// Or a batch of pairs.
    pub inputs: Option<Vec<RawPair>>,
    /// New tokens per correction at most (default 256).
    #[serde(default, deserialize_with = "super::integers::optional")]
    pub max_tokens: Option<usize>,
    /// Sampling temperature (default 0: greedy).
    pub temperature: Option<f32>,
    /// Nucleus mass.
    pub top_p: Option<f32>,
    /// Keep the k most likely tokens.
    #[serde(default, deserialize_with = "super::integers::optional")]
    pub top_k: Option<usize>,
    /// Seed.
    #[serde(default, deserialize_with = "super::integers::optional")]
    pub seed: Option<u64>,
    /// Streaming is not offered on this route; `true` is rejected.
    pub stream: Option<bool>,
}
