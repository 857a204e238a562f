//! What the tests against real remote engines (`remote_llama_cpp`, `remote_vllm`) share and
//! `common` cannot hold: `common` is also included by thresh-bench's tests, which do not
//! depend on thresh-decoding.

use thresh_decoding::SamplingParams;
use thresh_decoding::remote::CompletionRequest;

/// A request for `n` continuations of `prompt` (token ids), at most `max_tokens` each, with
/// no stop strings, no minimum and affinity 0.
pub fn request<'a>(
    prompt: &'a [u32],
    n: usize,
    max_tokens: usize,
    sampling: &'a SamplingParams,
) -> CompletionRequest<'a> {
    CompletionRequest {
        prompt,
        n,
        max_tokens,
        sampling,
        stop: &[],
        ignore_eos: false,
        min_tokens: 0,
        affinity: 0,
    }
}
