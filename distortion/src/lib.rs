//! The distortion simulator: how well RLHF/DPO and NLHF serve a population of users with
//! different preferences, in a tabular world of `m` alternatives.
//!
//! Plain `f64` code, independent of the model runtime; `thresh-train distortion` runs its
//! command line ([`cli`]).

pub mod bradley_terry;
pub mod chart;
pub mod cli;
pub mod error;
pub mod lottery;
pub mod math;
pub mod nash_md;
pub mod population;
pub mod preference;
pub mod regularised;
pub mod search;
pub mod simplex;
pub mod simulate;
pub mod sweep;

pub use error::{DistortionError, Result};
