//! thresh's end-to-end tests: the real `thresh`, `thresh-train` and `thresh-bench` binaries as
//! processes, real HTTP over loopback, tiny random models written on the fly (the demo models
//! only in `generate_score::score_with_the_demo_relevance_reward_by_default`).
//!
//! The binaries are not built by this package: run `cargo test --workspace` (or
//! `cargo build --workspace` before `cargo test -p thresh-e2e`).

mod bad_input;
mod bench_load;
mod collect;
mod drain;
mod fleet;
mod generate_score;
mod gpu_check;
mod serve_config;
mod train_then_serve;
