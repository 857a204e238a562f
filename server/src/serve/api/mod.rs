//! The wire: OpenAI-style request bodies as they arrive ([`openai`]), the error body and its
//! status codes ([`errors`]), the OpenAPI document ([`openapi`]) and the tokenizer endpoints' bodies ([`tokenize`]).
//!
//! The bottom layer of the daemon: it imports nothing else from [`serve`](super).

pub mod contract;
pub mod errors;
pub mod integers;
pub mod openai;
pub mod openapi;
pub mod tokenize;
