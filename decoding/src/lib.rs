//! thresh's decoding layer: sampling, stopping and incremental detokenisation over a batch of
//! rows that share one prefilled prompt ([`DecodeBatch`]), and plain generation on top of it
//! ([`generate`]).

pub mod batch;
pub mod constraint;
pub mod detok;
pub mod device_sampling;
pub mod error;
pub mod generate;
pub mod merge;
pub mod prefix;
pub mod remote;
pub mod sampling;
pub mod strategy;

pub use batch::{BatchStats, DecodeBatch, FinishReason, Row, StopConditions};
pub use constraint::{Constraint, ConstraintCompiler, Grammar};
pub use detok::IncrementalDetokenizer;
pub use error::{DecodeError, Result};
pub use generate::{Generation, generate};
pub use merge::{MergeStats, StepMerger, Stepper};
pub use prefix::{Prefilled, PrefixCache, PrefixStats};
pub use sampling::{Sampler, SamplingParams};
