//! Integer request fields that also take integral JSON numbers (`2.0`), as JSON Schema's
//! `integer` does (and Python clients send when a value went through a float); `2.5` stays
//! an error naming the field.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::{Error, Unexpected, Visitor};

/// The integer types request fields use.
pub trait Integer: Sized {
    /// The value, if `v` is in range.
    fn from_i128(v: i128) -> Option<Self>;
}

macro_rules! integer {
    ($($t:ty),*) => {$(
        impl Integer for $t {
            fn from_i128(v: i128) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
        }
    )*};
}
integer!(u32, u64, i64, usize);

struct IntegerVisitor<T>(PhantomData<T>);

impl<T: Integer> IntegerVisitor<T> {
    fn checked<E: Error>(&self, v: i128, unexpected: Unexpected<'_>) -> Result<T, E> {
        T::from_i128(v).ok_or_else(|| E::invalid_value(unexpected, self))
    }
}

impl<'de, T: Integer> Visitor<'de> for IntegerVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer in range")
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<T, E> {
        self.checked(v.into(), Unexpected::Signed(v))
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<T, E> {
        self.checked(v.into(), Unexpected::Unsigned(v))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<T, E> {
        // Integral and at most 2^53 in magnitude, where a float is exact: beyond it, an integer
        // literal out of i64/u64 range (which arrives as a float) would be rounded into range.
        if v.is_finite() && v.fract() == 0.0 && v.abs() <= 9_007_199_254_740_992.0 {
            self.checked(v as i128, Unexpected::Float(v))
        } else {
            Err(E::invalid_type(Unexpected::Float(v), &self))
        }
    }
}

struct OptionVisitor<T>(PhantomData<T>);

impl<'de, T: Integer> Visitor<'de> for OptionVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer in range or null")
    }

    fn visit_none<E: Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(IntegerVisitor(PhantomData)).map(Some)
    }
}

/// A token id in a prompt: an integer, or an integral number (`17.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenId(pub u32);

impl<'de> serde::Deserialize<'de> for TokenId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IntegerVisitor(PhantomData)).map(TokenId)
    }
}

/// `#[serde(default, deserialize_with = "integers::optional")]` for `Option<u64 | i64 | usize>`.
pub fn optional<'de, D: Deserializer<'de>, T: Integer>(d: D) -> Result<Option<T>, D::Error> {
    d.deserialize_option(OptionVisitor(PhantomData))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::optional")]
        n: Option<u64>,
        #[serde(default, deserialize_with = "super::optional")]
        seed: Option<i64>,
    }

    fn parse(json: &str) -> Result<Body, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn integral_numbers_are_integers_and_fractions_are_errors() {
        let b = parse(r#"{"n": 2.0, "seed": -69.0}"#).unwrap();
        assert_eq!((b.n, b.seed), (Some(2), Some(-69)));
        let b = parse(r#"{"n": 3, "seed": null}"#).unwrap();
        assert_eq!((b.n, b.seed), (Some(3), None));
        let b = parse("{}").unwrap();
        assert_eq!((b.n, b.seed), (None, None));
        let ids: Vec<super::TokenId> = serde_json::from_str("[1, 2.0, 4294967295]").unwrap();
        assert_eq!(
            ids,
            [
                super::TokenId(1),
                super::TokenId(2),
                super::TokenId(u32::MAX)
            ]
        );
        assert!(serde_json::from_str::<Vec<super::TokenId>>("[1.5]").is_err());
        assert!(serde_json::from_str::<Vec<super::TokenId>>("[4294967296]").is_err());
        for (json, what) in [
            (r#"{"n": 2.5}"#, "floating point `2.5`"),
            (r#"{"n": -1}"#, "integer `-1`"),
            (r#"{"n": -1.0}"#, "floating point `-1"),
            (r#"{"seed": 1e300}"#, "floating point"),
            (r#"{"n": "2"}"#, "string \"2\""),
            (
                r#"{"seed": 9223372036854775808}"#,
                "integer `9223372036854775808`",
            ),
            // Out of i64 range, parsed as a float that rounds to i64::MIN: refused.
            (r#"{"seed": -9223372036854775809}"#, "floating point"),
        ] {
            let err = parse(json).unwrap_err();
            assert!(err.contains(what), "{json}: {err}");
        }
    }
}
