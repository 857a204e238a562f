//! Byte-level entry points for the fuzz targets in `fuzz/` (not a stable API): a raw request
//! body through the same parsing ([`parse_body`]) and validation as the handlers, without an
//! HTTP server or loaded models.

use axum::body::Bytes;

use super::api::errors::ApiError;
use super::api::openai::{CorrectBody, GenerationBody, RewardsBody};
use super::http::request::parse_body;
use super::validation::model_info::ModelInfo;
use super::validation::{Limits, Route, correct, tokenize, validate_generation, validate_rewards};

/// What one body came to on each route.
#[derive(Debug)]
pub struct Outcome {
    /// `/v1/completions`: validation and, where `info` was given, tokenisation.
    pub completions: Result<(), ApiError>,
    /// `/v1/chat/completions`, likewise.
    pub chat: Result<(), ApiError>,
    /// `/v1/rewards`.
    pub rewards: Result<(), ApiError>,
    /// `/correct` (for an aligner of `aligner_context` tokens).
    pub correct: Result<(), ApiError>,
}

/// Parses `body` as each route's request and validates it with `limits`; with `info`, a
/// generation request that validates is tokenised too (prompt length, `max_tokens`, KV budget).
pub fn request(
    body: &[u8],
    limits: Limits,
    info: Option<&ModelInfo>,
    aligner_context: usize,
) -> Outcome {
    let generation = |route: Route| -> Result<(), ApiError> {
        let parsed: GenerationBody = parse_body(Ok(Bytes::copy_from_slice(body)), body.len())?;
        let req = validate_generation(parsed, route, limits)?;
        if let Some(info) = info {
            tokenize::tokenize(req, info, limits)?;
        }
        Ok(())
    };
    let rewards = || -> Result<(), ApiError> {
        let parsed: RewardsBody = parse_body(Ok(Bytes::copy_from_slice(body)), body.len())?;
        validate_rewards(parsed).map(drop)
    };
    let correct = || -> Result<(), ApiError> {
        let parsed: CorrectBody = parse_body(Ok(Bytes::copy_from_slice(body)), body.len())?;
        correct::validate(parsed, aligner_context).map(drop)
    };
    Outcome {
        completions: generation(Route::Completions),
        chat: generation(Route::Chat),
        rewards: rewards(),
        correct: correct(),
    }
}
