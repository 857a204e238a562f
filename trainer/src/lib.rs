//! thresh-train: the offline side of thresh.
//!
//! It trains the models the daemon hosts (aligned policies, reward models and Aligner
//! correctors) with candle's autograd, and runs the distortion simulator of `thresh-distortion`
//! (how alignment methods serve a population of users with different preferences).

pub mod checkpoint;
pub mod cli;
pub mod collect;
pub mod commands;
pub mod data;
pub mod encode;
pub mod error;
pub mod eval;
pub mod losses;
pub mod model;
pub mod objectives;
pub mod optim;
pub mod schedule;
pub mod train;

pub use error::{Result, TrainError};
