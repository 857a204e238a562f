//! thresh's command-line and daemon library: the `serve` daemon (an OpenAI-compatible HTTP
//! server with aligned decoding) and the demo model locations, shared by the `thresh`
//! binary and the integration tests.

pub mod models_dir;
pub mod serve;
