//! thresh-train: the offline side of thresh.
//!
//! It trains the models the daemon hosts (aligned policies, reward models and Aligner
//! correctors) with candle's autograd, and simulates how alignment methods serve a population
//! of users with different preferences.

pub mod distortion;
pub mod error;

pub use error::{Result, TrainError};
