//! Evaluation metrics for trained models.

pub mod separation;
