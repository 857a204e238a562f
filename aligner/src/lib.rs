//! thresh's Aligner corrector (PKU-Alignment's Aligner): a small causal LM that reads a question
//! and an upstream answer and writes a corrected answer. It runs on the same decoder runtime as
//! the policy ([`thresh_models`]) and can sit behind any model, hosted here or elsewhere.
//!
//! [`AlignerTemplate`] renders the prompt formats the released correctors were trained on;
//! [`Corrector`] validates, renders and generates, and [`Corrector::correct_guarded`] corrects a
//! batch and keeps each correction only when a reward model scores it at least as high as the
//! original.

pub mod corrector;
pub mod error;
pub mod guarded;
pub mod template;

pub use corrector::{Correction, CorrectionInput, Corrector};
pub use error::{AlignerError, Result};
pub use guarded::{Guarded, GuardedBatch, NO_ANSWER};
pub use template::AlignerTemplate;
