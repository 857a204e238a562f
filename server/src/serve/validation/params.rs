//! Small checks of single request parameters, each failing with a 400 that names the
//! parameter.

use crate::serve::api::errors::ApiError;

/// A 400 for `param`.
pub(crate) fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::param(param, message)
}

/// `v` as an `f32` in `[lo, hi]` (`(lo, hi]` when `lo_open`), if given.
pub(crate) fn unit_range(
    param: &str,
    v: Option<f64>,
    lo: f64,
    hi: f64,
    lo_open: bool,
) -> Result<Option<f32>, ApiError> {
    let Some(v) = v else { return Ok(None) };
    let ok = v.is_finite() && v <= hi && if lo_open { v > lo } else { v >= lo };
    if !ok {
        let open = if lo_open { "(" } else { "[" };
        return Err(bad(
            param,
            format!("{param} must be in {open}{lo}, {hi}], got {v}"),
        ));
    }
    // An open end stays open in f32 too: a tiny positive f64 (5e-324) must not round to it.
    let x = v as f32;
    Ok(Some(if lo_open && x <= lo as f32 {
        (lo as f32).next_up()
    } else {
        x
    }))
}

/// `v` as a `usize`.
pub(crate) fn usize_of(param: &str, v: u64) -> Result<usize, ApiError> {
    usize::try_from(v).map_err(|_| bad(param, format!("{param} is too large: {v}")))
}
