//! `thresh-bench`: a load-testing client for any OpenAI-compatible server (thresh, vLLM, TGI,
//! llama.cpp's server) and the reward-versus-compute quality sweep against a thresh server.
//!
//! The JSON results are described in `bench/SCHEMA.md`.

#![warn(missing_docs)]

pub mod arrivals;
pub mod client;
pub mod dataset;
pub mod error;
pub mod kind;
pub mod load;
pub mod mix;
pub mod output;
pub mod plot;
pub mod quality;
pub mod report;
pub mod soak;
pub mod sse;
pub mod stats;

pub use error::BenchError;
